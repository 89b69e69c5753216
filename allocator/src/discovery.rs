//! Finding the heaps of this system and what memory each gives.
//!
//! Five sources, from most to least specific:
//! 1. device heaps of `device_heap.ko`: `/dev/dma_heap/<name>` with properties
//!    in `/sys/class/device_heap/<name>/` (kernel/ABI.md). A device heap is
//!    one kind of memory, named for it (`system-32bit-contiguous`,
//!    `system-contiguous`, `system-32bit`, `<area>-contiguous`), shared by
//!    every served device whose needs it meets; its `served/` links name
//!    those devices;
//! 2. the kernel's own `system` heap, which publishes nothing: it is taken as
//!    non-contiguous, coherent, 64-bit;
//! 3. the kernel's CMA heaps (module [`crate::cma`]): contiguous, but from an
//!    area nothing places, so their DMA reach is unknown;
//! 4. `/dev/udmabuf`, which turns memfd pages into a dma-buf: a last resort
//!    with the same properties as `system`;
//! 5. any other heap of the heap core, listed so that people see it, with
//!    unknown properties, and never chosen for a device.
//!
//! Which heap serves which device is not decided here but read: every device
//! the module serves links to the heaps that serve it, best first, the
//! kernel's own heaps included (module [`crate::device`]). The links are the
//! kernel's word on membership, which knows what userspace cannot (where RAM
//! and CMA areas lie, which device gathers pages), so [`HeapInfo::serves`]
//! follows them rather than comparing properties. The kernel's heaps have no
//! `served/` directory; the devices linking to them are found through the
//! links of the devices the module serves.
//!
//! Each heap says whether it charges its memory to the allocating process's
//! memory cgroup (module [`crate::accounting`]), and whether something bounds
//! what one user may pin in it ([`HeapProperties::max_user_bytes`]: the
//! module's heaps do, the kernel's do not).
//!
//! On kernels where device heaps join the heap core, the core's node of a
//! removed device heap stays until reboot; such a node (named like a device
//! heap, e.g. `system-32bit-contiguous`, while `device_heap` is loaded) is
//! skipped with that reason, not listed as an unknown heap.
//!
//! Nothing read here can panic: a heap whose attributes do not parse is
//! skipped and the reason kept in [`Discovery::skipped`].

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::accounting::Accounting;
use crate::dma_heap::{DmaHeap, DmaHeapError};
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
    /// A heap of `device_heap.ko`: one kind of memory, shared by every
    /// served device it suits.
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
    /// The DMA of every device the heap was made for is cache-coherent with
    /// the CPU.
    pub coherent: bool,
    /// Every page lies below `2^dma_mask_bits`; `None` where nothing says
    /// where the pages lie (CMA heaps, unknown heaps), so that no device with
    /// a narrower DMA mask is ever given them on a guess. The module caps
    /// its heaps' value at RAM's last byte: `system-contiguous` may say 33.
    pub dma_mask_bits: Option<u32>,
    /// Largest allocation in bytes (`u64::MAX`: no limit but memory).
    pub max_alloc_bytes: u64,
    /// Alignment of the start of every buffer (and chunk), in bytes.
    pub alignment_bytes: u64,
    /// Whether buffers are charged to the allocating process's memory cgroup.
    pub accounting: Accounting,
    /// The most bytes one user (other than tasks with `CAP_IPC_LOCK`) may
    /// have pinned at once across all of the module's heaps; an allocation
    /// over it fails with ENOMEM. The device heap's `max_user_bytes`
    /// attribute; `None` where nothing bounds what one user pins: the
    /// kernel's own heaps (`system`, CMA heaps), udmabuf, and device heaps of
    /// modules older than the attribute.
    ///
    /// This decides who may be handed the heap. A heap fd lets its holder
    /// pin memory that cannot be swapped, that the OOM killer does not see,
    /// and that a memory cgroup charge bounds only where some ancestor sets
    /// `memory.max`. A heap that bounds what one user pins may be handed to
    /// any client; one that does not only to clients who could open the
    /// node themselves, so that handing them the fd gives them nothing
    /// their own credentials do not.
    pub max_user_bytes: Option<u64>,
}

impl HeapProperties {
    /// What the `system` heap and udmabuf give: pages anywhere, coherent on
    /// x86, no limit but memory, nothing bounding what one user pins. Not
    /// charged; [`Discovery`] sets what each really does.
    pub const ANYWHERE: HeapProperties = HeapProperties {
        contiguous: false,
        coherent: true,
        dma_mask_bits: Some(64),
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
        max_user_bytes: None,
    };

