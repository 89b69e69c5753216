//! Scanning out dma-bufs without GBM: PRIME import and `ADDFB2`.
//!
//! Smithay's `GbmFramebufferExporter` imports a dma-buf through libgbm only
//! to get GEM handles for `ADDFB2`. The kernel gives those handles directly
//! (`DRM_IOCTL_PRIME_FD_TO_HANDLE`), so [`HeapFramebufferExporter`] needs no
//! userspace driver, and `DrmCompositor` can run with `gbm: None`. The GEM
//! handles are closed as soon as the framebuffer exists: the framebuffer
//! holds its own reference to the buffer.
//!
//! GEM handles belong to an open file of the device and are not counted: a
//! second import of the same dma-buf on the same file gives the same handle,
//! and one close ends it for everyone. The exporter imports on the file
//! `add_framebuffer` is given (the display's) and closes its handles before
//! it returns, so a renderer importing on the same file (Mesa's GBM and EGL
//! on the display's node) can lose a handle the two share. The way out is a
//! file of the exporter's own (or, as wlroots does, of the renderer's own);
//! it is not taken yet.
//! The `import_node` filter chooses which clients' buffers are offered.

use std::os::fd::AsFd;

use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, format::get_opaque, Buffer, Format, Fourcc, Modifier},
        drm::{
            exporter::{ExportBuffer, ExportFramebuffer},
            DrmDeviceFd, Framebuffer,
        },
    },
    reexports::drm::{
        buffer::{Handle as GemHandle, PlanarBuffer},
        control::{framebuffer, Device as ControlDevice, FbCmd2Flags},
        node::DrmNode,
    },
    utils::DevPath,
};

/// Why a framebuffer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FramebufferError {
    /// `DRM_IOCTL_PRIME_FD_TO_HANDLE` failed (the driver cannot import this
    /// memory, e.g. vkms without the exporter's `vmap`).
    #[error("PRIME import of plane {plane} into {device} failed: {source}")]
    Import {
        /// The DRM device.
        device: String,
        /// The plane.
        plane: usize,
        /// The errno.
        source: std::io::Error,
    },
    /// `DRM_IOCTL_MODE_ADDFB2` refused the buffer.
    #[error(
        "ADDFB2 of {width}x{height} {format} (modifier {modifier:?}) on {device} failed: {source}"
    )]
    AddFramebuffer {
        /// The DRM device.
        device: String,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Format.
        format: Fourcc,
        /// Modifier.
        modifier: Modifier,
        /// The errno.
        source: std::io::Error,
    },
}

/// A framebuffer made from a dma-buf; removed from the device on drop.
#[derive(Debug)]
pub struct HeapFramebuffer {
    fb: framebuffer::Handle,
    format: Format,
    drm: DrmDeviceFd,
}

impl AsRef<framebuffer::Handle> for HeapFramebuffer {
    fn as_ref(&self) -> &framebuffer::Handle {
        &self.fb
    }
}

impl Framebuffer for HeapFramebuffer {
    fn format(&self) -> Format {
        self.format
    }
}

impl Drop for HeapFramebuffer {
    fn drop(&mut self) {
        if let Err(err) = self.drm.destroy_framebuffer(self.fb) {
            tracing::warn!(fb = ?self.fb, %err, "failed to destroy a framebuffer");
        }
    }
}

/// GBM-free [`ExportFramebuffer`] for [`Dmabuf`]s (PRIME + `ADDFB2`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapFramebufferExporter {
    #[cfg_attr(not(feature = "wayland"), allow(dead_code))]
    import_node: Option<DrmNode>,
}

impl HeapFramebufferExporter {
    /// An exporter that offers clients' buffers for scanout by the node their
    /// `Dmabuf` names (linux-dmabuf's main device when they were made), as
    /// Smithay's `GbmFramebufferExporter` filters them, with one difference:
    /// `None` offers every client buffer, where Smithay's offers none. A
    /// heap buffer was not made on any device, so the node says little about
    /// it; the kernel's PRIME import and `ADDFB2` decide whether the display
    /// can take it.
    pub fn new(import_node: Option<DrmNode>) -> Self {
        Self { import_node }
    }

    /// Makes a framebuffer for `dmabuf`. With `use_opaque`, formats with
    /// alpha are added as their opaque twin (ARGB8888 as XRGB8888), as
    /// Smithay does for primary planes.
    pub fn framebuffer(
        &self,
        drm: &DrmDeviceFd,
        dmabuf: &Dmabuf,
        use_opaque: bool,
    ) -> Result<HeapFramebuffer, FramebufferError> {
        framebuffer_from_dmabuf(drm, dmabuf, use_opaque)
    }

