//! Which DMA-BUF heap serves a set of devices, answered for the heap
//! protocol by the heap allocator library (`heapland-allocator`).
//!
//! The compositor only asks "for buffers touched by these devices, which
//! heap, and may I open it?". Discovery (the sysfs ABI of kernel/ABI.md) runs
//! once at start-up; the choice among heaps is the allocator's, so the
//! compositor and clients that use the library agree: the kernel ranks the
//! heaps serving each device (its `dma_heaps/` links), and the first heap in
//! the first device's order that every other device links to too wins, then
//! `system` and the other heaps no device links to. `/dev/udmabuf` is never handed out: it is not
//! a DMA-BUF heap and does not speak `DMA_HEAP_IOCTL_ALLOC`.
//!
//! Sandboxed clients ([`Candidates::Accounted`]) may only be handed heaps
//! that charge the allocating process's memory cgroup: the allocator's
//! choice is then made among those heaps alone, in the same link order,
//! while what the devices need is still read from every heap they link to (a
//! device whose heaps are all contiguous needs contiguous memory, whether or
//! not those heaps are handed out).

use std::os::fd::OwnedFd;

use heapland_allocator::{
    intersect, negotiation::resolve_devices, Accounting, Constraints, DeviceInfo, DeviceNumber,
    Discovery, HeapInfo, HeapKind, Intersection,
};
use rustix::fs::{Mode, OFlags};

/// Memory properties sent with a heap (`xx_dmabuf_heap_feedback_v1.heap_flags`).
pub const FLAG_CONTIGUOUS: u32 = 0x1;
pub const FLAG_ACCOUNTED: u32 = 0x2;

/// Size the heap is chosen for before any output exists: one page.
const PAGE_BYTES: u64 = 4096;

/// An opened heap for one tranche.
#[derive(Debug)]
pub struct HeapGrant {
    pub fd: OwnedFd,
    pub name: String,
    pub flags: u32,
    /// Largest allocation in bytes, 0 when unknown.
    pub max_bytes: u64,
}

/// What the devices of a tranche need of a buffer's layout
/// (`tranche_layout`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrancheLayout {
    pub pitch_alignment: u32,
    pub offset_alignment: u32,
    pub base_alignment: u32,
}

/// Why a tranche gets no heap (`no_heap_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHeap {
    NoHeaps(String),
    Unsatisfiable(String),
    Unavailable(String),
    /// Heaps serve the tranche, but none the client may be handed: the
    /// message names the heaps withheld and why.
    Unaccounted(String),
}

/// Which heaps a client may be handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates {
    /// Every DMA-BUF heap (unsandboxed clients, the compositor itself).
    All,
    /// Only heaps that charge the allocating process's memory cgroup
    /// (sandboxed clients, see protocols/README.md "Security model").
    Accounted,
}

/// Whether allocations from `heap` are charged to the allocator's memory cgroup.
pub fn is_accounted(heap: &HeapInfo) -> bool {
    heap.properties.accounting == Accounting::Memcg
}

/// The heap's `heap_flags` bits.
pub fn heap_flags(heap: &HeapInfo) -> u32 {
    let p = &heap.properties;
    let mut flags = 0;
    if p.contiguous {
        flags |= FLAG_CONTIGUOUS;
    }
    if is_accounted(heap) {
        flags |= FLAG_ACCOUNTED;
    }
    flags
}

/// Why a heap is withheld from sandboxed clients, for the `unaccounted`
/// message: what memory it gives and that nobody is charged for it.
fn withheld_because(heap: &HeapInfo) -> String {
    let devices = match heap.served_names() {
        names if names.is_empty() => String::new(),
        names => format!(" for {names}"),
    };
    let source = heap
        .contig_source
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let what = match heap.kind {
        HeapKind::System => "the system heap, charged only on kernels booted with \
                             dma_heap.mem_accounting=1"
            .to_owned(),
        HeapKind::Cma => format!("a CMA heap{source}"),
        HeapKind::Device if heap.properties.contiguous => {
            format!("contiguous memory{devices}{source}")
        }
        HeapKind::Device => format!("scatter-gather memory{devices}{source}"),
        other => format!("a heap of kind {other:?}"),
    };
    format!(
        "{} ({what}: not charged to the allocating process's memory cgroup)",
        heap.name
    )
}

