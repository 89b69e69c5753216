//! The renderer that composes a display device's outputs: GLES or pixman.
//!
//! GLES is Smithay's `GlesRenderer` over EGL on the display device's GBM.
//! That is the device whose Mesa driver takes buffers for the display: a
//! GPU's own driver on a desktop, `kmsro` on boards whose display and GPU
//! are separate devices (it renders on the GPU and imports into the
//! display), `kms_swrast` on display-only devices such as vkms. The drm
//! backend's scanout buffers, allocated from the heap that serves the
//! display, are imported as EGL images and rendered into, and client
//! dma-bufs are imported by that same EGL display: a buffer the renderer
//! takes is a buffer the output can show.
//!
//! pixman draws on the CPU into mapped buffers. It stays as the fallback
//! where EGL does not work, and as a choice (`--renderer pixman`).
//!
//! `--renderer auto` takes GLES only where GL runs on a GPU. Where Mesa's
//! GL is itself software (llvmpipe or softpipe behind `kms_swrast`), pixman
//! draws the same pixels straight into the mapped buffers, without a GL
//! pipeline in between. `--renderer gles` takes software GL anyway, from
//! Mesa 26.1 on: older `kms_swrast` maps an imported dma-buf with
//! `DRM_IOCTL_MODE_MAP_DUMB`, which the kernel refuses for imported objects,
//! and then draws through a null pointer (checked in the guest: Mesa 22.3
//! and 25.0 crash on the first clear; 26.1 maps the dma-buf itself).
//!
//! One renderer serves every output of a device, and the same one checks
//! each client dma-buf when it is created ([`DisplayRenderer::import_dmabuf`]):
//! what it refuses could never be drawn.

use std::{
    ffi::CStr,
    os::fd::{AsFd, BorrowedFd},
    path::Path,
};

use smithay::reexports::rustix;

use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, gbm::GbmDevice, Format, Fourcc},
        drm::DrmDeviceFd,
        egl::{EGLContext, EGLDisplay},
        renderer::{
            gles::{ffi, GlesError, GlesRenderer, GlesTexture},
            pixman::PixmanRenderer,
            Bind, Frame, ImportDma, ImportMem, Offscreen, Renderer,
        },
    },
    utils::{Buffer, Physical, Rectangle, Size, Transform},
};
use tracing::info;

use crate::{cli::RendererKind, cpu_upload::CpuUploads};

/// Why a renderer cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RendererError {
    #[error("Mesa's GBM cannot open {device}: {source}")]
    Gbm {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("EGL on {device}: {reason}")]
    Egl { device: String, reason: String },
    #[error("cannot create the pixman renderer: {0}")]
    Pixman(String),
    #[error("{device}: {gl} is software GL, whose kms_swrast before Mesa 26.1 crashes drawing into imported dma-bufs (it maps them with DRM_IOCTL_MODE_MAP_DUMB, which the kernel refuses for imported buffers); use --renderer pixman, or Mesa 26.1 or newer")]
    BrokenSoftwareGl { device: String, gl: String },
    #[error("{device}: {gl} is software GL: pixman composes faster without it (--renderer gles takes it anyway)")]
    SoftwareGl { device: String, gl: String },
}

/// The renderer of one display device. Client surfaces are drawn with a
/// GLES one through [`crate::cpu_upload::UploadingGles`] only: its raw
/// `GlesRenderer` would hand llvmpipe the dma-bufs it cannot sample.
pub enum DisplayRenderer {
    Gles {
        gl: Box<GlesRenderer>,
        /// Client dma-bufs it draws through a copy.
        uploads: CpuUploads,
    },
    Pixman(PixmanRenderer),
}

impl DisplayRenderer {
    /// The renderer `kind` asks for on the display device `fd`. `auto`
    /// falls back to pixman when EGL does not work there, and says why.
    pub fn new(kind: RendererKind, fd: &DrmDeviceFd, device: &str) -> Result<Self, RendererError> {
        match kind {
            RendererKind::Pixman => Self::pixman(),
            RendererKind::Gles => Self::gles(fd, device, false),
            RendererKind::Auto => Self::gles(fd, device, true).or_else(|err| {
                info!("no GLES renderer ({err}): composing with pixman on the CPU");
                Self::pixman()
            }),
        }
    }

    fn pixman() -> Result<Self, RendererError> {
        PixmanRenderer::new()
            .map(DisplayRenderer::Pixman)
            .map_err(|e| RendererError::Pixman(e.to_string()))
    }

