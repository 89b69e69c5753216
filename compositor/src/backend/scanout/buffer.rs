//! Scanout buffers from a heap, from GBM or from KMS dumb buffers, as one
//! type for one `DrmCompositor` type.
//!
//! Whatever made it, a [`ScanoutBuffer`] carries its memory as a writable,
//! linear [`Dmabuf`]: that is what pixman maps and draws into, and what the
//! screenshot reads, so rendering and screenshots work the same for every
//! allocator. Next to it the buffer keeps the allocator's own object (the GBM
//! bo, the dumb buffer), which holds the memory's handle on the display
//! device and is what the matching framebuffer exporter turns into a KMS
//! framebuffer.

use std::{convert::Infallible, io};

use heapland_allocator::{buffer_name, DmaHeapAllocator, DmaHeapAllocatorError};
use smithay::{
    backend::{
        allocator::{
            dmabuf::{AsDmabuf, Dmabuf, DmabufFlags},
            dumb::{DumbAllocator, DumbBuffer},
            gbm::{GbmAllocator, GbmBuffer, GbmBufferFlags},
            Allocator, Buffer, Format, Fourcc, Modifier,
        },
        drm::DrmDeviceFd,
    },
    reexports::{
        drm::{self, control::Device as ControlDevice},
        rustix::fs::{fcntl_getfl, OFlags},
    },
    utils::{Buffer as BufferCoords, Size},
};

use crate::frame_stats;

/// Makes scanout buffers for one output; which memory is chosen once, when
/// the output is set up (see `super::ScanoutMemory`).
#[derive(Debug)]
pub enum ScanoutAllocator {
    /// The DMA-BUF heap that serves the display and every device sharing
    /// its buffers.
    Heap(DmaHeapAllocator),
    /// Mesa's GBM on the display device.
    Gbm(GbmAllocator<DrmDeviceFd>),
    /// KMS dumb buffers of the display device.
    Dumb(DumbAllocator),
}

