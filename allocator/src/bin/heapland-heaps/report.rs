//! What `heapland-heaps` reports, built once from the library's answers and
//! then either printed as JSON (the documented shape, `--help`) or rendered
//! for people (`text`), so that the two can never say different things.

use serde::Serialize;

use heapland_allocator::{
    Accounting, Constraints, DeviceInfo, Discovery, Explained, HeapInfo, HeapKind, Intersection,
    Layout, ServedDevice, Verdict,
};

use crate::cli::{self, modifier_name};

/// Version of the JSON shape; fields are only ever added within a version.
/// 2: heaps are shared, `served_device` became the list `served`; later
/// within 2, `max_user_bytes` was added to every heap.
pub const VERSION: u32 = 2;

/// One heap.
#[derive(Debug, Serialize)]
pub struct HeapReport {
    pub name: String,
    /// `device`, `system`, `cma`, `udmabuf` or `other`.
    pub kind: &'static str,
    pub dev_path: String,
    /// False for kind `other`: nothing is known about its memory, and the
    /// optional properties below are null.
    pub properties_known: bool,
    /// `contig` or `sg`.
    pub backing: Option<&'static str>,
    pub contiguous: Option<bool>,
    pub coherent: Option<bool>,
    /// Every page lies below 2^dma_mask_bits; null: unknown.
    pub dma_mask_bits: Option<u32>,
    /// The same for people: "below 4 GiB (32-bit)".
    pub dma_reach: String,
    /// Null: no limit but memory (or unknown, for kind `other`).
    pub max_alloc_bytes: Option<u64>,
    pub alignment_bytes: u64,
    /// `memcg` or `none`.
    pub accounting: &'static str,
    /// The most bytes one user may have pinned across all of the module's
    /// heaps; null where nothing bounds it (the kernel's heaps, older
    /// modules).
    pub max_user_bytes: Option<u64>,
    /// Where buffers come from, in the order tried, separated by spaces
    /// (`cma:reserved buddy`, `buddy migrate`, `buddy`), where known.
    pub contig_source: Option<String>,
    /// The served devices that link to this heap.
    pub served: Vec<ServedReport>,
    /// The kind, for the text.
    #[serde(skip)]
    pub heap_kind: HeapKind,
    /// The accounting, for the text.
    #[serde(skip)]
    pub charged: Accounting,
}

/// A device a heap serves.
#[derive(Debug, Serialize)]
pub struct ServedReport {
    /// `platform`, `pci`, `faux`, `amba`.
    pub bus: String,
    pub name: String,
    pub driver: Option<String>,
    pub sysfs_path: String,
    /// The heap's rank among the device's links (0: its best heap); null
    /// where its links could not be read.
    pub rank: Option<usize>,
    pub nodes: Vec<NodeReport>,
}

/// One /dev node of a served device.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    /// Null where its uevent names no /dev node.
    pub path: Option<String>,
    /// MAJ:MIN.
    pub dev: String,
    pub sysfs_path: String,
}

/// A heap that was found but cannot be used.
#[derive(Debug, Serialize)]
pub struct SkippedReport {
    pub name: String,
    pub reason: String,
}

/// Why the command failed, in the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// The exit status.
    pub status: u8,
    /// `failure`, `no-heaps` or `no-fit`.
    pub kind: &'static str,
    pub message: String,
}