/// The heaps of this machine.
#[derive(Debug, Clone)]
pub struct HeapDirectory {
    discovery: Discovery,
    /// The DMA-BUF heaps among the discovered ones (no udmabuf).
    heaps: Vec<HeapInfo>,
    /// Those of `heaps` that charge the allocator's memory cgroup.
    accounted: Vec<HeapInfo>,
    /// The buffer size heaps are chosen for: a full frame of the largest
    /// output (see [`HeapDirectory::size_for_outputs`]). The protocol hands
    /// out a heap per tranche, not per buffer; a heap that cannot hold a
    /// full-screen buffer is not chosen while one that can exists, and
    /// `max_size` tells the client the real limit.
    frame_bytes: u64,
}

impl HeapDirectory {
    /// Scans the real `/dev` and `/sys`.
    pub fn scan() -> Self {
        Self::from_discovery(Discovery::scan())
    }

    pub fn from_discovery(discovery: Discovery) -> Self {
        let heaps: Vec<HeapInfo> = discovery
            .heaps()
            .iter()
            .filter(|h| h.kind != HeapKind::Udmabuf)
            .cloned()
            .collect();
        let accounted = heaps.iter().filter(|h| is_accounted(h)).cloned().collect();
        HeapDirectory {
            discovery,
            heaps,
            accounted,
            frame_bytes: PAGE_BYTES,
        }
    }

