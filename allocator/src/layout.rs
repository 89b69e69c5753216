//! Where each plane of a buffer lies in its one dma-buf.
//!
//! The per-format numbers are those of the kernel's `drm_format_info`
//! (drivers/gpu/drm/drm_fourcc.c): bytes per pixel of each plane and the
//! horizontal and vertical subsampling of the chroma planes. Pitches are
//! rounded up to the intersected pitch alignment and plane offsets to the
//! offset alignment; all planes share one fd.

use drm_fourcc::DrmFourcc as Fourcc;

/// Why a buffer cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The format is not in [`FORMATS`].
    #[error("format {0} has no layout here")]
    UnsupportedFormat(Fourcc),
    /// A width or height of zero, or a layout that overflows.
    #[error("invalid buffer size {width}x{height} for {fourcc}: {reason}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// The format.
        fourcc: Fourcc,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The kernel's description of a format, restricted to what layouts need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatInfo {
    /// The format.
    pub fourcc: Fourcc,
    /// Its name without the `DRM_FORMAT_` prefix, e.g. `NV12`, `XRGB8888`:
    /// what people type, where the fourcc (`XR24`) is what the wire says.
    pub name: &'static str,
    /// Number of planes.
    pub num_planes: u8,
    /// Bytes per pixel (per block of 1x1) of each plane (`cpp`/`char_per_block`).
    pub cpp: [u8; 3],
    /// Horizontal chroma subsampling (applies to planes 1 and 2).
    pub hsub: u8,
    /// Vertical chroma subsampling (applies to planes 1 and 2).
    pub vsub: u8,
    /// A YUV format.
    pub is_yuv: bool,
}

/// The formats heapland lays out, as in the kernel's `drm_format_info`.
pub const FORMATS: &[FormatInfo] = &[
    fmt(Fourcc::Nv12, "NV12", 2, [1, 2, 0], 2, 2, true),
    fmt(Fourcc::Nv16, "NV16", 2, [1, 2, 0], 2, 1, true),
    fmt(Fourcc::Yuv420, "YUV420", 3, [1, 1, 1], 2, 2, true),
    fmt(Fourcc::Yuyv, "YUYV", 1, [2, 0, 0], 2, 1, true),
    fmt(Fourcc::P010, "P010", 2, [2, 4, 0], 2, 2, true),
    fmt(Fourcc::Xrgb8888, "XRGB8888", 1, [4, 0, 0], 1, 1, false),
    fmt(Fourcc::Argb8888, "ARGB8888", 1, [4, 0, 0], 1, 1, false),
    fmt(Fourcc::Xbgr8888, "XBGR8888", 1, [4, 0, 0], 1, 1, false),
    fmt(Fourcc::Abgr8888, "ABGR8888", 1, [4, 0, 0], 1, 1, false),
    fmt(Fourcc::Rgb565, "RGB565", 1, [2, 0, 0], 1, 1, false),
    fmt(
        Fourcc::Xrgb2101010,
        "XRGB2101010",
        1,
        [4, 0, 0],
        1,
        1,
        false,
    ),
];

const fn fmt(
    fourcc: Fourcc,
    name: &'static str,
    num_planes: u8,
    cpp: [u8; 3],
    hsub: u8,
    vsub: u8,
    is_yuv: bool,
) -> FormatInfo {
    FormatInfo {
        fourcc,
        name,
        num_planes,
        cpp,
        hsub,
        vsub,
        is_yuv,
    }
}

/// The description of `fourcc`, if heapland lays it out.
pub fn format_info(fourcc: Fourcc) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| f.fourcc == fourcc)
}

/// A format heapland lays out, by its DRM name (`NV12`, `XRGB8888`) or its
/// fourcc code (`NV12`, `XR24`), in any case.
pub fn format_by_name(name: &str) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| {
        f.name.eq_ignore_ascii_case(name) || f.fourcc.to_string().eq_ignore_ascii_case(name)
    })
}

impl FormatInfo {
    /// Width in pixels (blocks) of plane `plane` for a `width`-wide image,
    /// like the kernel's `drm_format_info_plane_width`.
    pub fn plane_width(&self, width: u32, plane: usize) -> u32 {
        if plane == 0 {
            width
        } else {
            width.div_ceil(self.hsub.into())
        }
    }