impl ErrorReport {
    pub fn new(status: u8, message: impl Into<String>) -> Self {
        let kind = match status {
            cli::status::NO_HEAPS => "no-heaps",
            cli::status::NO_FIT => "no-fit",
            _ => "failure",
        };
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

/// `heapland-heaps list`.
#[derive(Debug, Serialize)]
pub struct ListReport {
    pub version: u32,
    pub heaps: Vec<HeapReport>,
    pub skipped: Vec<SkippedReport>,
    pub error: Option<ErrorReport>,
}

/// What devices need, alone or together.
#[derive(Debug, Serialize)]
pub struct NeedsReport {
    pub contiguous: bool,
    pub dma_mask_bits: u32,
    pub coherent: bool,
    pub pitch_alignment: u32,
    pub offset_alignment: u32,
    pub base_alignment: u64,
}

/// One device given to `for`.
#[derive(Debug, Serialize)]
pub struct DeviceReport {
    /// As given on the command line.
    pub arg: String,
    /// MAJ:MIN.
    pub dev: String,
    /// The device that does DMA (`vivid.0`).
    pub name: String,
    pub sysfs_path: String,
    /// The directory whose `dma_heaps/` was read: the device's or its
    /// nearest parent's; null where no heap serves it.
    pub heaps_from: Option<String>,
    /// The heaps it links to, best first: `heaps[rank]`.
    pub heaps: Vec<String>,
    /// What it needs, read from those heaps.
    pub needs: Option<NeedsReport>,
}

/// One plane of the buffer.
#[derive(Debug, Serialize)]
pub struct PlaneReport {
    pub offset: u32,
    pub pitch: u32,
    pub size: u64,
}

/// The buffer `for` lays out.
#[derive(Debug, Serialize)]
pub struct BufferReport {
    /// DRM name (`NV12`).
    pub format: &'static str,
    /// Fourcc code (`NV12`, `XR24`).
    pub fourcc: String,
    pub width: u32,
    pub height: u32,
    /// `LINEAR`, `INVALID`, or hex; null when the modifiers asked for cannot
    /// be produced.
    pub modifier: Option<String>,
    pub planes: Vec<PlaneReport>,
    /// Bytes up to the end of the last plane.
    pub size: u64,
    /// Bytes allocated: the size in whole pages.
    pub alloc_size: u64,
}

/// A heap `for` did not choose.
#[derive(Debug, Serialize)]
pub struct PassedOverReport {
    pub name: String,
    pub kind: &'static str,
    /// It would fit, but another heap suits the devices better.
    pub fits: bool,
    pub reasons: Vec<String>,
}

/// `heapland-heaps for`.
#[derive(Debug, Default, Serialize)]
pub struct ForReport {
    pub version: u32,
    pub devices: Vec<DeviceReport>,
    pub needs: Option<NeedsReport>,
    pub buffer: Option<BufferReport>,
    pub heap: Option<HeapReport>,
    pub passed_over: Vec<PassedOverReport>,
    pub error: Option<ErrorReport>,
}

/// A byte count in binary units for people: exact where it is a whole
/// number of the unit (`64 MiB`), else to one decimal (`2.9 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let step = (n.max(1).ilog2() / 10).min(6);
    let shift = 10 * step;
    let unit = UNITS[step as usize];
    if n.trailing_zeros() >= shift {
        format!("{} {unit}", n >> shift)
    } else {
        format!("{:.1} {unit}", n as f64 / (1u64 << shift) as f64)
    }
}

/// Where a heap's pages may lie, for people.
pub fn dma_reach(bits: Option<u32>) -> String {
    match bits {
        None => "unknown (nothing says where its memory lies)".into(),
        Some(b) if b >= 64 => "anywhere (64-bit)".into(),
        Some(b) => format!("below {} ({b}-bit)", bytes(1u64 << b)),
    }
}

impl HeapReport {
    pub fn new(discovery: &Discovery, heap: &HeapInfo) -> Self {
        let p = &heap.properties;
        let known = heap.properties_known();
        let served = ServedDevice::all(discovery.roots(), heap)
            .into_iter()
            .map(|s| ServedReport {
                rank: s.rank_of(&heap.name),
                bus: s.bus,
                name: s.name,
                driver: s.driver,
                sysfs_path: s.sysfs_path.display().to_string(),
                nodes: s
                    .nodes
                    .into_iter()
                    .map(|n| NodeReport {
                        path: n.path.map(|p| p.display().to_string()),
                        dev: n.number.to_string(),
                        sysfs_path: n.sysfs_path.display().to_string(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            name: heap.name.clone(),
            kind: heap.kind.as_str(),
            dev_path: heap.dev_path.display().to_string(),
            properties_known: known,
            backing: known.then_some(if p.contiguous { "contig" } else { "sg" }),
            contiguous: known.then_some(p.contiguous),
            coherent: known.then_some(p.coherent),
            dma_mask_bits: p.dma_mask_bits,
            dma_reach: dma_reach(p.dma_mask_bits),
            max_alloc_bytes: (known && p.max_alloc_bytes != u64::MAX).then_some(p.max_alloc_bytes),
            alignment_bytes: p.alignment_bytes,
            accounting: p.accounting.as_str(),
            max_user_bytes: p.max_user_bytes,
            contig_source: heap.contig_source.clone(),
            served,
            heap_kind: heap.kind,
            charged: p.accounting,
        }
    }

    /// The sentence after the name in text output: what kind of heap.
    pub fn kind_phrase(&self) -> String {
        match self.heap_kind {
            HeapKind::Device if self.served.is_empty() => {
                "device heap, serving no device now".into()
            }
            HeapKind::Device => {
                let names: Vec<&str> = self.served.iter().map(|s| s.name.as_str()).collect();
                format!("device heap serving {}", names.join(", "))
            }
            HeapKind::System => {
                "the kernel's system heap, for devices that take scattered pages".into()
            }
            HeapKind::Cma => "a CMA heap of the kernel".into(),
            HeapKind::Udmabuf => "memfd pages as dma-bufs, the last resort".into(),
            HeapKind::Other => "a heap of unknown kind: nothing says what memory it gives".into(),
        }
    }

    /// Accounting, explained.
    pub fn accounting_phrase(&self) -> String {
        if self.charged == Accounting::Memcg {
            return "memcg: charged to the allocating process's memory cgroup".into();
        }
        let hint = match self.heap_kind {
            HeapKind::System => " (boot with dma_heap.mem_accounting=1 where the kernel has it)",
            _ => "",
        };
        format!("none: not charged to anyone{hint}")
    }

    /// What bounds one user's pinned memory, explained.
    pub fn per_user_phrase(&self) -> String {
        match self.max_user_bytes {
            Some(n) => format!(
                "at most {} ({n} bytes) pinned by one user across the module's heaps",
                bytes(n)
            ),
            None => "no limit: nothing bounds what one user pins".into(),
        }
    }
}

impl ListReport {
    pub fn new(discovery: &Discovery) -> Self {
        Self {
            version: VERSION,
            heaps: discovery
                .heaps()
                .iter()
                .map(|h| HeapReport::new(discovery, h))
                .collect(),
            skipped: discovery
                .skipped()
                .iter()
                .map(|s| SkippedReport {
                    name: s.name.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            error: None,
        }
    }
}

impl NeedsReport {
    pub fn of_device(c: &Constraints) -> Self {
        Self {
            contiguous: c.contiguous,
            dma_mask_bits: c.dma_mask_bits,
            coherent: c.coherent,
            pitch_alignment: c.pitch_alignment,
            offset_alignment: c.offset_alignment,
            base_alignment: c.base_alignment,
        }
    }

    pub fn of_all(i: &Intersection) -> Self {
        Self {
            contiguous: i.contiguous,
            dma_mask_bits: i.dma_mask_bits,
            coherent: i.coherent,
            pitch_alignment: i.pitch_alignment,
            offset_alignment: i.offset_alignment,
            base_alignment: i.base_alignment,
        }
    }

    /// "contiguous, below 4 GiB (32-bit)", or "nothing in particular".
    pub fn phrase(&self) -> String {
        let mut parts = Vec::new();
        if self.contiguous {
            parts.push("contiguous".to_owned());
        }
        if self.dma_mask_bits < 64 {
            parts.push(dma_reach(Some(self.dma_mask_bits)));
        }
        if self.coherent {
            parts.push("coherent".to_owned());
        }
        if parts.is_empty() {
            "nothing in particular".into()
        } else {
            parts.join(", ")
        }
    }
}

impl DeviceReport {
    pub fn new(arg: String, device: &DeviceInfo, needs: Option<&Constraints>) -> Self {
        Self {
            arg,
            dev: device.number.to_string(),
            name: device.name.clone(),
            sysfs_path: device.sysfs_path.display().to_string(),
            heaps_from: device.heaps_from.as_ref().map(|p| p.display().to_string()),
            heaps: device.heap_names.clone(),
            needs: needs.map(NeedsReport::of_device),
        }
    }
}

impl BufferReport {
    pub fn new(layout: &Layout, format: &'static str, modifier: Option<String>) -> Self {
        Self {
            format,
            fourcc: layout.fourcc.to_string(),
            width: layout.width,
            height: layout.height,
            modifier,
            planes: layout
                .planes
                .iter()
                .map(|p| PlaneReport {
                    offset: p.offset,
                    pitch: p.stride,
                    size: p.size,
                })
                .collect(),
            size: layout.size,
            alloc_size: layout.alloc_size(),
        }
    }
}

impl ForReport {
    /// Fills in the choice: the buffer, the chosen heap and every other
    /// heap's verdict, from the library's explanation.
    pub fn explained(
        &mut self,
        discovery: &Discovery,
        explained: &Explained<'_>,
        format: &'static str,
        modifier: Option<heapland_allocator::drm_fourcc::DrmModifier>,
    ) {
        self.needs = Some(NeedsReport::of_all(&explained.intersection));
        self.buffer = Some(BufferReport::new(
            &explained.layout,
            format,
            modifier.map(modifier_name),
        ));
        for ranked in &explained.ranking.heaps {
            match &ranked.verdict {
                Verdict::Chosen => self.heap = Some(HeapReport::new(discovery, ranked.heap)),
                Verdict::Outranked(why) => self.passed_over.push(PassedOverReport {
                    name: ranked.heap.name.clone(),
                    kind: ranked.heap.kind.as_str(),
                    fits: true,
                    reasons: vec![why.clone()],
                }),
                Verdict::Unmet(why) => self.passed_over.push(PassedOverReport {
                    name: ranked.heap.name.clone(),
                    kind: ranked.heap.kind.as_str(),
                    fits: false,
                    reasons: why.clone(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_reach_read_as_people_say_them() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(3_117_056), "3.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(dma_reach(Some(32)), "below 4 GiB (32-bit)");
        assert_eq!(dma_reach(Some(40)), "below 1 TiB (40-bit)");
        assert_eq!(dma_reach(Some(24)), "below 16 MiB (24-bit)");
        assert_eq!(dma_reach(Some(64)), "anywhere (64-bit)");
        assert!(dma_reach(None).starts_with("unknown"));
    }
}