    /// Chooses heaps for buffers as large as a full XRGB8888 frame of the
    /// largest of `outputs` (width x height in pixels).
    pub fn size_for_outputs(&mut self, outputs: impl IntoIterator<Item = (i32, i32)>) {
        self.frame_bytes = outputs
            .into_iter()
            .map(|(w, h)| u64::try_from(w).unwrap_or(0) * u64::try_from(h).unwrap_or(0) * 4)
            .max()
            .unwrap_or(0)
            .max(PAGE_BYTES);
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Names of the DMA-BUF heaps found.
    pub fn names(&self) -> Vec<&str> {
        self.heaps.iter().map(|h| h.name.as_str()).collect()
    }

    /// Names of the heaps that charge the allocator's memory cgroup.
    pub fn accounted_names(&self) -> Vec<&str> {
        self.accounted.iter().map(|h| h.name.as_str()).collect()
    }

    /// Picks, among `candidates`, the heap whose memory every device in
    /// `devices` can use: the first in the first device's links that the
    /// others link to too, else a heap no device links to (see the module
    /// documentation).
    ///
    /// The devices' needs come from every discovered heap; the allocator's
    /// selection then runs over the candidate heaps only. With
    /// [`Candidates::Accounted`], a tranche that some heap serves but no
    /// accounted heap does gets [`NoHeap::Unaccounted`], naming the heaps
    /// that would have served it.
    pub fn select(&self, devices: &[u64], candidates: Candidates) -> Result<&HeapInfo, NoHeap> {
        if self.heaps.is_empty() {
            return Err(NoHeap::NoHeaps(
                self.discovery.empty_reason().unwrap_or_else(|| {
                    "no DMA-BUF heap on this system (only udmabuf, which is not a heap)".into()
                }),
            ));
        }
        let (resolved, needs) = self
            .needs(devices)
            .map_err(|e| NoHeap::Unsatisfiable(e.to_string()))?;
        let pool = match candidates {
            Candidates::All => &self.heaps,
            Candidates::Accounted => &self.accounted,
        };
        // A full frame where some heap can hold one, else one page: a heap
        // too small for a full-screen buffer still serves smaller ones.
        let size = if needs
            .select(&self.heaps, &resolved, self.frame_bytes)
            .is_ok()
        {
            self.frame_bytes
        } else {
            PAGE_BYTES
        };
        match needs.select(pool, &resolved, size) {
            Ok(heap) => Ok(heap),
            Err(err) if candidates == Candidates::Accounted => {
                // Would any heap serve the tranche? Then withholding is the
                // reason; otherwise the tranche is unsatisfiable for everyone.
                if let Err(all) = needs.select(&self.heaps, &resolved, size) {
                    return Err(NoHeap::Unsatisfiable(all.to_string()));
                }
                let withheld: Vec<String> = self
                    .heaps
                    .iter()
                    .filter(|h| !is_accounted(h) && needs.check(h, size).is_ok())
                    .map(withheld_because)
                    .collect();
                let accounted = if self.accounted.is_empty() {
                    "no heap on this system charges the allocating process's memory cgroup"
                        .to_owned()
                } else {
                    format!("none of the heaps that charge does: {err}")
                };
                Err(NoHeap::Unaccounted(format!(
                    "sandboxed client (wp_security_context_v1): withheld {}; {accounted}",
                    withheld.join(", ")
                )))
            }
            Err(err) => Err(NoHeap::Unsatisfiable(err.to_string())),
        }
    }

    /// The devices behind `devices` and what they need together.
    fn needs(
        &self,
        devices: &[u64],
    ) -> heapland_allocator::Result<(Vec<DeviceInfo>, Intersection)> {
        let numbers: Vec<DeviceNumber> = devices
            .iter()
            .map(|d| DeviceNumber::from_dev_t(*d))
            .collect();
        let resolved = resolve_devices(&self.discovery, &numbers)?;
        let parts: Vec<Constraints> = resolved
            .iter()
            .map(|d| Constraints::for_device(d, &self.discovery.heaps_serving(d)))
            .collect();
        let needs = intersect(&parts);
        Ok((resolved, needs))
    }

    /// How the devices of a tranche need its buffers laid out. Devices this
    /// machine cannot resolve add no need; every heap buffer starts at a
    /// page, so the base alignment is at least the page size.
    pub fn layout(&self, devices: &[u64]) -> TrancheLayout {
        let needs = self
            .needs(devices)
            .map(|(_, needs)| needs)
            .unwrap_or_else(|_| intersect(&[]));
        let page = rustix::param::page_size() as u64;
        TrancheLayout {
            pitch_alignment: needs.pitch_alignment.max(1),
            offset_alignment: needs.offset_alignment.max(1),
            base_alignment: u32::try_from(needs.base_alignment.max(page)).unwrap_or(u32::MAX),
        }
    }

    /// Selects (among `candidates`) and opens a heap for a tranche.
    pub fn grant(&self, devices: &[u64], candidates: Candidates) -> Result<HeapGrant, NoHeap> {
        let heap = self.select(devices, candidates)?;
        let fd = rustix::fs::open(
            &heap.dev_path,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            NoHeap::Unavailable(format!("cannot open {}: {e}", heap.dev_path.display()))
        })?;
        let max_bytes = match heap.properties.max_alloc_bytes {
            u64::MAX => 0,
            bytes => bytes,
        };
        Ok(HeapGrant {
            fd,
            name: heap.name.clone(),
            flags: heap_flags(heap),
            max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::symlink,
        path::{Path, PathBuf},
    };

    use super::*;
    use heapland_allocator::{HeapProperties, ServedLink, SysRoots};

    const VGEM: u64 = (226 << 8) | 128;
    const VKMS: u64 = 226 << 8;

    /// A private directory for one fake sysfs tree, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("heapland-heaps-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("sys/dev/char")).unwrap();
            fs::create_dir_all(dir.join("dev")).unwrap();
            Tree(dir)
        }

        fn roots(&self) -> SysRoots {
            SysRoots::under(&self.0)
        }

        /// `platform/<device>` with a DRM node numbered `dev`, linking to
        /// `heaps` best first (`dma_heaps/0`, `1`, ..., what
        /// `resolve_devices` reads): the kernel's `system`, else heaps of
        /// the module.
        fn device(&self, device: &str, node: &str, dev: u64, heaps: &[&str]) {
            let dir = self.0.join("sys/devices/platform").join(device);
            let node_dir = dir.join("drm").join(node);
            fs::create_dir_all(&node_dir).unwrap();
            symlink("../..", node_dir.join("device")).unwrap();
            let (major, minor) = (dev >> 8, dev & 0xff);
            symlink(
                format!("../../devices/platform/{device}/drm/{node}"),
                self.0.join(format!("sys/dev/char/{major}:{minor}")),
            )
            .unwrap();
            fs::create_dir_all(dir.join("dma_heaps")).unwrap();
            for (rank, h) in heaps.iter().enumerate() {
                let class = if *h == "system" {
                    "dma_heap"
                } else {
                    "device_heap"
                };
                let target = format!("virtual/{class}/{h}");
                fs::create_dir_all(self.0.join("sys/devices").join(&target)).unwrap();
                symlink(
                    format!("../../../{target}"),
                    dir.join("dma_heaps").join(rank.to_string()),
                )
                .unwrap();
            }
        }

        fn directory(&self, heaps: Vec<HeapInfo>) -> HeapDirectory {
            HeapDirectory::from_discovery(Discovery::from_heaps(self.roots(), heaps))
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn heap(name: &str, kind: HeapKind, properties: HeapProperties) -> HeapInfo {
        HeapInfo {
            name: name.into(),
            kind,
            dev_path: Path::new("/nonexistent/dma_heap").join(name),
            served: match kind {
                HeapKind::Device => vec![ServedLink {
                    bus: "platform".into(),
                    name: "vgem".into(),
                    sysfs_path: "/nonexistent/platform/vgem".into(),
                }],
                _ => Vec::new(),
            },
            properties,
            contig_source: None,
        }
    }

    fn contig(name: &str) -> HeapInfo {
        heap(
            name,
            HeapKind::Device,
            HeapProperties {
                contiguous: true,
                accounting: Accounting::None,
                ..HeapProperties::ANYWHERE
            },
        )
    }

    /// Scattered pages below 4 GiB.
    fn sg32(name: &str, accounting: Accounting) -> HeapInfo {
        heap(
            name,
            HeapKind::Device,
            HeapProperties {
                accounting,
                dma_mask_bits: Some(32),
                ..HeapProperties::ANYWHERE
            },
        )
    }

    fn system(accounting: Accounting) -> HeapInfo {
        heap(
            "system",
            HeapKind::System,
            HeapProperties {
                accounting,
                ..HeapProperties::ANYWHERE
            },
        )
    }

    fn name(r: Result<&HeapInfo, NoHeap>) -> Result<String, NoHeap> {
        r.map(|h| h.name.clone())
    }

    #[test]
    fn empty_host_has_no_heaps() {
        let t = Tree::new("empty");
        let dirs = HeapDirectory::from_discovery(Discovery::scan_roots(&t.roots()));
        for c in [Candidates::All, Candidates::Accounted] {
            assert!(matches!(dirs.select(&[], c), Err(NoHeap::NoHeaps(_))));
            assert!(matches!(dirs.grant(&[], c), Err(NoHeap::NoHeaps(_))));
        }
    }

    /// The render device's only heap is contiguous (so it needs contiguous
    /// memory) and charges nobody, nor does the system heap. Sandboxed
    /// clients get `unaccounted`, naming the heap that would have served
    /// them, not the system heap that would not.
    #[test]
    fn contiguous_only_is_withheld_from_sandboxed_clients() {
        let t = Tree::new("contig");
        t.device("vgem", "renderD128", VGEM, &["system-contiguous"]);
        let dir = t.directory(vec![contig("system-contiguous"), system(Accounting::None)]);
        assert_eq!(
            name(dir.select(&[VGEM], Candidates::All)),
            Ok("system-contiguous".into())
        );
        match dir.select(&[VGEM], Candidates::Accounted) {
            Err(NoHeap::Unaccounted(m)) => {
                assert!(
                    m.contains("withheld system-contiguous (contiguous memory for vgem"),
                    "{m}"
                );
                assert!(!m.contains("system (the system heap"), "{m}");
                assert!(m.contains("no heap on this system charges"), "{m}");
            }
            other => panic!("expected Unaccounted, got {other:?}"),
        }
        // Without devices (CPU only) the system heap serves, and is withheld.
        match dir.select(&[], Candidates::Accounted) {
            Err(NoHeap::Unaccounted(m)) => {
                assert!(m.contains("system (the system heap"), "{m}");
            }
            other => panic!("expected Unaccounted, got {other:?}"),
        }
    }

    /// An accounted heap that cannot serve the tranche is no way round:
    /// the message says why it does not serve either.
    #[test]
    fn accounted_heap_that_does_not_fit_is_not_handed_out() {
        let t = Tree::new("nofit");
        t.device("vgem", "renderD128", VGEM, &["system-contiguous"]);
        let dir = t.directory(vec![contig("system-contiguous"), system(Accounting::Memcg)]);
        match dir.select(&[VGEM], Candidates::Accounted) {
            Err(NoHeap::Unaccounted(m)) => {
                assert!(m.contains("withheld system-contiguous"), "{m}");
                assert!(m.contains("none of the heaps that charge does"), "{m}");
                assert!(m.contains("not contiguous"), "{m}");
            }
            other => panic!("expected Unaccounted, got {other:?}"),
        }
        // Where no device needs contiguous memory, the charged system heap serves.
        assert_eq!(
            name(dir.select(&[], Candidates::Accounted)),
            Ok("system".into())
        );
    }

    /// The choice among accounted heaps is the allocator's selection over
    /// them alone, in the device's link order: the uncharged system heap,
    /// its first, is passed over for its next, the module's charged heap,
    /// while unsandboxed clients keep the first.
    #[test]
    fn sandboxed_choice_is_made_among_accounted_heaps() {
        let t = Tree::new("choice");
        t.device(
            "vgem",
            "renderD128",
            VGEM,
            &["system", "system-32bit", "system-contiguous"],
        );
        let dir = t.directory(vec![
            sg32("system-32bit", Accounting::Memcg),
            contig("system-contiguous"),
            system(Accounting::None),
        ]);
        assert_eq!(
            name(dir.select(&[VGEM], Candidates::All)),
            Ok("system".into())
        );
        assert_eq!(
            name(dir.select(&[VGEM], Candidates::Accounted)),
            Ok("system-32bit".into())
        );
        assert_eq!(dir.accounted_names(), vec!["system-32bit"]);
        assert_eq!(heap_flags(&dir.heaps[0]), FLAG_ACCOUNTED, "sg, charged");
        assert_eq!(heap_flags(&contig("c")), FLAG_CONTIGUOUS);
        // Where the system heap charges too, it is everyone's choice.
        let dir = t.directory(vec![
            sg32("system-32bit", Accounting::Memcg),
            system(Accounting::Memcg),
        ]);
        for c in [Candidates::All, Candidates::Accounted] {
            assert_eq!(name(dir.select(&[VGEM], c)), Ok("system".into()));
        }
    }

    /// Several devices: the first heap in the first device's links that
    /// every other device links to too.
    #[test]
    fn choice_follows_the_first_devices_links() {
        let t = Tree::new("order");
        t.device(
            "vgem",
            "renderD128",
            VGEM,
            &["system", "system-contiguous", "system-32bit-contiguous"],
        );
        t.device(
            "vkms",
            "card0",
            VKMS,
            &["system-32bit-contiguous", "system-contiguous"],
        );
        let mut c32 = contig("system-32bit-contiguous");
        c32.properties.dma_mask_bits = Some(32);
        let dir = t.directory(vec![
            contig("system-contiguous"),
            c32,
            system(Accounting::None),
        ]);
        assert_eq!(
            name(dir.select(&[VGEM], Candidates::All)),
            Ok("system".into())
        );
        assert_eq!(
            name(dir.select(&[VGEM, VKMS], Candidates::All)),
            Ok("system-contiguous".into())
        );
        assert_eq!(
            name(dir.select(&[VKMS, VGEM], Candidates::All)),
            Ok("system-32bit-contiguous".into())
        );
    }

    /// A tranche no heap serves is `unsatisfiable` for every client, not
    /// `unaccounted`: withholding is not why it has none.
    #[test]
    fn unsatisfiable_stays_unsatisfiable_for_sandboxed_clients() {
        let t = Tree::new("unsat");
        t.device("vgem", "renderD128", VGEM, &["system-contiguous"]);
        let dir = t.directory(vec![contig("system-contiguous"), system(Accounting::Memcg)]);
        let unknown = (81 << 8) | 7;
        for c in [Candidates::All, Candidates::Accounted] {
            assert!(
                matches!(dir.select(&[unknown], c), Err(NoHeap::Unsatisfiable(_))),
                "{c:?}"
            );
        }
        // vgem needs contiguous memory; its heap gives less than a page and
        // the system heap is not contiguous.
        let mut tiny = contig("system-contiguous");
        tiny.properties.max_alloc_bytes = 1024;
        let dir = t.directory(vec![tiny, system(Accounting::Memcg)]);
        for c in [Candidates::All, Candidates::Accounted] {
            assert!(
                matches!(dir.select(&[VGEM], c), Err(NoHeap::Unsatisfiable(_))),
                "{c:?}"
            );
        }
    }
}
