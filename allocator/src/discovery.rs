//! Finding the heaps of this system and what memory each gives.
//!
//! Three sources, from most to least specific:
//! 1. device heaps of `device_heap.ko`: `/dev/dma_heap/<name>` with properties
//!    in `/sys/class/device_heap/<name>/` (kernel/ABI.md);
//! 2. the kernel's own `system` heap, which publishes nothing: it is taken as
//!    non-contiguous, coherent, 64-bit, serving any device;
//! 3. `/dev/udmabuf`, which turns memfd pages into a dma-buf: a last resort
//!    with the same properties as `system`.
//!
//! Nothing read here can panic: a heap whose attributes do not parse is
//! skipped and the reason kept in [`Discovery::skipped`].

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    device::{self, DeviceInfo, DeviceNumber},
    Error, Result,
};

/// Where sysfs and /dev are mounted. Tests point these at a fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoots {
    /// The sysfs mount, normally `/sys`.
    pub sysfs: PathBuf,
    /// The devtmpfs mount, normally `/dev`.
    pub dev: PathBuf,
}

impl Default for SysRoots {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl SysRoots {
    /// Roots under a directory holding `sys/` and `dev/` (for fake trees).
    pub fn under(root: &Path) -> Self {
        Self {
            sysfs: root.join("sys"),
            dev: root.join("dev"),
        }
    }

    pub(crate) fn sysfs_canonical(&self) -> PathBuf {
        fs::canonicalize(&self.sysfs).unwrap_or_else(|_| self.sysfs.clone())
    }
}

/// Where a heap's memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeapKind {
    /// A heap of `device_heap.ko`, allocating through one device's DMA API.
    Device,
    /// The kernel's `system` heap.
    System,
    /// `/dev/udmabuf` over a sealed memfd.
    Udmabuf,
}

/// The memory a heap gives, as published in sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeapProperties {
    /// Every buffer is one physically contiguous range.
    pub contiguous: bool,
    /// The served device's DMA is cache-coherent with the CPU.
    pub coherent: bool,
    /// Every page lies below `2^dma_mask_bits`.
    pub dma_mask_bits: u32,
    /// Largest allocation in bytes.
    pub max_alloc_bytes: u64,
    /// Alignment of the start of every buffer (and chunk), in bytes.
    pub alignment_bytes: u64,
}

impl HeapProperties {
    /// What the `system` heap and udmabuf give: pages anywhere, coherent on
    /// x86, no limit but memory.
    pub const ANYWHERE: HeapProperties = HeapProperties {
        contiguous: false,
        coherent: true,
        dma_mask_bits: 64,
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
    };
}

/// One heap found by [`Discovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapInfo {
    /// The heap's name (`vkms-contig`, `system`, `udmabuf`).
    pub name: String,
    /// Where its memory comes from.
    pub kind: HeapKind,
    /// The node to open: `/dev/dma_heap/<name>` or `/dev/udmabuf`.
    pub dev_path: PathBuf,
    /// `dev_name()` of the served device, for device heaps.
    pub served_device: Option<String>,
    /// Canonical sysfs path of the served device, for device heaps.
    pub served_sysfs_path: Option<PathBuf>,
    /// Memory properties.
    pub properties: HeapProperties,
}

impl HeapInfo {
    /// True if this heap serves any device (system heap, udmabuf) rather than
    /// one in particular.
    pub fn serves_any_device(&self) -> bool {
        self.kind != HeapKind::Device
    }

    /// True if this heap was made for `device` or one of its parents.
    pub fn serves(&self, device: &DeviceInfo) -> bool {
        self.kind == HeapKind::Device && device.heap_names.contains(&self.name)
    }
}

/// A heap node or sysfs entry that was not usable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The heap's name or path.
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The heaps of one system, found under [`SysRoots`].
#[derive(Debug, Clone)]
pub struct Discovery {
    roots: SysRoots,
    heaps: Vec<HeapInfo>,
    skipped: Vec<Skipped>,
}

impl Discovery {
    /// Discovers the heaps of the running system (`/sys`, `/dev`).
    pub fn scan() -> Self {
        Self::scan_roots(&SysRoots::default())
    }