    /// A client's linux-dmabuf buffer, if it may go to KMS: its node passes
    /// the filter, and its modifier is explicit. Buffers with an implicit
    /// modifier may not: their layout is private to the driver that made
    /// them, and KMS could show garbage (the rule Weston and Smithay follow).
    #[cfg(feature = "wayland")]
    fn client_dmabuf<'a>(
        &self,
        buffer: &'a smithay::reexports::wayland_server::protocol::wl_buffer::WlBuffer,
    ) -> Option<&'a Dmabuf> {
        smithay::wayland::dmabuf::get_dmabuf(buffer)
            .ok()
            .filter(|d| d.format().modifier != Modifier::Invalid)
            .filter(|d| self.import_node.is_none() || d.node() == self.import_node)
    }
}

struct Planes {
    size: (u32, u32),
    format: Fourcc,
    modifier: Option<Modifier>,
    handles: [Option<GemHandle>; 4],
    pitches: [u32; 4],
    offsets: [u32; 4],
}

impl PlanarBuffer for Planes {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn format(&self) -> Fourcc {
        self.format
    }
    fn modifier(&self) -> Option<Modifier> {
        self.modifier
    }
    fn pitches(&self) -> [u32; 4] {
        self.pitches
    }
    fn handles(&self) -> [Option<GemHandle>; 4] {
        self.handles
    }
    fn offsets(&self) -> [u32; 4] {
        self.offsets
    }
}

fn framebuffer_from_dmabuf(
    drm: &DrmDeviceFd,
    dmabuf: &Dmabuf,
    use_opaque: bool,
) -> Result<HeapFramebuffer, FramebufferError> {
    let device_name = || {
        drm.dev_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "DRM device".into())
    };
    let mut handles = [None; 4];
    let mut imported: Vec<GemHandle> = Vec::with_capacity(4);
    let mut result = Ok(());
    for (plane, fd) in dmabuf.handles().enumerate().take(4) {
        match drm.prime_fd_to_buffer(fd.as_fd()) {
            Ok(handle) => {
                handles[plane] = Some(handle);
                // The same dma-buf imported twice gives the same handle,
                // which must be closed once.
                if !imported.contains(&handle) {
                    imported.push(handle);
                }
            }
            Err(source) => {
                result = Err(FramebufferError::Import {
                    device: device_name(),
                    plane,
                    source,
                });
                break;
            }
        }
    }

    let fb = result.and_then(|()| {
        let mut pitches = [0; 4];
        let mut offsets = [0; 4];
        for (i, s) in dmabuf.strides().enumerate().take(4) {
            pitches[i] = s;
        }
        for (i, o) in dmabuf.offsets().enumerate().take(4) {
            offsets[i] = o;
        }
        let code = dmabuf.format().code;
        let format = if use_opaque {
            get_opaque(code).unwrap_or(code)
        } else {
            code
        };
        let modifier = dmabuf.format().modifier;
        let explicit = modifier != Modifier::Invalid;
        let planes = Planes {
            size: (dmabuf.width(), dmabuf.height()),
            format,
            modifier: explicit.then_some(modifier),
            handles,
            pitches,
            offsets,
        };
        let flags = if explicit {
            FbCmd2Flags::MODIFIERS
        } else {
            FbCmd2Flags::empty()
        };
        drm.add_planar_framebuffer(&planes, flags)
            .map(|fb| HeapFramebuffer {
                fb,
                format: Format {
                    code: format,
                    modifier,
                },
                drm: drm.clone(),
            })
            .map_err(|source| FramebufferError::AddFramebuffer {
                device: device_name(),
                width: planes.size.0,
                height: planes.size.1,
                format,
                modifier,
                source,
            })
    });

    for handle in imported {
        if let Err(err) = drm.close_buffer(handle) {
            tracing::warn!(?handle, %err, "failed to close a GEM handle");
        }
    }
    fb
}

impl ExportFramebuffer<Dmabuf> for HeapFramebufferExporter {
    type Framebuffer = HeapFramebuffer;
    type Error = FramebufferError;

    /// Imports on `drm` and closes the handles before returning (see the
    /// module's doc).
    fn add_framebuffer(
        &self,
        drm: &DrmDeviceFd,
        buffer: ExportBuffer<'_, Dmabuf>,
        use_opaque: bool,
    ) -> Result<Option<HeapFramebuffer>, FramebufferError> {
        #[allow(unreachable_patterns)]
        match buffer {
            ExportBuffer::Allocator(dmabuf) => self.framebuffer(drm, dmabuf, use_opaque).map(Some),
            #[cfg(feature = "wayland")]
            ExportBuffer::Wayland(buffer) => match self.client_dmabuf(buffer) {
                Some(dmabuf) => self.framebuffer(drm, dmabuf, use_opaque).map(Some),
                None => Ok(None),
            },
            // Without the `wayland` feature, client buffers (present when
            // some other crate turns on Smithay's wayland_frontend) are
            // composited, not scanned out.
            _ => Ok(None),
        }
    }

    fn can_add_framebuffer(&self, buffer: &ExportBuffer<'_, Dmabuf>) -> bool {
        #[allow(unreachable_patterns)]
        match buffer {
            ExportBuffer::Allocator(_) => true,
            #[cfg(feature = "wayland")]
            ExportBuffer::Wayland(buffer) => self.client_dmabuf(buffer).is_some(),
            _ => false,
        }
    }
}
