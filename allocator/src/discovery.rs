//! Finding the heaps of this system and what memory each gives.
//!
//! Five sources, from most to least specific:
//! 1. device heaps of `device_heap.ko`: `/dev/dma_heap/<name>` with properties
//!    in `/sys/class/device_heap/<name>/` (kernel/ABI.md);
//! 2. the kernel's own `system` heap, which publishes nothing: it is taken as
//!    non-contiguous, coherent, 64-bit, serving any device;
//! 3. the kernel's CMA heaps (module [`crate::cma`]): contiguous, but from an
//!    area nothing places, so their DMA reach is unknown;
//! 4. `/dev/udmabuf`, which turns memfd pages into a dma-buf: a last resort
//!    with the same properties as `system`;
//! 5. any other heap of the heap core, listed so that people see it, with
//!    unknown properties, and never chosen for a device.
//!
//! Each heap says whether it charges its memory to the allocating process's
//! memory cgroup (module [`crate::accounting`]).
//!
//! On kernels where device heaps join the heap core, the core's node of a
//! removed device heap stays until reboot; such a node (named like a device
//! heap, `<device>-contig` or `<device>-sg`, while `device_heap` is loaded)
//! is skipped with that reason, not listed as an unknown heap.
//!
//! Nothing read here can panic: a heap whose attributes do not parse is
//! skipped and the reason kept in [`Discovery::skipped`].

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::accounting::Accounting;
use crate::{
    accounting, cma,
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
    /// A CMA heap of the kernel (`default_cma_region`, or named after its
    /// CMA area, e.g. `reserved`): contiguous memory of unknown DMA reach.
    Cma,
    /// `/dev/udmabuf` over a sealed memfd.
    Udmabuf,
    /// A heap of the heap core that is none of the above: nothing is known
    /// about its memory, so it is listed but never chosen for a device.
    Other,
}

impl HeapKind {
    /// The lower-case word for people and scripts: `device`, `system`, `cma`,
    /// `udmabuf`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeapKind::Device => "device",
            HeapKind::System => "system",
            HeapKind::Cma => "cma",
            HeapKind::Udmabuf => "udmabuf",
            HeapKind::Other => "other",
        }
    }
}

/// The memory a heap gives, as published in sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeapProperties {
    /// Every buffer is one physically contiguous range.
    pub contiguous: bool,
    /// The served device's DMA is cache-coherent with the CPU.
    pub coherent: bool,
    /// Every page lies below `2^dma_mask_bits`; `None` where nothing says
    /// where the pages lie (CMA heaps, unknown heaps), so that no device with
    /// a narrower DMA mask is ever given them on a guess.
    pub dma_mask_bits: Option<u32>,
    /// Largest allocation in bytes (`u64::MAX`: no limit but memory).
    pub max_alloc_bytes: u64,
    /// Alignment of the start of every buffer (and chunk), in bytes.
    pub alignment_bytes: u64,
    /// Whether buffers are charged to the allocating process's memory cgroup.
    pub accounting: Accounting,
}

impl HeapProperties {
    /// What the `system` heap and udmabuf give: pages anywhere, coherent on
    /// x86, no limit but memory. Not charged; [`Discovery`] sets what each
    /// really does.
    pub const ANYWHERE: HeapProperties = HeapProperties {
        contiguous: false,
        coherent: true,
        dma_mask_bits: Some(64),
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
    };

    /// What a CMA heap gives: contiguous, cacheable pages (coherent on x86
    /// like the system heap's) from an area of unknown placement, up to the
    /// area's size where it is known, never charged.
    pub const CMA: HeapProperties = HeapProperties {
        contiguous: true,
        coherent: true,
        dma_mask_bits: None,
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
    };

    /// What is promised by a heap nobody describes: nothing. Not contiguous,
    /// not coherent, reach unknown, not charged; pages at least are aligned
    /// to a page.
    pub const UNKNOWN: HeapProperties = HeapProperties {
        contiguous: false,
        coherent: false,
        dma_mask_bits: None,
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
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
    /// Where buffers come from, for people: a device heap's `contig_source`
    /// attribute (`cma:<area>`, `migrate`, `buddy`) where the module has it,
    /// and `cma:<area>` for a CMA heap whose area is known.
    pub contig_source: Option<String>,
}

impl HeapInfo {
    /// True if this heap is meant for any device (system heap, udmabuf)
    /// rather than one in particular. Not so for CMA heaps and unknown heaps:
    /// nothing says where their memory lies, so they serve no device until
    /// proven (see [`crate::Intersection::check`]).
    pub fn serves_any_device(&self) -> bool {
        matches!(self.kind, HeapKind::System | HeapKind::Udmabuf)
    }