    /// What a CMA heap gives: contiguous, cacheable pages (coherent on x86
    /// like the system heap's) from an area of unknown placement, up to the
    /// area's size where it is known, never charged, nothing bounding what
    /// one user pins.
    pub const CMA: HeapProperties = HeapProperties {
        contiguous: true,
        coherent: true,
        dma_mask_bits: None,
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
        max_user_bytes: None,
    };

    /// What is promised by a heap nobody describes: nothing. Not contiguous,
    /// not coherent, reach unknown, not charged, no bound per user; pages at
    /// least are aligned to a page.
    pub const UNKNOWN: HeapProperties = HeapProperties {
        contiguous: false,
        coherent: false,
        dma_mask_bits: None,
        max_alloc_bytes: u64::MAX,
        alignment_bytes: 4096,
        accounting: Accounting::None,
        max_user_bytes: None,
    };
}

/// A served device that links to a heap, as the heap's
/// `served/<bus>:<device>` link names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServedLink {
    /// The device's bus, as `add` takes it: `platform`, `pci`, `faux`,
    /// `amba`.
    pub bus: String,
    /// `dev_name()` of the device, e.g. `vkms`, `vivid.0`, `0000:00:02.0`.
    pub name: String,
    /// Canonical sysfs path of the device (where its `dma_heaps/` is).
    pub sysfs_path: PathBuf,
}

/// One heap found by [`Discovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapInfo {
    /// The heap's name (`system-32bit-contiguous`, `system`, `udmabuf`).
    pub name: String,
    /// Where its memory comes from.
    pub kind: HeapKind,
    /// The node to open: `/dev/dma_heap/<name>` or `/dev/udmabuf`.
    pub dev_path: PathBuf,
    /// The served devices that link to this heap, by bus and name: a device
    /// heap's `served/` links; for the kernel's heaps, the devices served by
    /// the module whose `dma_heaps/` links to them. Empty for udmabuf, and
    /// for a heap no served device links to.
    pub served: Vec<ServedLink>,
    /// Memory properties.
    pub properties: HeapProperties,
    /// Where buffers come from, for people: a device heap's `contig_source`
    /// attribute, the sources in the order tried, separated by spaces
    /// (`cma:reserved buddy`, `buddy migrate`, `buddy`), where the module
    /// has it, and `cma:<area>` for a CMA heap whose area is known.
    pub contig_source: Option<String>,
}

impl HeapInfo {
    /// The sources of [`Self::contig_source`] in the order tried, e.g.
    /// `["cma:reserved", "buddy"]`; empty where unknown.
    pub fn contig_sources(&self) -> impl Iterator<Item = &str> {
        self.contig_source.iter().flat_map(|s| s.split_whitespace())
    }

    /// False for heaps whose memory nothing describes ([`HeapKind::Other`]):
    /// their [`HeapProperties`] are [`HeapProperties::UNKNOWN`], promises of
    /// nothing rather than facts.
    pub fn properties_known(&self) -> bool {
        self.kind != HeapKind::Other
    }

    /// Opens the heap for allocation, with its size limit.
    pub fn open(&self) -> Result<DmaHeap, DmaHeapError> {
        let heap = match self.kind {
            HeapKind::Udmabuf => DmaHeap::open_udmabuf(&self.dev_path)?,
            _ => DmaHeap::open(&self.dev_path)?,
        };
        let limit = self.properties.max_alloc_bytes;
        Ok(heap
            .named(self.name.clone())
            .with_max_len((limit != u64::MAX).then_some(limit)))
    }

    /// True if `device` links to this heap (its own `dma_heaps/` or its
    /// nearest parent's): any heap the kernel names there, device heaps,
    /// the kernel's `system` and CMA heaps alike. udmabuf is no heap and
    /// serves no device in particular.
    pub fn serves(&self, device: &DeviceInfo) -> bool {
        self.kind != HeapKind::Udmabuf && device.rank_of(&self.name).is_some()
    }

