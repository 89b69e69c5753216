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
//! One renderer serves every output of a device, and the same one checks
//! each client dma-buf when it is created ([`DisplayRenderer::import_dmabuf`]):
//! what it refuses could never be drawn.

use std::ffi::CStr;

use smithay::backend::{
    allocator::{dmabuf::Dmabuf, gbm::GbmDevice, Format},
    drm::DrmDeviceFd,
    egl::{EGLContext, EGLDisplay},
    renderer::{
        gles::{ffi, GlesRenderer},
        pixman::PixmanRenderer,
        ImportDma, Renderer,
    },
};
use tracing::info;

use crate::cli::RendererKind;

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
}

/// The renderer of one display device.
pub enum DisplayRenderer {
    Gles(Box<GlesRenderer>),
    Pixman(PixmanRenderer),
}

impl DisplayRenderer {
    /// The renderer `kind` asks for on the display device `fd`. `auto`
    /// falls back to pixman when EGL does not work there, and says why.
    pub fn new(kind: RendererKind, fd: &DrmDeviceFd, device: &str) -> Result<Self, RendererError> {
        match kind {
            RendererKind::Pixman => Self::pixman(),
            RendererKind::Gles => Self::gles(fd, device),
            RendererKind::Auto => Self::gles(fd, device).or_else(|err| {
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

    fn gles(fd: &DrmDeviceFd, device: &str) -> Result<Self, RendererError> {
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
        let renderer = unsafe { GlesRenderer::new(context) }.map_err(|e| egl(e.to_string()))?;
        Ok(DisplayRenderer::Gles(Box::new(renderer)))
    }

    /// What composes, for the log: `GLES (llvmpipe …)` or `pixman (CPU)`.
    pub fn describe(&mut self) -> String {
        match self {
            DisplayRenderer::Gles(r) => {
                let name = r
                    .with_context(|gl| {
                        // SAFETY: the context is current inside with_context;
                        // GetString returns a static NUL-terminated string or
                        // null.
                        unsafe {
                            let s = gl.GetString(ffi::RENDERER);
                            (!s.is_null())
                                .then(|| CStr::from_ptr(s.cast()).to_string_lossy().into_owned())
                        }
                    })
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "unknown GL renderer".into());
                format!("GLES ({name})")
            }
            DisplayRenderer::Pixman(_) => "pixman (CPU)".into(),
        }
    }

    /// The formats and modifiers client dma-bufs may have: what the
    /// renderer imports as textures.
    pub fn texture_formats(&self) -> Vec<Format> {
        match self {
            DisplayRenderer::Gles(r) => r.dmabuf_formats().into_iter().collect(),
            DisplayRenderer::Pixman(r) => r.dmabuf_formats().into_iter().collect(),
        }
    }

    /// The formats and modifiers the renderer draws into.
    pub fn render_formats(&self) -> Vec<Format> {
        match self {
            DisplayRenderer::Gles(r) => r
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
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        let imported = match self {
            DisplayRenderer::Gles(r) => r
                .import_dmabuf(dmabuf, None)
                .map(drop)
                .map_err(|e| e.to_string()),
            DisplayRenderer::Pixman(r) => r
                .import_dmabuf(dmabuf, None)
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        imported.map_err(|e| format!("the renderer cannot import it: {e}"))
    }

    /// Drops what the renderer still holds of buffers that are gone (their
    /// mappings, EGL images and GEM handles), so that a client's buffer is
    /// freed once the client and the surfaces showing it let it go.
    pub fn cleanup(&mut self) {
        let result = match self {
            DisplayRenderer::Gles(r) => r.cleanup_texture_cache().map_err(|e| e.to_string()),
            DisplayRenderer::Pixman(r) => r.cleanup_texture_cache().map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            tracing::debug!("renderer cleanup: {err}");
        }
    }
}