    /// GLES on `fd`'s GBM; with `gpu_only`, not on software GL.
    fn gles(fd: &DrmDeviceFd, device: &str, gpu_only: bool) -> Result<Self, RendererError> {
        let egl = |reason: String| RendererError::Egl {
            device: device.to_owned(),
            reason,
        };
        let gbm = GbmDevice::new(fd.clone()).map_err(|source| RendererError::Gbm {
            device: device.to_owned(),
            source,
        })?;
        // SAFETY: the GBM device lives as long as the display, which keeps
        // it; nothing else terminates this EGL display.
        let display = unsafe { EGLDisplay::new(gbm) }.map_err(|e| egl(e.to_string()))?;
        let context = EGLContext::new(&display).map_err(|e| egl(e.to_string()))?;
        // SAFETY: the context is new and not current on any other thread.
        let mut renderer = unsafe { GlesRenderer::new(context) }.map_err(|e| egl(e.to_string()))?;
        let gl = GlStrings::of(&mut renderer);
        if gl.is_software() {
            let described = format!("{} ({})", gl.renderer, gl.version);
            if !gl.mesa_at_least(26, 1) {
                return Err(RendererError::BrokenSoftwareGl {
                    device: device.to_owned(),
                    gl: described,
                });
            }
            if gpu_only {
                return Err(RendererError::SoftwareGl {
                    device: device.to_owned(),
                    gl: described,
                });
            }
        }
        Ok(DisplayRenderer::Gles {
            gl: Box::new(renderer),
            uploads: CpuUploads::default(),
        })
    }

    /// What composes, for the log: `GLES (llvmpipe …, OpenGL ES 3.2 Mesa …)`
    /// or `pixman (CPU)`.
    pub fn describe(&mut self) -> String {
        match self {
            DisplayRenderer::Gles { gl: r, .. } => {
                let gl = GlStrings::of(r);
                format!("GLES ({}, {})", gl.renderer, gl.version)
            }
            DisplayRenderer::Pixman(_) => "pixman (CPU)".into(),
        }
    }

    /// The formats and modifiers client dma-bufs may have: what the
    /// renderer imports as textures.
    pub fn texture_formats(&self) -> Vec<Format> {
        match self {
            DisplayRenderer::Gles { gl, .. } => gl.dmabuf_formats().into_iter().collect(),
            DisplayRenderer::Pixman(r) => r.dmabuf_formats().into_iter().collect(),
        }
    }

    /// The formats and modifiers the renderer draws into.
    pub fn render_formats(&self) -> Vec<Format> {
        match self {
            DisplayRenderer::Gles { gl, .. } => gl
                .egl_context()
                .dmabuf_render_formats()
                .iter()
                .copied()
                .collect(),
            DisplayRenderer::Pixman(r) => r.dmabuf_formats().into_iter().collect(),
        }
    }

    /// Tries to import a client dma-buf as the renderer will when drawing
    /// it. The import is cached by the renderer until the buffer is gone.
    ///
    /// `display_node` is the display's DRM node, for
    /// [`software_gl_can_sample`].
    pub fn import_dmabuf(
        &mut self,
        dmabuf: &Dmabuf,
        display_node: Option<&Path>,
    ) -> Result<(), String> {
        match self {
            DisplayRenderer::Gles { gl, uploads } => {
                import_for_gles(gl, uploads, dmabuf, display_node)
            }
            DisplayRenderer::Pixman(r) => r
                .import_dmabuf(dmabuf, None)
                .map(drop)
                .map_err(|e| format!("the renderer cannot import it: {e}")),
        }
    }

    /// Drops what the renderer still holds of buffers that are gone (their
    /// mappings, EGL images and GEM handles), so that a client's buffer is
    /// freed once the client and the surfaces showing it let it go.
    pub fn cleanup(&mut self) {
        let result = match self {
            DisplayRenderer::Gles { gl, uploads } => {
                uploads.cleanup();
                gl.cleanup_texture_cache()
                    .and_then(|()| forget_sampled_textures(gl))
                    .map_err(|e| e.to_string())
            }
            DisplayRenderer::Pixman(r) => r.cleanup_texture_cache().map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            tracing::debug!("renderer cleanup: {err}");
        }
    }
}