    /// Height of plane `plane`, like `drm_format_info_plane_height`.
    pub fn plane_height(&self, height: u32, plane: usize) -> u32 {
        if plane == 0 {
            height
        } else {
            height.div_ceil(self.vsub.into())
        }
    }
}

/// Alignments a layout honours (from a [`crate::Intersection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    /// Each pitch is a multiple of this.
    pub pitch: u32,
    /// Each plane offset is a multiple of this.
    pub offset: u32,
}

impl Alignment {
    /// No padding at all: the kernel's minimum pitches, planes back to back.
    pub const TIGHT: Alignment = Alignment {
        pitch: 1,
        offset: 1,
    };
}

impl Default for Alignment {
    fn default() -> Self {
        Alignment {
            pitch: crate::constraints::DEFAULT_PITCH_ALIGNMENT,
            offset: crate::constraints::DEFAULT_OFFSET_ALIGNMENT,
        }
    }
}

/// One plane of a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Byte offset of the plane in the dma-buf.
    pub offset: u32,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// Bytes the plane occupies (`stride * rows`).
    pub size: u64,
}

/// The planes of one buffer and its total size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The format.
    pub fourcc: Fourcc,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Planes in order, at most 3.
    pub planes: Vec<PlaneLayout>,
    /// Bytes from the start of the buffer to the end of the last plane.
    pub size: u64,
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    let align = align.max(1);
    value.checked_add(align - 1).map(|v| v / align * align)
}

impl Layout {
    /// Lays out a `width` x `height` buffer of `fourcc`.
    pub fn new(
        fourcc: Fourcc,
        width: u32,
        height: u32,
        alignment: Alignment,
    ) -> Result<Self, LayoutError> {
        let info = format_info(fourcc).ok_or(LayoutError::UnsupportedFormat(fourcc))?;
        let invalid = |reason| LayoutError::InvalidSize {
            width,
            height,
            fourcc,
            reason,
        };
        if width == 0 || height == 0 {
            return Err(invalid("width and height must be non-zero"));
        }
        let mut planes = Vec::with_capacity(info.num_planes.into());
        let mut end: u64 = 0;
        for plane in 0..usize::from(info.num_planes) {
            let min_pitch = u64::from(info.plane_width(width, plane)) * u64::from(info.cpp[plane]);
            let stride = align_up(min_pitch, alignment.pitch.into())
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| invalid("pitch does not fit in 32 bits"))?;
            let offset = align_up(end, alignment.offset.into())
                .and_then(|o| u32::try_from(o).ok())
                .ok_or_else(|| invalid("plane offset does not fit in 32 bits"))?;
            let size = u64::from(stride) * u64::from(info.plane_height(height, plane));
            end = u64::from(offset) + size;
            planes.push(PlaneLayout {
                offset,
                stride,
                size,
            });
        }
        Ok(Layout {
            fourcc,
            width,
            height,
            planes,
            size: end,
        })
    }

    /// The length to allocate: the size rounded up to whole pages, as heaps
    /// round it anyway.
    pub fn alloc_size(&self) -> u64 {
        let page = rustix::param::page_size() as u64;
        align_up(self.size, page).unwrap_or(self.size)
    }

    /// The size as a dma-buf describes it (signed 32-bit, as in
    /// linux-dmabuf and Smithay's `Dmabuf`).
    pub fn dmabuf_size(&self) -> Result<(i32, i32), LayoutError> {
        match (i32::try_from(self.width), i32::try_from(self.height)) {
            (Ok(w), Ok(h)) => Ok((w, h)),
            _ => Err(LayoutError::InvalidSize {
                width: self.width,
                height: self.height,
                fourcc: self.fourcc,
                reason: "does not fit a dma-buf's signed 32-bit size",
            }),
        }
    }
}

#[cfg(all(test, feature = "smithay"))]
mod tests {
    use super::*;

    /// One table: where Smithay knows a format's bits per pixel, this
    /// table's single plane must say the same.
    #[test]
    fn rgb_formats_agree_with_smithay() {
        for f in FORMATS.iter().filter(|f| !f.is_yuv) {
            let bpp = smithay::backend::allocator::format::get_bpp(f.fourcc)
                .unwrap_or_else(|| panic!("Smithay does not know {}", f.name));
            assert_eq!(usize::from(f.cpp[0]) * 8, bpp, "{}", f.name);
            assert_eq!(f.num_planes, 1, "{}", f.name);
        }
    }
}
