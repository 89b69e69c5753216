//! Where the drm backend's scanout buffers come from: `--allocator heap|gbm|dumb`.
//!
//! `heap` is the point of heapland: the buffers come from the DMA-BUF heap
//! that serves the display, the render node and every `--share-with` device.
//! `gbm` (Mesa's GBM on the display device) is the baseline heaps replace,
//! kept so that the two can be measured against each other on the same
//! compositor. `dumb` (KMS dumb buffers) needs nothing but the KMS driver, so
//! it is also where `heap` falls back when no heap serves the display: the
//! compositor still shows something, and one log line says why.
//!
//! pixman draws on the CPU whichever memory it is, so every kind ends up as
//! the same [`ScanoutBuffer`] (a linear dma-buf plus what made it) and one
//! `DrmCompositor<ScanoutAllocator, ScanoutExporter, ..>` type serves them
//! all: the rest of the drm backend does not know which kind it runs on.
//! GBM is opened only for `gbm`.

pub mod buffer;
pub mod framebuffer;

use heapland_allocator::{allocator_for, DeviceNumber, Discovery};
use smithay::backend::{
    allocator::{
        dumb::DumbAllocator,
        gbm::{GbmAllocator, GbmBufferFlags, GbmDevice},
        Fourcc,
    },
    drm::{exporter::gbm::GbmFramebufferExporter, DrmDeviceFd},
};
use tracing::warn;

use heapland_allocator::HeapFramebufferExporter;

use crate::cli::AllocatorKind;

pub use buffer::ScanoutAllocator;
pub use framebuffer::ScanoutExporter;

/// Why the scanout memory of a display device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScanoutError {
    #[error("--allocator gbm: Mesa's GBM cannot open {device}: {source} (GBM needs libgbm and a DRI driver for the device in /usr/lib/<arch>/dri, kms_swrast_dri.so for display-only devices such as vkms, from Debian's libgbm1 and libgl1-mesa-dri; GBM_DRIVERS_PATH names another directory)")]
    Gbm {
        device: String,
        #[source]
        source: std::io::Error,
    },
}

/// The scanout memory of one display device, chosen when the device is
/// opened; every output of the device gets its allocator from it, and all
/// share one exporter (one import file of the device).
#[derive(Debug)]
pub struct ScanoutMemory {
    pub kind: MemoryKind,
    exporter: HeapFramebufferExporter,
}

/// Where a device's scanout buffers come from.
#[derive(Debug)]
pub enum MemoryKind {
    /// Heaps that serve all of `devices` (the display first).
    Heap {
        discovery: Discovery,
        devices: Vec<DeviceNumber>,
    },
    Gbm(GbmDevice<DrmDeviceFd>),
    Dumb,
}

/// What one output scans out of.
pub struct OutputScanout {
    pub allocator: ScanoutAllocator,
    pub exporter: ScanoutExporter,
    /// Where the buffers come from, for the log: `DMA-BUF heap <name>`,
    /// `GBM` or `KMS dumb buffers`.
    pub source: String,
}

impl ScanoutMemory {
    /// Opens what `kind` needs on the display device `drm`: a GBM device
    /// for `gbm`, nothing more for the others, and the exporter that makes
    /// framebuffers of heap buffers and of clients' dma-bufs whatever makes
    /// heapland's own buffers. `devices` are the display's and those of
    /// every device sharing the buffers (heap only).
    pub fn open(
        kind: AllocatorKind,
        drm: &DrmDeviceFd,
        device_name: &str,
        discovery: &Discovery,
        devices: Vec<DeviceNumber>,
    ) -> Result<Self, ScanoutError> {
        let kind = match kind {
            AllocatorKind::Heap => MemoryKind::Heap {
                discovery: discovery.clone(),
                devices,
            },
            AllocatorKind::Gbm => {
                MemoryKind::Gbm(GbmDevice::new(drm.clone()).map_err(|source| {
                    ScanoutError::Gbm {
                        device: device_name.to_owned(),
                        source,
                    }
                })?)
            }
            AllocatorKind::Dumb => MemoryKind::Dumb,
        };
        Ok(ScanoutMemory {
            kind,
            exporter: HeapFramebufferExporter::new(drm, None),
        })
    }