/// Checks a client dma-buf with the GLES renderer that will draw it: EGL
/// imports it, or, where software GL cannot sample it, it is drawn through
/// a copy ([`CpuUploads`]). What neither takes is refused.
pub fn import_for_gles(
    gl: &mut GlesRenderer,
    uploads: &mut CpuUploads,
    dmabuf: &Dmabuf,
    display_node: Option<&Path>,
) -> Result<(), String> {
    match software_gl_can_sample(gl, dmabuf, display_node) {
        Ok(()) => gl
            .import_dmabuf(dmabuf, None)
            .map(drop)
            .map_err(|e| format!("the renderer cannot import it: {e}")),
        Err(unsampled) => match uploads.accept(gl, dmabuf) {
            Ok(()) => {
                info!("drawing a client dma-buf through a copy after each attach: {unsampled}");
                Ok(())
            }
            Err(err) => Err(format!("{unsampled}, and it cannot be copied: {err}")),
        },
    }
}

/// Says, on software GL, which dma-bufs Mesa would import without error
/// and then sample through a null pointer.
///
/// llvmpipe maps an imported dma-buf itself with `PROT_READ | PROT_WRITE`.
/// Where that fails (a read-only dma-buf: `weston-simple-dmabuf-v4l`
/// exports vivid's buffers with `VIDIOC_EXPBUF` flags 0, GBM on
/// `kms_swrast` exports with `DRM_CLOEXEC` alone), `kms_swrast` imports it
/// into the display device and maps it with `DRM_IOCTL_MODE_MAP_DUMB`. That
/// works for the display's own buffers (the kernel gives back the device's
/// own object) and fails for any other device's (the kernel refuses to map
/// imported objects), and llvmpipe then draws with no mapping: SIGSEGV in
/// an `llvmpipe-N` thread, seen in the guest with vivid's buffers.
///
/// So each plane gets the two mappings Mesa will try: one page of the
/// first, and the second on a file of the display's node (`display_node`)
/// opened for the probe alone, so that the GEM handle it closes cannot be
/// one Mesa holds on its own file. Without the node (or where it cannot be
/// opened), a buffer the first way cannot map fails. Such a buffer is drawn
/// through a copy or refused ([`import_for_gles`]), never handed to
/// llvmpipe. On a GPU the driver imports through the kernel, and nothing is
/// checked.
pub fn software_gl_can_sample(
    renderer: &mut GlesRenderer,
    dmabuf: &Dmabuf,
    display_node: Option<&Path>,
) -> Result<(), String> {
    if !GlStrings::of(renderer).is_software() {
        return Ok(());
    }
    for (plane, fd) in dmabuf.handles().enumerate() {
        let Err(mmap_err) = map_one_page_read_write(fd) else {
            continue;
        };
        let dumb = match display_node {
            Some(node) => map_dumb_of_import(node, fd),
            None => Err("no display node to try MAP_DUMB on".into()),
        };
        if let Err(dumb_err) = dumb {
            return Err(format!(
                "plane {plane} can be mapped neither read-write ({mmap_err}) nor through the \
                 display ({dumb_err}): software GL (llvmpipe) would draw it through a null \
                 pointer"
            ));
        }
    }
    Ok(())
}

/// What llvmpipe tries first: a shared read-write mapping of the dma-buf.
fn map_one_page_read_write(fd: BorrowedFd<'_>) -> Result<(), rustix::io::Errno> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    let page = rustix::param::page_size();
    // SAFETY: a fresh shared mapping that nothing reads or writes, unmapped
    // at once.
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            page,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: the mapping just made, `page` bytes long.
    unsafe { munmap(ptr, page) }
}