    /// Discovers the heaps under `roots`. Never fails: on a host without heaps
    /// the list is empty and [`Discovery::empty_reason`] says why.
    pub fn scan_roots(roots: &SysRoots) -> Self {
        let mut heaps = Vec::new();
        let mut skipped = Vec::new();
        let heap_dir = roots.dev.join("dma_heap");
        let mut names: Vec<String> = match fs::read_dir(&heap_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(err) => {
                skipped.push(Skipped {
                    name: heap_dir.display().to_string(),
                    reason: format!("cannot list: {err}"),
                });
                Vec::new()
            }
        };
        names.sort();

        let class = roots.sysfs.join("class/device_heap");
        for name in names {
            let dev_path = heap_dir.join(&name);
            let sys = class.join(&name);
            if sys.exists() {
                match read_device_heap(&name, &sys) {
                    Ok((properties, served_device, served_sysfs_path)) => heaps.push(HeapInfo {
                        name,
                        kind: HeapKind::Device,
                        dev_path,
                        served_device,
                        served_sysfs_path,
                        properties,
                    }),
                    Err(err) => skipped.push(Skipped {
                        name,
                        reason: err.to_string(),
                    }),
                }
            } else if name == "system" {
                heaps.push(HeapInfo {
                    name,
                    kind: HeapKind::System,
                    dev_path,
                    served_device: None,
                    served_sysfs_path: None,
                    properties: HeapProperties::ANYWHERE,
                });
            } else {
                skipped.push(Skipped {
                    name,
                    reason: "not a device_heap and not the system heap: its memory properties are unknown"
                        .into(),
                });
            }
        }

        // Heaps listed in sysfs without a /dev node (no devtmpfs?).
        if let Ok(entries) = fs::read_dir(&class) {
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == "add" || name == "remove" || heaps.iter().any(|h| h.name == name) {
                    continue;
                }
                if !skipped.iter().any(|s| s.name == name) {
                    skipped.push(Skipped {
                        reason: format!(
                            "in sysfs but {} is missing",
                            heap_dir.join(&name).display()
                        ),
                        name,
                    });
                }
            }
        }

        let udmabuf = roots.dev.join("udmabuf");
        if udmabuf.exists() {
            heaps.push(HeapInfo {
                name: "udmabuf".into(),
                kind: HeapKind::Udmabuf,
                dev_path: udmabuf,
                served_device: None,
                served_sysfs_path: None,
                properties: HeapProperties::ANYWHERE,
            });
        }

        // Most specific first: device heaps, then system, then udmabuf.
        heaps.sort_by_key(|h| match h.kind {
            HeapKind::Device => 0,
            HeapKind::System => 1,
            HeapKind::Udmabuf => 2,
        });

        Self {
            roots: roots.clone(),
            heaps,
            skipped,
        }
    }

    /// A discovery over a fixed list of heaps (for callers that build their
    /// own, and for tests).
    pub fn from_heaps(roots: SysRoots, heaps: Vec<HeapInfo>) -> Self {
        Self {
            roots,
            heaps,
            skipped: Vec::new(),
        }
    }

    /// The roots this discovery read.
    pub fn roots(&self) -> &SysRoots {
        &self.roots
    }

    /// Usable heaps: device heaps, then `system`, then udmabuf.
    pub fn heaps(&self) -> &[HeapInfo] {
        &self.heaps
    }

    /// A heap by name.
    pub fn heap(&self, name: &str) -> Option<&HeapInfo> {
        self.heaps.iter().find(|h| h.name == name)
    }

    /// Heaps and nodes that were found but could not be used.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// True if no heap at all is usable.
    pub fn is_empty(&self) -> bool {
        self.heaps.is_empty()
    }

    /// If no heap is usable, a sentence saying why (for logs and errors), so
    /// that a compositor can fall back to other memory and say so.
    pub fn empty_reason(&self) -> Option<String> {
        if !self.is_empty() {
            return None;
        }
        let mut reason = format!(
            "no usable heap in {} and no {}",
            self.roots.dev.join("dma_heap").display(),
            self.roots.dev.join("udmabuf").display()
        );
        for s in &self.skipped {
            reason.push_str(&format!("; {}: {}", s.name, s.reason));
        }
        Some(reason)
    }

    /// Resolves a device number to its sysfs device and serving heaps.
    pub fn resolve(&self, number: DeviceNumber) -> Result<DeviceInfo> {
        device::resolve(&self.roots, number)
    }

    /// Heaps made for `device` or its parents (nearest first), without the
    /// heaps that serve any device.
    pub fn heaps_serving(&self, device: &DeviceInfo) -> Vec<&HeapInfo> {
        device
            .heap_names
            .iter()
            .filter_map(|n| self.heap(n))
            .collect()
    }
}