    /// The allocator and exporter for an output of `width`x`height` on
    /// `drm`. With heaps and none that can hold the output's buffers, one
    /// warning says why and the output gets dumb buffers.
    pub fn for_output(
        &self,
        drm: &DrmDeviceFd,
        device_name: &str,
        width: u32,
        height: u32,
    ) -> OutputScanout {
        match &self.kind {
            MemoryKind::Heap { discovery, devices } => {
                // One heap for every buffer of the output, chosen for its
                // mode's size.
                match allocator_for(discovery, devices, Fourcc::Xrgb8888, width, height) {
                    Ok(allocator) => OutputScanout {
                        source: format!("DMA-BUF heap {}", allocator.heap().name()),
                        allocator: ScanoutAllocator::Heap(allocator.with_label("heapland")),
                        exporter: ScanoutExporter::new(self.exporter.clone()),
                    },
                    Err(err) => {
                        warn!(
                            "no DMA-BUF heap can hold scanout buffers for {device_name} ({err}): \
                             using KMS dumb buffers instead (load device_heap.ko for it, see kernel/README.md)"
                        );
                        self.dumb(drm)
                    }
                }
            }
            MemoryKind::Gbm(gbm) => OutputScanout {
                // The flags are given again for each buffer (buffer.rs).
                allocator: ScanoutAllocator::Gbm(GbmAllocator::new(
                    gbm.clone(),
                    GbmBufferFlags::SCANOUT,
                )),
                // No import node: clients' buffers take the heap exporter's
                // path (framebuffer.rs), not GBM's.
                exporter: ScanoutExporter::with_gbm(
                    GbmFramebufferExporter::new(gbm.clone(), None),
                    self.exporter.clone(),
                ),
                // Not gbm_device_get_backend_name(): the gbm crate panics
                // on a name that is not UTF-8.
                source: "GBM".into(),
            },
            MemoryKind::Dumb => self.dumb(drm),
        }
    }

    /// KMS dumb buffers: what every KMS driver scans out, the fallback when
    /// heap memory cannot be used for an output.
    pub fn dumb(&self, drm: &DrmDeviceFd) -> OutputScanout {
        OutputScanout {
            allocator: ScanoutAllocator::Dumb(DumbAllocator::new(drm.clone())),
            exporter: ScanoutExporter::new(self.exporter.clone()),
            source: "KMS dumb buffers".into(),
        }
    }
}

impl OutputScanout {
    /// Heap memory, which the display may still refuse when it is first
    /// committed (the kernel described the device wrongly, or not at all).
    pub fn is_heap(&self) -> bool {
        matches!(self.allocator, ScanoutAllocator::Heap(_))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use heapland_allocator::SysRoots;
    use smithay::utils::DeviceFd;

    use super::*;

    /// Any fd will do: nothing here talks to the device.
    fn not_a_drm_device() -> DrmDeviceFd {
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        DrmDeviceFd::new(DeviceFd::from(std::os::fd::OwnedFd::from(file)))
    }

    #[test]
    fn heap_without_heaps_falls_back_to_dumb_buffers() {
        let drm = not_a_drm_device();
        let discovery = Discovery::scan_roots(&SysRoots::under(Path::new(
            "/nonexistent/heapland-scanout-test",
        )));
        let memory = ScanoutMemory::open(AllocatorKind::Heap, &drm, "test", &discovery, vec![])
            .expect("heap memory needs nothing opened");
        let out = memory.for_output(&drm, "test", 640, 480);
        assert_eq!(out.source, "KMS dumb buffers");
        assert!(matches!(out.allocator, ScanoutAllocator::Dumb(_)));
    }

    #[test]
    fn dumb_opens_nothing() {
        let drm = not_a_drm_device();
        let discovery = Discovery::scan_roots(&SysRoots::under(Path::new("/nonexistent")));
        let memory = ScanoutMemory::open(AllocatorKind::Dumb, &drm, "test", &discovery, vec![])
            .expect("dumb memory needs nothing opened");
        assert!(matches!(memory.kind, MemoryKind::Dumb));
        assert_eq!(
            memory.for_output(&drm, "test", 64, 64).source,
            "KMS dumb buffers"
        );
    }
}
