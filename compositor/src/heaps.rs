//! Which DMA-BUF heap serves a set of devices, answered for the heap
//! protocol by the heap allocator library (`heapland-allocator`).
//!
//! The compositor only asks "for buffers touched by these devices, which
//! heap, and may I open it?". Discovery (the sysfs ABI of kernel/ABI.md) runs
//! once at start-up; the choice among heaps (most specific heap serving every
//! device, then `system`) is the allocator's, so the compositor and clients
//! that use the library agree. `/dev/udmabuf` is never handed out: it is not
//! a DMA-BUF heap and does not speak `DMA_HEAP_IOCTL_ALLOC`.

use std::os::fd::OwnedFd;

use heapland_allocator::{
    intersect, negotiation::resolve_devices, Constraints, DeviceNumber, Discovery, HeapInfo,
    HeapKind,
};
use rustix::fs::{Mode, OFlags};

/// Memory properties sent with a heap (`xx_dmabuf_heap_feedback_v1.heap_flags`).
pub const FLAG_CONTIGUOUS: u32 = 0x1;
pub const FLAG_COHERENT: u32 = 0x2;

/// An opened heap for one tranche.
#[derive(Debug)]
pub struct HeapGrant {
    pub fd: OwnedFd,
    pub name: String,
    pub flags: u32,
    /// Largest allocation in 4096-byte pages, 0 when unknown.
    pub max_pages: u32,
}

/// Why a tranche gets no heap (`no_heap_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHeap {
    NoHeaps(String),
    Unsatisfiable(String),
    Unavailable(String),
}

/// The heaps of this machine.
#[derive(Debug, Clone)]
pub struct HeapDirectory {
    discovery: Discovery,
    /// The DMA-BUF heaps among the discovered ones (no udmabuf).
    heaps: Vec<HeapInfo>,
}

impl HeapDirectory {
    /// Scans the real `/dev` and `/sys`.
    pub fn scan() -> Self {
        Self::from_discovery(Discovery::scan())
    }

    pub fn from_discovery(discovery: Discovery) -> Self {
        let heaps = discovery
            .heaps()
            .iter()
            .filter(|h| h.kind != HeapKind::Udmabuf)
            .cloned()
            .collect();
        HeapDirectory { discovery, heaps }
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Names of the DMA-BUF heaps found.
    pub fn names(&self) -> Vec<&str> {
        self.heaps.iter().map(|h| h.name.as_str()).collect()
    }

    /// Picks the heap whose memory every device in `devices` can use.
    pub fn select(&self, devices: &[u64]) -> Result<&HeapInfo, NoHeap> {
        if self.heaps.is_empty() {
            return Err(NoHeap::NoHeaps(
                self.discovery.empty_reason().unwrap_or_else(|| {
                    "no DMA-BUF heap on this system (only udmabuf, which is not a heap)".into()
                }),
            ));
        }
        let numbers: Vec<DeviceNumber> = devices
            .iter()
            .map(|d| DeviceNumber::from_dev_t(*d))
            .collect();
        let resolved = resolve_devices(&self.discovery, &numbers)
            .map_err(|e| NoHeap::Unsatisfiable(e.to_string()))?;
        let parts: Vec<Constraints> = resolved
            .iter()
            .map(|d| Constraints::for_device(d, &self.discovery.heaps_serving(d)))
            .collect();
        intersect(&parts)
            .select(&self.heaps, &resolved, 4096)
            .map_err(|e| NoHeap::Unsatisfiable(e.to_string()))
    }

    /// Selects and opens a heap for a tranche.
    pub fn grant(&self, devices: &[u64]) -> Result<HeapGrant, NoHeap> {
        let heap = self.select(devices)?;
        let fd = rustix::fs::open(
            &heap.dev_path,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            NoHeap::Unavailable(format!("cannot open {}: {e}", heap.dev_path.display()))
        })?;
        let p = heap.properties;
        let mut flags = 0;
        if p.contiguous {
            flags |= FLAG_CONTIGUOUS;
        }
        if p.coherent {
            flags |= FLAG_COHERENT;
        }
        let max_pages = if p.max_alloc_bytes == u64::MAX {
            0
        } else {
            u32::try_from(p.max_alloc_bytes / 4096).unwrap_or(u32::MAX)
        };
        Ok(HeapGrant {
            fd,
            name: heap.name.clone(),
            flags,
            max_pages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapland_allocator::SysRoots;

    #[test]
    fn empty_host_has_no_heaps() {
        let dir = std::env::temp_dir().join(format!("heapland-heaps-{}", std::process::id()));
        let dirs = HeapDirectory::from_discovery(Discovery::scan_roots(&SysRoots::under(&dir)));
        assert!(matches!(dirs.select(&[]), Err(NoHeap::NoHeaps(_))));
        assert!(matches!(dirs.grant(&[]), Err(NoHeap::NoHeaps(_))));
    }
}