fn read_attr(heap: &str, dir: &Path, attribute: &'static str) -> Result<String> {
    let path = dir.join(attribute);
    let raw = fs::read(&path).map_err(|source| Error::Read { path, source })?;
    let text = String::from_utf8_lossy(&raw).trim().to_owned();
    if text.is_empty() {
        return Err(Error::BadAttribute {
            heap: heap.into(),
            attribute,
            value: text,
            expected: "a value",
        });
    }
    Ok(text)
}

fn read_bool(heap: &str, dir: &Path, attribute: &'static str) -> Result<bool> {
    match read_attr(heap, dir, attribute)?.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(Error::BadAttribute {
            heap: heap.into(),
            attribute,
            value: other.into(),
            expected: "0 or 1",
        }),
    }
}

fn read_u64(heap: &str, dir: &Path, attribute: &'static str) -> Result<u64> {
    let text = read_attr(heap, dir, attribute)?;
    text.parse().map_err(|_| Error::BadAttribute {
        heap: heap.into(),
        attribute,
        value: text,
        expected: "a decimal number",
    })
}

type DeviceHeapAttrs = (HeapProperties, Option<String>, Option<PathBuf>);

fn read_device_heap(name: &str, dir: &Path) -> Result<DeviceHeapAttrs> {
    let published = read_attr(name, dir, "name")?;
    if published != name {
        return Err(Error::BadAttribute {
            heap: name.into(),
            attribute: "name",
            value: published,
            expected: "the heap's own name",
        });
    }
    let backing = read_attr(name, dir, "backing")?;
    let contiguous = read_bool(name, dir, "contiguous")?;
    match (backing.as_str(), contiguous) {
        ("contig", true) | ("sg", false) => {}
        ("contig", false) | ("sg", true) => {
            return Err(Error::BadAttribute {
                heap: name.into(),
                attribute: "contiguous",
                value: u8::from(contiguous).to_string(),
                expected: "1 for backing contig, 0 for backing sg",
            })
        }
        _ => {
            return Err(Error::BadAttribute {
                heap: name.into(),
                attribute: "backing",
                value: backing,
                expected: "contig or sg",
            })
        }
    }
    let coherent = read_bool(name, dir, "coherent")?;
    let dma_mask_bits = read_u64(name, dir, "dma_mask_bits")?;
    if !(1..=64).contains(&dma_mask_bits) {
        return Err(Error::BadAttribute {
            heap: name.into(),
            attribute: "dma_mask_bits",
            value: dma_mask_bits.to_string(),
            expected: "1 to 64",
        });
    }
    let max_alloc_bytes = read_u64(name, dir, "max_alloc_bytes")?;
    let alignment_bytes = read_u64(name, dir, "alignment_bytes")?;
    if !alignment_bytes.is_power_of_two() {
        return Err(Error::BadAttribute {
            heap: name.into(),
            attribute: "alignment_bytes",
            value: alignment_bytes.to_string(),
            expected: "a power of two",
        });
    }
    let served = fs::canonicalize(dir.join("device")).ok();
    let served_name = served
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    Ok((
        HeapProperties {
            contiguous,
            coherent,
            dma_mask_bits: dma_mask_bits as u32,
            max_alloc_bytes,
            alignment_bytes,
        },
        served_name,
        served,
    ))
}
