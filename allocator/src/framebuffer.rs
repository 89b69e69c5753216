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
//! and one close ends it for everyone. Mesa (GBM, EGL) imports on the file
//! it was given, which is usually the display's, so closing handles there
//! could pull a handle from under the renderer. The exporter therefore opens
//! the display's node once more and imports, adds and removes framebuffers
//! on that file only: every handle it closes is its own. (wlroots keeps the
//! two apart the other way round, giving its renderer a file of its own.)
//! Framebuffer ids are global to the device, so the display's file commits
//! them as its own; a framebuffer holds the file open, so the file outlives
//! every framebuffer made on it. Where the node cannot be opened again, the
//! exporter imports on the display's file, as before, and says so once.

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::PathBuf,
    sync::Arc,
};

use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, format::get_opaque, Buffer, Format, Fourcc, Modifier},
        drm::{
            exporter::{ExportBuffer, ExportFramebuffer},
            DrmDeviceFd, Framebuffer,
        },
    },
    reexports::{
        drm::{
            self,
            buffer::{Handle as GemHandle, PlanarBuffer},
            control::{framebuffer, Device as ControlDevice, FbCmd2Flags},
            node::DrmNode,
        },
        rustix::fs::{Mode, OFlags},
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

/// The file imports and framebuffers are made on: the exporter's own file
/// of the display's node, or, where the node cannot be opened again, the
/// display's file itself.
#[derive(Debug)]
enum ImportFile {
    /// The exporter's own file: its GEM handles belong to no one else.
    Own { fd: OwnedFd, path: PathBuf },
    /// The display's file, shared with whatever else imports on it.
    Display(DrmDeviceFd),
}

impl AsFd for ImportFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            ImportFile::Own { fd, .. } => fd.as_fd(),
            ImportFile::Display(drm) => drm.as_fd(),
        }
    }
}

impl drm::Device for ImportFile {}
impl ControlDevice for ImportFile {}

impl ImportFile {
    /// Opens `drm`'s node again, or falls back to `drm` itself (a seat
    /// user whose node access came through libseat alone may not open it:
    /// seatd passes one file, logind's `TakeDevice` takes a device once).
    ///
    /// The new file must not keep DRM master: the kernel makes the first
    /// opener master when no file holds it (the display's file, between a
    /// VT switch and heapland's pause, does not), and a file holding it
    /// would keep the display's file from getting it back. PRIME imports and
    /// `ADDFB2` need neither master nor authentication on current kernels;
    /// kernels before 5.x wanted authenticated files for PRIME, which the
    /// display's file (the master) vouches for with `DRM_IOCTL_AUTH_MAGIC`.
    fn open(drm: &DrmDeviceFd) -> Self {
        let Some(path) = drm.dev_path() else {
            tracing::warn!("the display's DRM device has no node to open for imports: importing on its own file");
            return ImportFile::Display(drm.clone());
        };
        let fd = match rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(err) => {
                tracing::warn!(
                    path = %path.display(),
                    %err,
                    "cannot open the display's node again for PRIME imports: importing on the display's \
                     own file, whose GEM handles a GL renderer on the same file may share"
                );
                return ImportFile::Display(drm.clone());
            }
        };
        let file = ImportFile::Own { fd, path };
        // EINVAL where the open did not make it master: nothing to drop.
        let _ = drm::Device::release_master_lock(&file);
        // drm-rs deprecates magic authentication in favour of render nodes,
        // but a render node cannot add framebuffers: this file must be a
        // primary node's.
        #[allow(deprecated)]
        if let Err(err) = drm::Device::generate_auth_token(&file)
            .and_then(|token| drm::Device::authenticate_auth_token(drm, token))
        {
            tracing::debug!(%err, "the import file was not authenticated by the display's file");
        }
        file
    }

    fn device_name(&self) -> String {
        match self {
            ImportFile::Own { path, .. } => path.display().to_string(),
            ImportFile::Display(drm) => drm
                .dev_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "DRM device".into()),
        }
    }
}

/// A framebuffer made from a dma-buf; removed from the device on drop.
#[derive(Debug)]
pub struct HeapFramebuffer {
    fb: framebuffer::Handle,
    format: Format,
    file: Arc<ImportFile>,
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
        if let Err(err) = self.file.destroy_framebuffer(self.fb) {
            tracing::warn!(fb = ?self.fb, %err, "failed to destroy a framebuffer");
        }
    }
}

/// GBM-free [`ExportFramebuffer`] for [`Dmabuf`]s (PRIME + `ADDFB2`) on
/// its own file of the display's node.
#[derive(Debug, Clone)]
pub struct HeapFramebufferExporter {
    file: Arc<ImportFile>,
    #[cfg_attr(not(feature = "wayland"), allow(dead_code))]
    import_node: Option<DrmNode>,
}

impl HeapFramebufferExporter {
    /// An exporter for the display `drm`, importing on a file of its own
    /// (see the module's doc) or, where the node cannot be opened again, on
    /// `drm` itself, said once in the log.
    ///
    /// `import_node` filters clients' buffers by the node their `Dmabuf`
    /// names (linux-dmabuf's main device when they were made), as Smithay's
    /// `GbmFramebufferExporter` does, with one difference: `None` offers
    /// every client buffer, where Smithay's offers none. A heap buffer was
    /// not made on any device, so the node says little about it; the
    /// kernel's PRIME import and `ADDFB2` decide whether the display can
    /// take it.
    pub fn new(drm: &DrmDeviceFd, import_node: Option<DrmNode>) -> Self {
        Self {
            file: Arc::new(ImportFile::open(drm)),
            import_node,
        }
    }

    /// The exporter's own file of the display's node, where it has one
    /// (`None`: imports share the display's file, whose node could not be
    /// opened again). GEM handles made on it belong to its user alone.
    pub fn own_file(&self) -> Option<BorrowedFd<'_>> {
        match &*self.file {
            ImportFile::Own { fd, .. } => Some(fd.as_fd()),
            ImportFile::Display(_) => None,
        }
    }

    /// Makes a framebuffer for `dmabuf`. With `use_opaque`, formats with
    /// alpha are added as their opaque twin (ARGB8888 as XRGB8888), as
    /// Smithay does for primary planes.
    pub fn framebuffer(
        &self,
        dmabuf: &Dmabuf,
        use_opaque: bool,
    ) -> Result<HeapFramebuffer, FramebufferError> {
        framebuffer_from_dmabuf(&self.file, dmabuf, use_opaque)
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
    file: &Arc<ImportFile>,
    dmabuf: &Dmabuf,
    use_opaque: bool,
) -> Result<HeapFramebuffer, FramebufferError> {
    let drm = &**file;
    let device_name = || drm.device_name();
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
                file: file.clone(),
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

    /// `_drm` is the display's file: the framebuffer is made on the
    /// exporter's own file of the same node instead (see the module's doc).
    fn add_framebuffer(
        &self,
        _drm: &DrmDeviceFd,
        buffer: ExportBuffer<'_, Dmabuf>,
        use_opaque: bool,
    ) -> Result<Option<HeapFramebuffer>, FramebufferError> {
        #[allow(unreachable_patterns)]
        match buffer {
            ExportBuffer::Allocator(dmabuf) => self.framebuffer(dmabuf, use_opaque).map(Some),
            #[cfg(feature = "wayland")]
            ExportBuffer::Wayland(buffer) => match self.client_dmabuf(buffer) {
                Some(dmabuf) => self.framebuffer(dmabuf, use_opaque).map(Some),
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