/// Why a scanout buffer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScanoutAllocError {
    #[error(transparent)]
    Heap(#[from] DmaHeapAllocatorError),
    #[error("the display offers no linear layout for {fourcc} (modifiers {offered:?}); pixman draws only into linear buffers")]
    NoLinear {
        fourcc: Fourcc,
        offered: Vec<Modifier>,
    },
    #[error("GBM cannot allocate a linear {width}x{height} {fourcc} scanout buffer: {source}")]
    Gbm {
        width: u32,
        height: u32,
        fourcc: Fourcc,
        #[source]
        source: io::Error,
    },
    #[error(
        "GBM gave a buffer with modifier {0:?} for a linear request; pixman cannot draw into it"
    )]
    GbmNotLinear(Modifier),
    #[error("GBM gave a buffer with {0} planes for {1}, which has one")]
    GbmPlanes(u32, Fourcc),
    #[error("cannot allocate a {width}x{height} {fourcc} dumb buffer: {source}")]
    Dumb {
        width: u32,
        height: u32,
        fourcc: Fourcc,
        #[source]
        source: io::Error,
    },
    #[error("cannot export the {what} buffer as a dma-buf: {source}")]
    Export {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the {0} buffer's dma-buf is read-only (exported without DRM_RDWR before heapland could), so pixman cannot draw into it")]
    ReadOnly(&'static str),
}

impl Allocator for ScanoutAllocator {
    type Buffer = ScanoutBuffer;
    type Error = ScanoutAllocError;

    fn create_buffer(
        &mut self,
        width: u32,
        height: u32,
        fourcc: Fourcc,
        modifiers: &[Modifier],
    ) -> Result<ScanoutBuffer, ScanoutAllocError> {
        let buffer = self.allocate(width, height, fourcc, modifiers)?;
        frame_stats::buffer_allocated();
        Ok(buffer)
    }
}

impl ScanoutAllocator {
    fn allocate(
        &mut self,
        width: u32,
        height: u32,
        fourcc: Fourcc,
        modifiers: &[Modifier],
    ) -> Result<ScanoutBuffer, ScanoutAllocError> {
        let linear_only = || {
            if modifiers.contains(&Modifier::Linear) {
                Ok([Modifier::Linear])
            } else {
                Err(ScanoutAllocError::NoLinear {
                    fourcc,
                    offered: modifiers.to_vec(),
                })
            }
        };
        match self {
            // The heap allocator describes the buffer with the modifier the
            // display asked for (LINEAR, or INVALID for implicit).
            ScanoutAllocator::Heap(heap) => {
                let dmabuf = heap.create_buffer(width, height, fourcc, modifiers)?;
                Ok(ScanoutBuffer {
                    dmabuf,
                    origin: Origin::Heap,
                })
            }
            ScanoutAllocator::Gbm(gbm) => {
                let linear = linear_only()?;
                // LINEAR as a flag too: where GBM falls back to allocating
                // without modifiers, the flag is what still promises a layout
                // pixman can draw into.
                let flags =
                    GbmBufferFlags::SCANOUT | GbmBufferFlags::RENDERING | GbmBufferFlags::LINEAR;
                let bo = gbm
                    .create_buffer_with_flags(width, height, fourcc, &linear, flags)
                    .map_err(|source| ScanoutAllocError::Gbm {
                        width,
                        height,
                        fourcc,
                        source,
                    })?;
                let dmabuf = gbm_dmabuf(gbm.as_ref(), &bo)?;
                Ok(ScanoutBuffer::named(dmabuf, Origin::Gbm(bo), "gbm"))
            }
            ScanoutAllocator::Dumb(dumb) => {
                let linear = linear_only()?;
                let buffer =
                    dumb.create_buffer(width, height, fourcc, &linear)
                        .map_err(|source| ScanoutAllocError::Dumb {
                            width,
                            height,
                            fourcc,
                            source,
                        })?;
                // Smithay exports dumb buffers with DRM_RDWR.
                let dmabuf = buffer
                    .export()
                    .map_err(|source| ScanoutAllocError::Export {
                        what: "dumb",
                        source,
                    })?;
                writable(&dmabuf, "dumb")?;
                Ok(ScanoutBuffer::named(dmabuf, Origin::Dumb(buffer), "dumb"))
            }
        }
    }
}

/// A GBM bo as a writable, linear dma-buf, exported by heapland itself.
///
/// Not through `gbm_bo_get_fd`: Mesa's software winsys (kms_swrast, what
/// GBM uses on display-only devices such as vkms) exports with `DRM_CLOEXEC`
/// alone, which makes a read-only dma-buf that pixman cannot map for
/// writing. The kernel keeps one dma-buf per GEM object and fixes its access
/// mode at the first export, so heapland exports first, with `DRM_RDWR`, from
/// the bo's GEM handle on the device fd GBM shares with it; a later export by
/// Mesa gets this same dma-buf.
fn gbm_dmabuf(
    device: &smithay::backend::allocator::gbm::GbmDevice<DrmDeviceFd>,
    bo: &GbmBuffer,
) -> Result<Dmabuf, ScanoutAllocError> {
    let format = Buffer::format(bo);
    let planes = bo.plane_count();
    if planes != 1 {
        return Err(ScanoutAllocError::GbmPlanes(planes, format.code));
    }
    // With the LINEAR flag, a bo allocated without modifiers reports
    // INVALID; its layout is linear all the same.
    let modifier = format.modifier;
    if !matches!(modifier, Modifier::Linear | Modifier::Invalid) {
        return Err(ScanoutAllocError::GbmNotLinear(modifier));
    }
    let drm_fd: &DrmDeviceFd = device;
    let fd = drm_fd
        .buffer_to_prime_fd(drm::buffer::Buffer::handle(bo), drm::CLOEXEC | drm::RDWR)
        .map_err(|source| ScanoutAllocError::Export {
            what: "GBM",
            source,
        })?;
    let size = Buffer::size(bo);
    let mut builder = Dmabuf::builder(size, format.code, Modifier::Linear, DmabufFlags::empty());
    builder.add_plane(fd, 0, bo.offset(0), bo.stride_for_plane(0));
    if let Some(node) = bo.device_node() {
        builder.set_node(node);
    }
    let dmabuf = builder.build().ok_or(ScanoutAllocError::Export {
        what: "GBM",
        source: io::Error::from(io::ErrorKind::InvalidData),
    })?;
    writable(&dmabuf, "GBM")?;
    Ok(dmabuf)
}

/// Fails unless the dma-buf's file is open for writing: an `mmap` with
/// `PROT_WRITE` of a read-only one fails, and pixman would only say
/// "cannot map".
fn writable(dmabuf: &Dmabuf, what: &'static str) -> Result<(), ScanoutAllocError> {
    let fd = dmabuf
        .handles()
        .next()
        .ok_or(ScanoutAllocError::ReadOnly(what))?;
    let flags = fcntl_getfl(fd).map_err(|e| ScanoutAllocError::Export {
        what,
        source: e.into(),
    })?;
    if flags & OFlags::RWMODE == OFlags::RDWR {
        Ok(())
    } else {
        Err(ScanoutAllocError::ReadOnly(what))
    }
}

/// What made a [`ScanoutBuffer`], and keeps its handle on the display device.
#[derive(Debug)]
pub enum Origin {
    /// The heap's dma-buf is all there is.
    Heap,
    Gbm(GbmBuffer),
    Dumb(DumbBuffer),
}

/// One scanout buffer: its memory as a dma-buf, and what made it.
#[derive(Debug)]
pub struct ScanoutBuffer {
    dmabuf: Dmabuf,
    origin: Origin,
}

impl ScanoutBuffer {
    /// Names the dma-buf `heapland <kind> WxH FOURCC`, as heap buffers are
    /// named, so that `/sys/kernel/debug/dma_buf/bufinfo` tells a person
    /// where each scanout buffer came from. A name is a debugging aid only.
    fn named(dmabuf: Dmabuf, origin: Origin, kind: &str) -> Self {
        let name = format!(
            "heapland {kind} {}x{} {}",
            dmabuf.width(),
            dmabuf.height(),
            dmabuf.format().code
        );
        match dmabuf.handles().next() {
            Some(fd) => {
                if let Err(err) = buffer_name::set_name(fd, &name) {
                    tracing::debug!(%err, "could not name a {kind} scanout buffer");
                }
            }
            None => tracing::debug!("could not name a {kind} scanout buffer"),
        }
        ScanoutBuffer { dmabuf, origin }
    }

    /// The memory as a linear dma-buf (pixman's target, the screenshot's
    /// source).
    pub fn dmabuf(&self) -> &Dmabuf {
        &self.dmabuf
    }

    /// What made the buffer.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl Buffer for ScanoutBuffer {
    fn size(&self) -> Size<i32, BufferCoords> {
        self.dmabuf.size()
    }

    fn format(&self) -> Format {
        self.dmabuf.format()
    }
}

impl AsDmabuf for ScanoutBuffer {
    type Error = Infallible;

    fn export(&self) -> Result<Dmabuf, Infallible> {
        Ok(self.dmabuf.clone())
    }
}
