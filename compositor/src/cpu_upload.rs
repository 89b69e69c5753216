//! Client dma-bufs that software GL cannot sample, drawn through a copy.
//!
//! llvmpipe samples an imported dma-buf through a mapping of its own, made
//! read-write, and draws through a null pointer where that mapping fails
//! ([`crate::renderer::software_gl_can_sample`] says when). A read-only
//! dma-buf fails it: V4L2's `VIDIOC_EXPBUF` without `O_RDWR` (how
//! `weston-simple-dmabuf-v4l` shares vivid's buffers), another device's GBM
//! export. Refusing those leaves a camera client with no picture, as
//! weston's GL renderer does. heapland copies them instead: when a surface
//! is drawn after an attach of one, the plane is mapped read-only, copied
//! into a texture and unmapped (Smithay's surface state keeps the texture
//! until the next attach). Nothing keeps the mapping past the copy, so the
//! buffer is freed when the client lets it go, as any other.
//!
//! The copy is exact only for what GL takes from memory: one linear plane
//! in one of [`ImportMem::mem_formats`]. Any other read-only dma-buf is
//! still refused.
//!
//! [`UploadingGles`] is Smithay's `GlesRenderer` with that one difference
//! in [`ImportDma::import_dmabuf`]; every other call goes straight through,
//! and its textures are the `GlesRenderer`'s (same context, so Smithay's
//! per-surface texture cache serves both). Whatever draws client surfaces
//! with a display's GLES renderer must draw through it.

use std::collections::HashSet;

use heapland_allocator::cpu_access::CpuAccess;
use smithay::{
    backend::{
        allocator::{
            dmabuf::{Dmabuf, WeakDmabuf},
            format::get_bpp,
            Buffer as _, Fourcc, Modifier,
        },
        renderer::{
            gles::{GlesError, GlesFrame, GlesMapping, GlesRenderer, GlesTarget, GlesTexture},
            sync::SyncPoint,
            Bind, ContextId, DebugFlags, ExportMem, ImportDma, ImportDmaWl, ImportMem, ImportMemWl,
            Offscreen, Renderer, RendererSuper, TextureFilter,
        },
    },
    reexports::wayland_server::protocol::wl_buffer::WlBuffer,
    utils::{Buffer, Physical, Rectangle, Size, Transform},
    wayland::compositor::SurfaceData,
};