    /// `dev_name()`s of the devices in [`Self::served`], joined for people:
    /// `vkms, vivid.0`.
    pub fn served_names(&self) -> String {
        let names: Vec<&str> = self.served.iter().map(|s| s.name.as_str()).collect();
        names.join(", ")
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
                        served: attrs.served,
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
                    served: Vec::new(),
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
                    served: Vec::new(),
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
                    served: Vec::new(),
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
                served: Vec::new(),
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

        link_kernel_heaps(&mut heaps);

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

    /// Resolves a device number to its sysfs device and the heaps it links
    /// to.
    pub fn resolve(&self, number: DeviceNumber) -> Result<DeviceInfo> {
        device::resolve(&self.roots, number)
    }

    /// The heaps `device` links to, in its rank order (best first), that
    /// this discovery found; links to heaps it did not find (no node, bad
    /// attributes) are left out.
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

/// A decimal attribute that older modules lack: `None` if it does not exist.
fn read_optional_u64(heap: &str, dir: &Path, attribute: &'static str) -> Result<Option<u64>> {
    if !dir.join(attribute).exists() {
        return Ok(None);
    }
    read_u64(heap, dir, attribute).map(Some)
}

/// A heap core node that is not in `device_heap`'s class but is named like
/// its heaps while the module is loaded: what the core keeps of a removed
/// device heap.
fn is_removed_device_heap(roots: &SysRoots, name: &str) -> bool {
    roots.sysfs.join("module/device_heap").exists()
        && roots.sysfs.join("class/dma_heap").join(name).exists()
        && is_device_heap_name(name)
}

/// Whether `name` is one the module gives its heaps (kernel/ABI.md):
/// `system-<N>bit`, `system-<N>bit-contiguous`, `system-contiguous`,
/// `<area>-contiguous`. Not plain `system`: that is the kernel's heap, and
/// the module makes one only where the kernel has none, so a node of that
/// name is taken as the kernel's unless the module lists it.
fn is_device_heap_name(name: &str) -> bool {
    if let Some(area) = name.strip_suffix("-contiguous") {
        return !area.is_empty();
    }
    name.strip_prefix("system-")
        .and_then(|rest| rest.strip_suffix("bit"))
        .is_some_and(|bits| {
            !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()) && !bits.starts_with('0')
        })
}

/// Fills [`HeapInfo::served`] of the kernel's heaps (which have no
/// `served/` directory) from the links of every device the module serves.
fn link_kernel_heaps(heaps: &mut [HeapInfo]) {
    let mut devices: Vec<ServedLink> = heaps
        .iter()
        .filter(|h| h.kind == HeapKind::Device)
        .flat_map(|h| h.served.iter().cloned())
        .collect();
    devices.sort();
    devices.dedup();
    for device in devices {
        let Some(links) = device::heap_links(&device.sysfs_path) else {
            continue;
        };
        for heap in heaps.iter_mut() {
            if matches!(
                heap.kind,
                HeapKind::System | HeapKind::Cma | HeapKind::Other
            ) && links.contains(&heap.name)
            {
                heap.served.push(device.clone());
            }
        }
    }
}

/// The devices a device heap's `served/` directory links to, sorted. Links
/// not named `<bus>:<device>` or whose device is gone are left out: the
/// module remakes them while devices come and go.
fn read_served(dir: &Path) -> Vec<ServedLink> {
    let Ok(entries) = fs::read_dir(dir.join("served")) else {
        return Vec::new();
    };
    let mut served: Vec<ServedLink> = entries
        .filter_map(|e| e.ok())
        .filter_map(|entry| {
            let link = entry.file_name().to_string_lossy().into_owned();
            let (bus, name) = link.split_once(':')?;
            if bus.is_empty() || name.is_empty() {
                return None;
            }
            let sysfs_path = fs::canonicalize(entry.path()).ok()?;
            Some(ServedLink {
                bus: bus.to_owned(),
                name: name.to_owned(),
                sysfs_path,
            })
        })
        .collect();
    served.sort();
    served
}

/// What a device heap's sysfs directory says.
struct DeviceHeapAttrs {
    properties: HeapProperties,
    served: Vec<ServedLink>,
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
    // Absent on modules older than the attribute: those bound no user.
    let max_user_bytes = read_optional_u64(name, dir, "max_user_bytes")?;
    Ok(DeviceHeapAttrs {
        properties: HeapProperties {
            contiguous,
            coherent,
            dma_mask_bits: Some(dma_mask_bits as u32),
            max_alloc_bytes,
            alignment_bytes,
            accounting,
            max_user_bytes,
        },
        served: read_served(dir),
        contig_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_heap_names_are_the_modules_memory_names() {
        for name in [
            "system-32bit",
            "system-32bit-contiguous",
            "system-40bit",
            "system-contiguous",
            "linux,cma-contiguous",
            "vram-contiguous",
        ] {
            assert!(is_device_heap_name(name), "{name}");
        }
        for name in [
            "system",
            "reserved",
            "default_cma_region",
            "-contiguous",
            "system-bit",
            "system-032bit",
            "system-32",
            "system-xbit",
            "vkms-contig",
            "vgem-sg",
        ] {
            assert!(!is_device_heap_name(name), "{name}");
        }
    }
}
