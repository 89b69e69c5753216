//! Which DMA-BUF heap serves a set of devices, answered for the heap protocol.
//!
//! The compositor only needs one question answered: "for buffers touched by
//! these devices, which heap, and may I open it?". The sysfs ABI
//! (kernel/ABI.md) is read once at start-up: `/dev/dma_heap/*` lists heaps,
//! `/sys/class/device_heap/<heap>/` gives the served device and memory
//! properties; the kernel's `system` heap has no sysfs node and serves any
//! device (non-contiguous, coherent).

use std::{
    fs,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{Mode, OFlags};

/// Memory properties sent with a heap (`xx_dmabuf_heap_feedback_v1.heap_flags`).
pub const FLAG_CONTIGUOUS: u32 = 0x1;
pub const FLAG_COHERENT: u32 = 0x2;

/// One heap found at start-up.
#[derive(Debug, Clone)]
pub struct HeapEntry {
    pub name: String,
    pub node: PathBuf,
    /// Canonical sysfs path of the served device; `None` serves any device.
    pub served: Option<PathBuf>,
    pub flags: u32,
    pub max_alloc_bytes: u64,
}

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
    dev_dir: PathBuf,
    sys_root: PathBuf,
    heaps: Vec<HeapEntry>,
}

impl HeapDirectory {
    /// Scans the real `/dev/dma_heap` and `/sys`.
    pub fn scan() -> Self {
        Self::scan_roots(Path::new("/dev/dma_heap"), Path::new("/sys"))
    }

    /// Scans under the given roots (tests use a fake tree).
    pub fn scan_roots(dev_dir: &Path, sys_root: &Path) -> Self {
        let mut heaps = Vec::new();
        if let Ok(entries) = fs::read_dir(dev_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let class = sys_root.join("class/device_heap").join(&name);
                let heap = if class.exists() {
                    let read = |attr: &str| {
                        fs::read_to_string(class.join(attr))
                            .map(|s| s.trim().to_owned())
                            .unwrap_or_default()
                    };
                    let mut flags = 0;
                    if read("contiguous") == "1" {
                        flags |= FLAG_CONTIGUOUS;
                    }
                    if read("coherent") == "1" {
                        flags |= FLAG_COHERENT;
                    }
                    HeapEntry {
                        served: fs::canonicalize(class.join("device")).ok(),
                        max_alloc_bytes: read("max_alloc_bytes").parse().unwrap_or(0),
                        node: entry.path(),
                        name,
                        flags,
                    }
                } else {
                    // The kernel's own heaps (system): no properties, any device.
                    HeapEntry {
                        node: entry.path(),
                        name,
                        served: None,
                        flags: FLAG_COHERENT,
                        max_alloc_bytes: 0,
                    }
                };
                heaps.push(heap);
            }
        }
        // Device heaps first (most specific), then by name for stable output.
        heaps.sort_by(|a, b| (a.served.is_none(), &a.name).cmp(&(b.served.is_none(), &b.name)));
        HeapDirectory {
            dev_dir: dev_dir.to_owned(),
            sys_root: sys_root.to_owned(),
            heaps,
        }
    }

    pub fn heaps(&self) -> &[HeapEntry] {
        &self.heaps
    }

    /// The sysfs device directory of a character device number and its
    /// parents, innermost first.
    fn device_chain(&self, dev: u64) -> Vec<PathBuf> {
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let link = self
            .sys_root
            .join(format!("dev/char/{major}:{minor}/device"));
        let mut chain = Vec::new();
        let mut cur = fs::canonicalize(link).ok();
        while let Some(dir) = cur {
            if dir == self.sys_root.join("devices") || !dir.starts_with(&self.sys_root) {
                break;
            }
            cur = dir.parent().map(Path::to_owned);
            chain.push(dir);
        }
        chain
    }

    /// Picks the heap whose memory every device in `devices` can use.
    /// A device heap serves a device when it serves the device or one of its
    /// parents; the system heap serves everything but is chosen last.
    pub fn select(&self, devices: &[u64]) -> Result<&HeapEntry, NoHeap> {
        if self.heaps.is_empty() {
            return Err(NoHeap::NoHeaps(format!(
                "no DMA-BUF heap on this system ({} is empty or missing)",
                self.dev_dir.display()
            )));
        }
        let chains: Vec<(u64, Vec<PathBuf>)> = devices
            .iter()
            .map(|d| (*d, self.device_chain(*d)))
            .collect();
        for heap in &self.heaps {
            let ok = match &heap.served {
                None => true,
                Some(served) => chains.iter().all(|(_, chain)| chain.contains(served)),
            };
            if ok {
                return Ok(heap);
            }
        }
        let names: Vec<String> = chains
            .iter()
            .map(|(d, c)| match c.first() {
                Some(p) => p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                None => format!(
                    "{}:{} (unknown device)",
                    rustix::fs::major(*d),
                    rustix::fs::minor(*d)
                ),
            })
            .collect();
        Err(NoHeap::Unsatisfiable(format!(
            "no heap serves all of: {}",
            names.join(", ")
        )))
    }

    /// Selects and opens a heap for a tranche.
    pub fn grant(&self, devices: &[u64]) -> Result<HeapGrant, NoHeap> {
        let heap = self.select(devices)?;
        let fd = rustix::fs::open(&heap.node, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| {
                NoHeap::Unavailable(format!("cannot open {}: {e}", heap.node.display()))
            })?;
        Ok(HeapGrant {
            fd,
            name: heap.name.clone(),
            flags: heap.flags,
            max_pages: u32::try_from(heap.max_alloc_bytes / 4096).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_host_has_no_heaps() {
        let dir = std::env::temp_dir().join(format!("heapland-heaps-{}", std::process::id()));
        let dirs = HeapDirectory::scan_roots(&dir.join("dev/dma_heap"), &dir.join("sys"));
        assert!(matches!(dirs.select(&[]), Err(NoHeap::NoHeaps(_))));
    }

    #[test]
    fn system_heap_serves_any_device() {
        let dir = std::env::temp_dir().join(format!("heapland-heaps-sys-{}", std::process::id()));
        let dev = dir.join("dev/dma_heap");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("system"), b"").unwrap();
        let dirs = HeapDirectory::scan_roots(&dev, &dir.join("sys"));
        let heap = dirs.select(&[rustix::fs::makedev(226, 128)]).unwrap();
        assert_eq!(heap.name, "system");
        assert_eq!(heap.flags, FLAG_COHERENT);
        fs::remove_dir_all(&dir).unwrap();
    }
}