/// Why a dma-buf cannot be drawn through a copy.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("it has {0} planes (a copy takes one)")]
    Planes(usize),
    #[error("its modifier is {0:?} (a copy takes LINEAR)")]
    Modifier(Modifier),
    #[error("GL takes no {0} from memory")]
    Format(Fourcc),
    #[error("its stride {stride} is less than a row of {width} pixels, or its plane is smaller than {height} rows")]
    Layout {
        stride: u32,
        width: i32,
        height: i32,
    },
    #[error("{0}")]
    Access(#[from] heapland_allocator::cpu_access::CpuAccessError),
    #[error("GL: {0}")]
    Gl(#[from] GlesError),
}

/// The client dma-bufs a display's GLES renderer draws through a copy.
#[derive(Debug, Default)]
pub struct CpuUploads {
    buffers: HashSet<WeakDmabuf>,
}

impl CpuUploads {
    /// Takes `dmabuf` to be drawn through a copy, after checking that it
    /// can be: what cannot be copied is refused now, not at its first frame.
    pub fn accept(&mut self, gl: &GlesRenderer, dmabuf: &Dmabuf) -> Result<(), UploadError> {
        Copyable::check(gl, dmabuf)?.read(dmabuf)?;
        self.buffers.retain(|b| !b.is_gone());
        self.buffers.insert(dmabuf.weak());
        Ok(())
    }

    fn contains(&self, dmabuf: &Dmabuf) -> bool {
        self.buffers.contains(&dmabuf.weak())
    }

    /// Forgets buffers that are gone.
    pub fn cleanup(&mut self) {
        self.buffers.retain(|b| !b.is_gone());
    }
}

/// The geometry of a dma-buf that a copy takes.
struct Copyable {
    stride: usize,
    row: usize,
    rows: usize,
}

impl Copyable {
    fn check(gl: &GlesRenderer, dmabuf: &Dmabuf) -> Result<Self, UploadError> {
        let format = dmabuf.format();
        if dmabuf.num_planes() != 1 {
            return Err(UploadError::Planes(dmabuf.num_planes()));
        }
        if format.modifier != Modifier::Linear {
            return Err(UploadError::Modifier(format.modifier));
        }
        let bytes_per_pixel = match get_bpp(format.code) {
            Some(bits) if gl.mem_formats().any(|f| f == format.code) => bits / 8,
            _ => return Err(UploadError::Format(format.code)),
        };
        let size = dmabuf.size();
        let stride = dmabuf.strides().next().unwrap_or(0);
        let layout = UploadError::Layout {
            stride,
            width: size.w,
            height: size.h,
        };
        let (Ok(width), Ok(rows)) = (usize::try_from(size.w), usize::try_from(size.h)) else {
            return Err(layout);
        };
        let row = width * bytes_per_pixel;
        if (stride as usize) < row || rows == 0 || row == 0 {
            return Err(layout);
        }
        Ok(Copyable {
            stride: stride as usize,
            row,
            rows,
        })
    }

    /// The plane's pixels, rows packed. Starting the read waits for the
    /// devices writing the buffer (a camera's capture) to finish, on the
    /// event loop: a client attaches a buffer once it is written.
    fn read(&self, dmabuf: &Dmabuf) -> Result<Vec<u8>, UploadError> {
        // SAFETY: no slice of the mapping is formed (`bytes` is not
        // called): rows are copied through the raw pointer below. A client
        // writing its attached buffer, against the protocol, garbles only
        // its own picture.
        let access = unsafe { CpuAccess::read(dmabuf, 0) }?;
        let (ptr, len) = access.as_ptr();
        if len < self.stride * (self.rows - 1) + self.row {
            let size = dmabuf.size();
            return Err(UploadError::Layout {
                stride: self.stride as u32,
                width: size.w,
                height: size.h,
            });
        }
        let mut packed = vec![0u8; self.row * self.rows];
        for (i, dst) in packed.chunks_exact_mut(self.row).enumerate() {
            // SAFETY: row `i` lies inside the mapping (checked above), and
            // `dst` is `row` bytes of our own vector.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.add(i * self.stride), dst.as_mut_ptr(), self.row)
            };
        }
        Ok(packed)
    }
}

/// Copies the one plane of `dmabuf` into a new texture.
fn upload(gl: &mut GlesRenderer, dmabuf: &Dmabuf) -> Result<GlesTexture, UploadError> {
    let pixels = Copyable::check(gl, dmabuf)?.read(dmabuf)?;
    let texture = gl.import_memory(
        &pixels,
        dmabuf.format().code,
        dmabuf.size(),
        dmabuf.y_inverted(),
    )?;
    Ok(texture)
}

/// A display's `GlesRenderer` that draws the dma-bufs of [`CpuUploads`]
/// through a copy.
#[derive(Debug)]
pub struct UploadingGles<'a> {
    gl: &'a mut GlesRenderer,
    uploads: &'a CpuUploads,
}

impl<'a> UploadingGles<'a> {
    pub fn new(gl: &'a mut GlesRenderer, uploads: &'a CpuUploads) -> Self {
        Self { gl, uploads }
    }
}

impl RendererSuper for UploadingGles<'_> {
    type Error = GlesError;
    type TextureId = GlesTexture;
    type Framebuffer<'buffer> = GlesTarget<'buffer>;
    type Frame<'frame, 'buffer>
        = GlesFrame<'frame, 'buffer>
    where
        'buffer: 'frame,
        Self: 'frame;
}

impl Renderer for UploadingGles<'_> {
    fn context_id(&self) -> ContextId<GlesTexture> {
        self.gl.context_id()
    }

    fn downscale_filter(&mut self, filter: TextureFilter) -> Result<(), GlesError> {
        self.gl.downscale_filter(filter)
    }

    fn upscale_filter(&mut self, filter: TextureFilter) -> Result<(), GlesError> {
        self.gl.upscale_filter(filter)
    }

    fn set_debug_flags(&mut self, flags: DebugFlags) {
        self.gl.set_debug_flags(flags)
    }

    fn debug_flags(&self) -> DebugFlags {
        self.gl.debug_flags()
    }

    fn render<'frame, 'buffer>(
        &'frame mut self,
        framebuffer: &'frame mut GlesTarget<'buffer>,
        output_size: Size<i32, Physical>,
        dst_transform: Transform,
    ) -> Result<GlesFrame<'frame, 'buffer>, GlesError>
    where
        'buffer: 'frame,
    {
        self.gl.render(framebuffer, output_size, dst_transform)
    }

    fn wait(&mut self, sync: &SyncPoint) -> Result<(), GlesError> {
        self.gl.wait(sync)
    }

    fn cleanup_texture_cache(&mut self) -> Result<(), GlesError> {
        self.gl.cleanup_texture_cache()
    }
}