/// What `kms_swrast` tries then: PRIME import into the display and
/// `DRM_IOCTL_MODE_MAP_DUMB` of the handle (the offset is all it returns;
/// nothing is mapped), on a file of the display's node of the probe's own.
/// The file gives up DRM master at once if opening it made it master (no
/// other file held it).
fn map_dumb_of_import(node: &Path, dmabuf: BorrowedFd<'_>) -> Result<(), String> {
    use rustix::fs::{open, Mode, OFlags};
    let file = open(node, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", node.display()))?;
    let kms = file.as_fd();
    // EINVAL where the open did not make it master.
    let _ = drm_ffi::auth::release_master(kms);
    let handle = drm_ffi::gem::fd_to_handle(kms, dmabuf)
        .map_err(|e| format!("PRIME import: {e}"))?
        .handle;
    let mapped = drm_ffi::mode::dumbbuffer::map(kms, handle, 0, 0).map(drop);
    if let Err(err) = drm_ffi::gem::close(kms, handle) {
        tracing::debug!(%err, "closing a probe's GEM handle");
    }
    mapped.map_err(|e| format!("MAP_DUMB: {e}"))
}

/// Draws one texel of a texture of our own into a texture of our own, so
/// that the GL driver lets go of the client textures the last frame sampled.
///
/// Deleting a texture and its EGL image does not free the dma-buf behind it
/// while the driver still has the texture bound for sampling, and Mesa's
/// gallium drivers (llvmpipe here) replace those bindings only at the next
/// textured draw. A frame that only clears, such as the one after the last
/// window closed, draws none, and the closed window's buffer stayed
/// allocated and attached to the display. Seen in the guest with Mesa 26.1:
/// held 3 s after the client let go, freed by this draw at once.
fn forget_sampled_textures(renderer: &mut GlesRenderer) -> Result<(), GlesError> {
    let one = Size::<i32, Buffer>::from((1, 1));
    let texel = renderer.import_memory(&[0; 4], Fourcc::Abgr8888, one, false)?;
    let mut target: GlesTexture = renderer.create_buffer(Fourcc::Abgr8888, one)?;
    let mut framebuffer = renderer.bind(&mut target)?;
    let whole = Rectangle::<i32, Physical>::from_size((1, 1).into());
    let mut frame = renderer.render(&mut framebuffer, (1, 1).into(), Transform::Normal)?;
    Frame::render_texture_from_to(
        &mut frame,
        &texel,
        Rectangle::from_size((1.0, 1.0).into()),
        whole,
        &[whole],
        &[],
        Transform::Normal,
        1.0,
    )?;
    frame.finish().map(drop)
}

/// `GL_RENDERER` and `GL_VERSION` of a GLES renderer.
struct GlStrings {
    renderer: String,
    version: String,
}

impl GlStrings {
    fn of(renderer: &mut GlesRenderer) -> Self {
        let get = |renderer: &mut GlesRenderer, name| {
            renderer
                .with_context(|gl| {
                    // SAFETY: the context is current inside with_context;
                    // GetString returns a static NUL-terminated string or
                    // null.
                    unsafe {
                        let s = gl.GetString(name);
                        (!s.is_null())
                            .then(|| CStr::from_ptr(s.cast()).to_string_lossy().into_owned())
                    }
                })
                .ok()
                .flatten()
                .unwrap_or_else(|| "unknown".into())
        };
        GlStrings {
            renderer: get(renderer, ffi::RENDERER),
            version: get(renderer, ffi::VERSION),
        }
    }

    /// Mesa's CPU rasterizers.
    fn is_software(&self) -> bool {
        ["llvmpipe", "softpipe", "swrast"]
            .iter()
            .any(|name| self.renderer.contains(name))
    }

    /// Whether `GL_VERSION` names Mesa `major.minor` or newer (false when
    /// it names no Mesa version).
    fn mesa_at_least(&self, major: u32, minor: u32) -> bool {
        mesa_version(&self.version).is_some_and(|v| v >= (major, minor))
    }
}

/// `(major, minor)` of the Mesa release in a `GL_VERSION` string such as
/// `OpenGL ES 3.2 Mesa 26.1.6-1~bpo13+1`.
fn mesa_version(gl_version: &str) -> Option<(u32, u32)> {
    let release = gl_version.split("Mesa ").nth(1)?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesa_versions_are_read_from_gl_version() {
        assert_eq!(mesa_version("OpenGL ES 3.2 Mesa 22.3.6"), Some((22, 3)));
        assert_eq!(
            mesa_version("OpenGL ES 3.2 Mesa 26.1.6-1~bpo13+1"),
            Some((26, 1))
        );
        assert_eq!(mesa_version("OpenGL ES 3.2 NVIDIA 550.54"), None);
    }

    #[test]
    fn old_software_gl_is_refused_and_new_is_not() {
        let gl = |renderer: &str, version: &str| GlStrings {
            renderer: renderer.into(),
            version: version.into(),
        };
        let old = gl(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            "OpenGL ES 3.2 Mesa 22.3.6",
        );
        assert!(old.is_software() && !old.mesa_at_least(26, 1));
        let new = gl(
            "llvmpipe (LLVM 19.1.7, 128 bits)",
            "OpenGL ES 3.2 Mesa 26.1.6",
        );
        assert!(new.is_software() && new.mesa_at_least(26, 1));
        let gpu = gl("V3D 4.2", "OpenGL ES 3.1 Mesa 22.3.6");
        assert!(!gpu.is_software());
    }
}