    /// False for heaps whose memory nothing describes ([`HeapKind::Other`]):
    /// their [`HeapProperties`] are [`HeapProperties::UNKNOWN`], promises of
    /// nothing rather than facts.
    pub fn properties_known(&self) -> bool {
        self.kind != HeapKind::Other
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
                    Ok(attrs) => heaps.push(HeapInfo {
                        name,
                        kind: HeapKind::Device,
                        dev_path,
                        served_device: attrs.served_device,
                        served_sysfs_path: attrs.served_sysfs_path,
                        properties: attrs.properties,
                        contig_source: attrs.contig_source,
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
                    properties: HeapProperties {
                        accounting: accounting::system_heap(roots),
                        ..HeapProperties::ANYWHERE
                    },
                    contig_source: None,
                });
            } else if let Some(area) = cma::heap_area(roots, &name) {
                let mut properties = HeapProperties::CMA;
                if let Some(total) = area.as_ref().and_then(|a| a.total_bytes) {
                    properties.max_alloc_bytes = total;
                }
                heaps.push(HeapInfo {
                    name,
                    kind: HeapKind::Cma,
                    dev_path,
                    served_device: None,
                    served_sysfs_path: None,
                    properties,
                    contig_source: area.map(|a| format!("cma:{}", a.name)),
                });
            } else if is_removed_device_heap(roots, &name) {
                skipped.push(Skipped {
                    name,
                    reason: "the heap core's node of a removed device heap (the core keeps \
                             nodes until reboot; allocations fail with ENODEV until the heap \
                             is added again)"
                        .into(),
                });
            } else {
                heaps.push(HeapInfo {
                    name,
                    kind: HeapKind::Other,
                    dev_path,
                    served_device: None,
                    served_sysfs_path: None,
                    properties: HeapProperties::UNKNOWN,
                    contig_source: None,
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
                // memfd pages are shmem pages, charged to the memory cgroup
                // of the process that faults them in: the allocating one,
                // which creates and fills the memfd.
                properties: HeapProperties {
                    accounting: Accounting::Memcg,
                    ..HeapProperties::ANYWHERE
                },
                contig_source: None,
            });
        }

        // Most specific first: device heaps, then system, CMA, udmabuf, and
        // the heaps nothing describes.
        heaps.sort_by_key(|h| match h.kind {
            HeapKind::Device => 0,
            HeapKind::System => 1,
            HeapKind::Cma => 2,
            HeapKind::Udmabuf => 3,
            HeapKind::Other => 4,
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

    /// Heaps found: device heaps, then `system`, CMA heaps, udmabuf, then
    /// heaps of unknown kind (listed, never chosen).
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

/// Reads an attribute that older modules lack: `None` if it does not exist.
fn read_optional_attr(heap: &str, dir: &Path, attribute: &'static str) -> Result<Option<String>> {
    if !dir.join(attribute).exists() {
        return Ok(None);
    }
    read_attr(heap, dir, attribute).map(Some)
}

/// A heap core node that is not in `device_heap`'s class but is named like
/// its heaps while the module is loaded: what the core keeps of a removed
/// device heap.
fn is_removed_device_heap(roots: &SysRoots, name: &str) -> bool {
    roots.sysfs.join("module/device_heap").exists()
        && roots.sysfs.join("class/dma_heap").join(name).exists()
        && (name.ends_with("-contig") || name.ends_with("-sg"))
}

/// What a device heap's sysfs directory says.
struct DeviceHeapAttrs {
    properties: HeapProperties,
    served_device: Option<String>,
    served_sysfs_path: Option<PathBuf>,
    contig_source: Option<String>,
}

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
    // Absent on modules older than the attribute: those charge nobody.
    let accounting = match read_optional_attr(name, dir, "accounting")? {
        None => Accounting::None,
        Some(word) => Accounting::from_word(&word).ok_or(Error::BadAttribute {
            heap: name.into(),
            attribute: "accounting",
            value: word,
            expected: "memcg or none",
        })?,
    };
    let contig_source = read_optional_attr(name, dir, "contig_source")?;
    let served = fs::canonicalize(dir.join("device")).ok();
    let served_name = served
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    Ok(DeviceHeapAttrs {
        properties: HeapProperties {
            contiguous,
            coherent,
            dma_mask_bits: Some(dma_mask_bits as u32),
            max_alloc_bytes,
            alignment_bytes,
            accounting,
        },
        served_device: served_name,
        served_sysfs_path: served,
        contig_source,
    })
}
