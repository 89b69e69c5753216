//! KMS framebuffers for [`ScanoutBuffer`]s, each through the exporter made
//! for its allocator, and for clients' buffers as before.
//!
//! The compositor's own buffers go to the exporter of whatever made them:
//! heap dma-bufs through `HeapFramebufferExporter` (PRIME import and
//! `ADDFB2`), GBM bos through Smithay's `GbmFramebufferExporter` (as anvil
//! does), dumb buffers through Smithay's dumb exporter. Clients' linux-dmabuf
//! buffers, offered for direct scanout, always take the heap path, whatever
//! `--allocator` says: `--allocator` chooses where the compositor's own
//! buffers come from and nothing else.

use heapland_allocator::{FramebufferError, HeapFramebuffer, HeapFramebufferExporter};
use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, Format},
        drm::{
            dumb::DumbFramebuffer,
            exporter::{
                dumb::Error as DumbExportError,
                gbm::{Error as GbmExportError, GbmFramebufferExporter},
                ExportBuffer, ExportFramebuffer,
            },
            gbm::GbmFramebuffer,
            DrmDeviceFd, Framebuffer,
        },
    },
    reexports::drm::control::framebuffer,
};

use super::buffer::{Origin, ScanoutBuffer};

/// Exports scanout buffers of any origin, and clients' dma-bufs.
#[derive(Debug)]
pub struct ScanoutExporter {
    /// Heap buffers and clients' dma-bufs.
    heap: HeapFramebufferExporter,
    /// Present when the output's buffers come from GBM.
    gbm: Option<GbmFramebufferExporter<DrmDeviceFd>>,
}

impl ScanoutExporter {
    /// For heap or dumb buffers.
    pub fn new(heap: HeapFramebufferExporter) -> Self {
        ScanoutExporter { heap, gbm: None }
    }

    /// For GBM bos (and heap or dumb buffers).
    pub fn with_gbm(
        gbm: GbmFramebufferExporter<DrmDeviceFd>,
        heap: HeapFramebufferExporter,
    ) -> Self {
        ScanoutExporter {
            heap,
            gbm: Some(gbm),
        }
    }
}

/// A framebuffer from any of the exporters; removed from the device on drop.
#[derive(Debug)]
pub enum ScanoutFramebuffer {
    Heap(HeapFramebuffer),
    Gbm(GbmFramebuffer),
    Dumb(DumbFramebuffer),
}

impl AsRef<framebuffer::Handle> for ScanoutFramebuffer {
    fn as_ref(&self) -> &framebuffer::Handle {
        match self {
            ScanoutFramebuffer::Heap(fb) => fb.as_ref(),
            ScanoutFramebuffer::Gbm(fb) => fb.as_ref(),
            ScanoutFramebuffer::Dumb(fb) => fb.as_ref(),
        }
    }
}

impl Framebuffer for ScanoutFramebuffer {
    fn format(&self) -> Format {
        match self {
            ScanoutFramebuffer::Heap(fb) => fb.format(),
            ScanoutFramebuffer::Gbm(fb) => fb.format(),
            ScanoutFramebuffer::Dumb(fb) => fb.format(),
        }
    }
}

/// Why a framebuffer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScanoutFramebufferError {
    #[error(transparent)]
    Heap(#[from] FramebufferError),
    #[error("GBM framebuffer: {0}")]
    Gbm(#[from] GbmExportError),
    #[error("dumb framebuffer: {0}")]
    Dumb(#[from] DumbExportError),
    #[error("a GBM buffer reached an exporter made without GBM")]
    NoGbm,
}

impl ExportFramebuffer<ScanoutBuffer> for ScanoutExporter {
    type Framebuffer = ScanoutFramebuffer;
    type Error = ScanoutFramebufferError;

    fn add_framebuffer(
        &self,
        drm: &DrmDeviceFd,
        buffer: ExportBuffer<'_, ScanoutBuffer>,
        use_opaque: bool,
    ) -> Result<Option<ScanoutFramebuffer>, ScanoutFramebufferError> {
        let buffer = match buffer {
            ExportBuffer::Wayland(client) => {
                let fb = self.heap.add_framebuffer(
                    drm,
                    ExportBuffer::<Dmabuf>::Wayland(client),
                    use_opaque,
                )?;
                return Ok(fb.map(ScanoutFramebuffer::Heap));
            }
            ExportBuffer::Allocator(buffer) => buffer,
        };
        match buffer.origin() {
            Origin::Heap => {
                let fb = self.heap.add_framebuffer(
                    drm,
                    ExportBuffer::Allocator(buffer.dmabuf()),
                    use_opaque,
                )?;
                Ok(fb.map(ScanoutFramebuffer::Heap))
            }
            Origin::Gbm(bo) => {
                let gbm = self.gbm.as_ref().ok_or(ScanoutFramebufferError::NoGbm)?;
                let fb = gbm.add_framebuffer(drm, ExportBuffer::Allocator(bo), use_opaque)?;
                Ok(fb.map(ScanoutFramebuffer::Gbm))
            }
            Origin::Dumb(dumb) => {
                let fb = drm.add_framebuffer(drm, ExportBuffer::Allocator(dumb), use_opaque)?;
                Ok(fb.map(ScanoutFramebuffer::Dumb))
            }
        }
    }

    fn can_add_framebuffer(&self, buffer: &ExportBuffer<'_, ScanoutBuffer>) -> bool {
        match buffer {
            ExportBuffer::Wayland(client) => self
                .heap
                .can_add_framebuffer(&ExportBuffer::<Dmabuf>::Wayland(client)),
            ExportBuffer::Allocator(_) => true,
        }
    }
}