impl ImportDma for UploadingGles<'_> {
    fn dmabuf_formats(&self) -> smithay::backend::allocator::format::FormatSet {
        self.gl.dmabuf_formats()
    }

    fn import_dmabuf(
        &mut self,
        dmabuf: &Dmabuf,
        damage: Option<&[Rectangle<i32, Buffer>]>,
    ) -> Result<GlesTexture, GlesError> {
        if !self.uploads.contains(dmabuf) {
            return self.gl.import_dmabuf(dmabuf, damage);
        }
        upload(self.gl, dmabuf).map_err(|err| match err {
            UploadError::Gl(err) => err,
            other => {
                tracing::warn!("copying a client dma-buf into a texture: {other}");
                GlesError::MappingError
            }
        })
    }
}

impl ImportDmaWl for UploadingGles<'_> {}

impl ImportMem for UploadingGles<'_> {
    fn import_memory(
        &mut self,
        data: &[u8],
        format: Fourcc,
        size: Size<i32, Buffer>,
        flipped: bool,
    ) -> Result<GlesTexture, GlesError> {
        self.gl.import_memory(data, format, size, flipped)
    }

    fn update_memory(
        &mut self,
        texture: &GlesTexture,
        data: &[u8],
        region: Rectangle<i32, Buffer>,
    ) -> Result<(), GlesError> {
        self.gl.update_memory(texture, data, region)
    }

    fn mem_formats(&self) -> Box<dyn Iterator<Item = Fourcc>> {
        self.gl.mem_formats()
    }
}

impl ImportMemWl for UploadingGles<'_> {
    fn import_shm_buffer(
        &mut self,
        buffer: &WlBuffer,
        surface: Option<&SurfaceData>,
        damage: &[Rectangle<i32, Buffer>],
    ) -> Result<GlesTexture, GlesError> {
        self.gl.import_shm_buffer(buffer, surface, damage)
    }
}

impl<T> Bind<T> for UploadingGles<'_>
where
    GlesRenderer: Bind<T>,
{
    fn bind<'b>(&mut self, target: &'b mut T) -> Result<GlesTarget<'b>, GlesError> {
        self.gl.bind(target)
    }

    fn supported_formats(&self) -> Option<smithay::backend::allocator::format::FormatSet> {
        self.gl.supported_formats()
    }
}

impl<T> Offscreen<T> for UploadingGles<'_>
where
    GlesRenderer: Offscreen<T>,
{
    fn create_buffer(&mut self, format: Fourcc, size: Size<i32, Buffer>) -> Result<T, GlesError> {
        self.gl.create_buffer(format, size)
    }
}

impl ExportMem for UploadingGles<'_> {
    type TextureMapping = GlesMapping;

    fn copy_framebuffer(
        &mut self,
        target: &GlesTarget<'_>,
        region: Rectangle<i32, Buffer>,
        format: Fourcc,
    ) -> Result<GlesMapping, GlesError> {
        self.gl.copy_framebuffer(target, region, format)
    }

    fn copy_texture(
        &mut self,
        texture: &GlesTexture,
        region: Rectangle<i32, Buffer>,
        format: Fourcc,
    ) -> Result<GlesMapping, GlesError> {
        self.gl.copy_texture(texture, region, format)
    }

    fn can_read_texture(&mut self, texture: &GlesTexture) -> Result<bool, GlesError> {
        self.gl.can_read_texture(texture)
    }

    fn map_texture<'b>(&mut self, mapping: &'b GlesMapping) -> Result<&'b [u8], GlesError> {
        self.gl.map_texture(mapping)
    }
}
