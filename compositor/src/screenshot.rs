//! Writing an output's picture to a PNG file.
//!
//! The file is written next to its destination and renamed into place, so a
//! reader (a person, or a test polling the path) never sees half a PNG.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

/// `--screenshot PATH` (and `--screenshot-every-frame`): the first output's
/// picture, written on SIGUSR1 or after every frame.
#[derive(Debug, Clone)]
pub struct ScreenshotTarget {
    pub path: PathBuf,
    pub every_frame: bool,
}

/// What the backend drawing the first output is asked to write.
#[derive(Debug, Clone, Copy)]
pub struct ScreenshotRequest<'a> {
    pub path: &'a Path,
    /// SIGUSR1 asked for one.
    pub requested: bool,
    pub every_frame: bool,
}

impl ScreenshotRequest<'_> {
    /// Whether a frame with this damage is to be written: on request, and
    /// with `every_frame` each frame that changed and the output's first.
    pub fn wanted(&self, damaged: bool, first_frame: bool) -> bool {
        self.requested || (self.every_frame && (damaged || first_frame))
    }
}

/// Why a screenshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode PNG {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: png::EncodingError,
    },
    #[error(
        "pixel data of {len} bytes does not hold {width}x{height} pixels with stride {stride}"
    )]
    ShortData {
        len: usize,
        width: u32,
        height: u32,
        stride: usize,
    },
}

/// Writes `data` (rows of little-endian XRGB/ARGB8888 pixels, i.e. B,G,R,X
/// bytes, `stride` bytes apart) as an opaque RGB PNG.
pub fn write_xrgb8888_png(
    path: &Path,
    width: u32,
    height: u32,
    stride: usize,
    data: &[u8],
) -> Result<(), ScreenshotError> {
    let row_bytes = width as usize * 4;
    let needed = stride * (height as usize).saturating_sub(1) + row_bytes;
    if height > 0 && (data.len() < needed || stride < row_bytes) {
        return Err(ScreenshotError::ShortData {
            len: data.len(),
            width,
            height,
            stride,
        });
    }
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let row = &data[y * stride..y * stride + row_bytes];
        for px in row.chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }

    let tmp = path.with_extension("png.tmp");
    let io = |source| ScreenshotError::Io {
        path: tmp.clone(),
        source,
    };
    let file = File::create(&tmp).map_err(io)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let encode = |source| ScreenshotError::Encode {
        path: tmp.clone(),
        source,
    };
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(&rgb).map_err(encode)?;
    writer.finish().map_err(encode)?;
    std::fs::rename(&tmp, path).map_err(|source| ScreenshotError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes plane 0 of a linear XRGB8888 dma-buf as a PNG, reading it through
/// a CPU mapping bracketed by `DMA_BUF_IOCTL_SYNC`: the picture is the memory
/// the display scans out, not a copy the renderer kept.
pub fn write_dmabuf_png(
    path: &Path,
    dmabuf: &smithay::backend::allocator::dmabuf::Dmabuf,
) -> Result<(), DmabufScreenshotError> {
    use smithay::backend::allocator::Buffer;

    let (width, height) = (dmabuf.width(), dmabuf.height());
    let stride = dmabuf
        .strides()
        .next()
        .ok_or(DmabufScreenshotError::NoPlane)? as usize;
    // SAFETY: the scanout buffer is written by heapland's renderer on this
    // thread only, and not while this function runs; the display only reads.
    let pixels = unsafe { heapland_allocator::CpuAccess::read(dmabuf, 0) }
        .map_err(|e| DmabufScreenshotError::Map(e.to_string()))?;
    // The mapping starts at the plane's offset.
    let data = pixels.bytes();
    write_xrgb8888_png(path, width, height, stride, data)?;
    Ok(())
}

/// Why a dma-buf could not be written as a PNG.
#[derive(Debug, thiserror::Error)]
pub enum DmabufScreenshotError {
    #[error("the dma-buf has no plane")]
    NoPlane,
    #[error("cannot map the dma-buf: {0}")]
    Map(String),
    #[error(transparent)]
    Write(#[from] ScreenshotError),
}
