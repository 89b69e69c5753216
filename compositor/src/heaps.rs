//! Which DMA-BUF heap serves a set of devices, answered for the heap
//! protocol by the heap allocator library (`heapland-allocator`), and which
//! heaps a client may be handed at all.
//!
//! The compositor only asks "for buffers touched by these devices, which
//! heap, and may this client have it?". Discovery (the sysfs ABI of
//! kernel/ABI.md) runs at start-up and again when heaps or devices come
//! and go (`heap_watch`); the choice among heaps is the
//! allocator's, so the compositor and clients that use the library agree:
//! the kernel ranks the heaps serving each device (its `dma_heaps/` links),
//! and the first heap in the first device's order that every other device
//! links to too wins, then `system` and the other heaps no device links to.
//! `/dev/udmabuf` is never handed out: it is not a DMA-BUF heap and does not
//! speak `DMA_HEAP_IOCTL_ALLOC`.
//!
//! Who gets which heap ([`Recipient`], protocols/README.md "Security
//! model"). heapland opens heaps with its own credentials and passes the fd
//! on, so a heap fd must not give a client what its own credentials do not,
//! whatever user heapland runs as. A heap fd lets its holder pin memory, so:
//! - a heap that bounds what one user pins
//!   ([`HeapProperties::max_user_bytes`](heapland_allocator::HeapProperties),
//!   every heap of `device_heap.ko`) may be handed to any client;
//! - any other heap (the kernel's `system` and CMA heaps) only to a client
//!   whose credentials ([`Peer`]) would let it open the heap's node for
//!   reading itself: at every choice the node is opened, and the open file
//!   judged (a character device; its mode, owners and ACL, `node_access`),
//!   so access logind takes away at a session switch ends the next grant;
//!   the fd handed out is the one judged, not the path opened again;
//! - a client whose credentials are unknown gets bounded heaps only;
//! - sandboxed clients moreover get only heaps that charge the allocating
//!   process's memory cgroup.
//!
//! The choice is the allocator's own ([`explain_choice_among`], what
//! `heapland-heaps for` and clients of the library run): made among the
//! heaps the client may be handed alone, in the same link order, for the
//! buffer a client would allocate from a tranche, a full XRGB8888 frame of
//! the largest output (with the devices' size limits and layout), or the
//! smallest buffer where none of those heaps holds a frame. What the
//! devices need is still read from every heap they link to (a device whose
//! heaps are all contiguous needs contiguous memory, whether or not those
//! heaps are handed out).
//!
//! A device's data (its sysfs attributes and heap links) is read once per
//! `dev_t` and kept while the number's sysfs node is the same device's, and
//! until the outputs change ([`HeapDirectory::size_for_outputs`]).

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use heapland_allocator::{
    drm_fourcc::DrmFourcc, intersect, negotiation::explain_choice_among, Accounting, Constraints,
    DeviceInfo, DeviceNumber, Discovery, Explained, HeapInfo, HeapKind, Intersection,
};
use rustix::fs::{FileType, Mode, OFlags};

use crate::{node_access, peer::Peer};

/// Memory properties sent with a heap (`xx_dmabuf_heap_feedback_v1.heap_flags`).
pub const FLAG_CONTIGUOUS: u32 = 0x1;
pub const FLAG_ACCOUNTED: u32 = 0x2;

/// The buffer heaps are chosen for before any output exists, and where no
/// heap a client may have holds a full frame: the smallest one.
const SMALLEST: (u32, u32) = (1, 1);

/// The format of the frame heaps are chosen for: what every output scans
/// out and every client can draw.
const FRAME_FORMAT: DrmFourcc = DrmFourcc::Xrgb8888;

/// Prefix of the messages to sandboxed clients.
const SANDBOXED: &str = "sandboxed client (wp_security_context_v1)";

/// An opened heap for one tranche.
#[derive(Debug)]
pub struct HeapGrant {
    pub fd: OwnedFd,
    pub name: String,
    pub flags: u32,
    /// Largest allocation in bytes, 0 when unknown.
    pub max_bytes: u64,
    /// The heaps that would serve the tranche but were withheld from this
    /// client, each with why (for the log).
    pub withheld: Vec<String>,
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
    /// A heap serves the tranche but cannot be opened, or none that serves
    /// it may be handed to this client: the message names each heap
    /// withheld and why.
    Unavailable(String),
    /// The client is sandboxed, heaps serve the tranche, but none that
    /// charges the allocating process's memory cgroup: the message names
    /// the heaps withheld and why.
    Unaccounted(String),
}

/// Whom heaps are handed to: what decides which heaps a client may get
/// (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// Connected through a `wp_security_context_v1` socket: only heaps that
    /// charge the allocating process's memory cgroup.
    pub sandboxed: bool,
    /// The client's credentials; `None` where they are unknown: then only
    /// heaps that bound what one user pins.
    pub peer: Option<&'a Peer>,
}

/// Why a heap is withheld from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The client is sandboxed and the heap charges nobody.
    Unaccounted,
    /// Nothing bounds what one user pins in the heap, and the client's
    /// credentials are unknown.
    NoCredentials,
    /// Nothing bounds what one user pins in the heap, and the client could
    /// not open its node itself.
    MayNotOpen { uid: u32 },
    /// Nothing bounds what one user pins in the heap, and whether the
    /// client could open its node cannot be told.
    AccessUnknown { uid: u32, error: String },
}

impl Recipient<'_> {
    /// Whether `heap` may be handed to this recipient: `Err` says why not.
    /// A heap that bounds every user may (`Ok(None)`: opened when granted);
    /// one that bounds nobody only if its node, opened now, is a
    /// `node_type` the client could open itself (`Ok(Some(fd))`: that open
    /// node, the fd to hand out).
    pub fn admits(
        &self,
        heap: &HeapInfo,
        node_type: FileType,
    ) -> Result<Option<OwnedFd>, Withheld> {
        if self.sandboxed && !is_accounted(heap) {
            return Err(Withheld::Unaccounted);
        }
        if bounds_each_user(heap) {
            return Ok(None);
        }
        let Some(peer) = self.peer else {
            return Err(Withheld::NoCredentials);
        };
        match node_access::open_for(&heap.dev_path, peer, node_type) {
            Ok(Some(fd)) => Ok(Some(fd)),
            Ok(None) => Err(Withheld::MayNotOpen { uid: peer.uid }),
            Err(err) => Err(Withheld::AccessUnknown {
                uid: peer.uid,
                error: err.to_string(),
            }),
        }
    }
}

/// Whether allocations from `heap` are charged to the allocator's memory cgroup.
pub fn is_accounted(heap: &HeapInfo) -> bool {
    heap.properties.accounting == Accounting::Memcg
}

/// Whether `heap` refuses an allocation that takes one user past a limit
/// of their own (`max_user_bytes`): then any client may have it.
pub fn bounds_each_user(heap: &HeapInfo) -> bool {
    heap.properties.max_user_bytes.is_some()
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

/// A heap withheld for not charging, for the `unaccounted` message: its
/// name, what memory it gives and that nobody is charged for it.
fn unaccounted_because(heap: &HeapInfo) -> String {
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

/// A withheld heap and why, for messages and logs:
/// `system: uid 1000 may not open /dev/dma_heap/system, and nothing bounds
/// what one user pins in it`.
fn withheld_because(heap: &HeapInfo, why: &Withheld) -> String {
    const UNBOUNDED: &str = "and nothing bounds what one user pins in it";
    let (name, node) = (&heap.name, heap.dev_path.display());
    match why {
        Withheld::Unaccounted => unaccounted_because(heap),
        Withheld::NoCredentials => {
            format!("{name}: the client's credentials are unknown, {UNBOUNDED}")
        }
        Withheld::MayNotOpen { uid } => {
            format!("{name}: uid {uid} may not open {node}, {UNBOUNDED}")
        }
        Withheld::AccessUnknown { uid, error } => format!(
            "{name}: whether uid {uid} may open {node} cannot be told ({error}), {UNBOUNDED}"
        ),
    }
}

/// A heap chosen for a client.
#[derive(Debug)]
pub struct Choice<'a> {
    pub heap: &'a HeapInfo,
    /// The heaps that would serve the tranche but were withheld from this
    /// client, each with why.
    pub withheld: Vec<String>,
    /// The heap's node as opened and judged for this client, where it
    /// bounds nobody ([`Recipient::admits`]): what [`HeapDirectory::grant`]
    /// hands out. `None` for a heap that bounds every user, opened then.
    pub judged: Option<OwnedFd>,
}

/// A heap gone since the previous scan ([`HeapDirectory::rescan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneHeap {
    pub name: String,
    /// Its sysfs identity when it was found.
    pub identity: Option<u64>,
}

/// What a rescan found ([`HeapDirectory::rescan`]).
#[derive(Debug, Default)]
pub struct Rescan {
    /// Heaps gone (or made again under their name).
    pub gone: Vec<GoneHeap>,
    /// Whether a heap came, went or changed, or a device read before now
    /// reads differently (other links): choices may have changed.
    pub changed: bool,
}

/// Device data by `dev_t`, with the sysfs node each was read from; `None`
/// for a device that could not be read (kept to notice when it can).
type DeviceCache = HashMap<u64, (Option<PathBuf>, Option<DeviceInfo>)>;

/// The heaps of this machine.
#[derive(Debug, Clone)]
pub struct HeapDirectory {
    discovery: Discovery,
    /// The DMA-BUF heaps among the discovered ones (no udmabuf).
    heaps: Vec<HeapInfo>,
    /// The buffer heaps are chosen for, width and height in pixels: a full
    /// frame of the largest output (see
    /// [`HeapDirectory::size_for_outputs`]). The protocol hands out a heap
    /// per tranche, not per buffer; a heap that cannot hold a full-screen
    /// buffer is not chosen while one the client may be handed can, and
    /// `max_size` tells the client the real limit.
    frame: (u32, u32),
    /// Device data by `dev_t`, with the sysfs node it was read from
    /// (module docs); shared by clones.
    devices: Arc<Mutex<DeviceCache>>,
    /// What a heap's node must be to be judged for a client: a character
    /// device (tests stand regular files in for them).
    node_type: FileType,
    /// What was seen of each heap beyond its attributes, by heap name (see
    /// [`HeapDirectory::rescan`]).
    seen: HashMap<String, Seen>,
}

/// What a scan saw of a heap beyond its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The inode of its sysfs device (`device_heap`'s class device, else
    /// the heap core's), which sysfs does not reuse for a device made
    /// again: what tells a heap from an earlier one of the same name.
    /// `None` where it has none (udmabuf, a test's tree).
    sysfs: Option<u64>,
    /// Its node's owner, group, mode and change time (which moves when an
    /// ACL is set): who may be handed the heap changes with them (udev's
    /// rules give a new node its ACLs after the node appeared).
    node: Option<(u32, u32, u32, i64, i64)>,
}

impl Seen {
    fn of(discovery: &Discovery, heap: &HeapInfo) -> Seen {
        use std::os::unix::fs::MetadataExt;
        let class = discovery.roots().sysfs.join("class");
        let sysfs = ["device_heap", "dma_heap"]
            .iter()
            .find_map(|c| std::fs::metadata(class.join(c).join(&heap.name)).ok())
            .map(|m| m.ino());
        let node = std::fs::metadata(&heap.dev_path)
            .ok()
            .map(|m| (m.uid(), m.gid(), m.mode(), m.ctime(), m.ctime_nsec()));
        Seen { sysfs, node }
    }
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
        let seen = heaps
            .iter()
            .map(|h| (h.name.clone(), Seen::of(&discovery, h)))
            .collect();
        HeapDirectory {
            discovery,
            heaps,
            frame: SMALLEST,
            devices: Arc::default(),
            node_type: FileType::CharacterDevice,
            seen,
        }
    }

    /// Scans the same `/dev` and `/sys` again (a heap, or a device's links
    /// to heaps, may have changed) and reads again the devices read so far;
    /// the frame size stays. Says which heaps went: those not found any
    /// more, or found with another sysfs device than before (removed and
    /// made again under the same name between the two scans: a file
    /// descriptor opened on the old one may not allocate from the new
    /// one); and whether anything a choice depends on changed.
    pub fn rescan(&mut self) -> Rescan {
        let next = Self::from_discovery(Discovery::scan_roots(self.discovery.roots()));
        let gone: Vec<GoneHeap> = self
            .seen
            .iter()
            .filter(|(name, seen)| next.seen.get(*name).map(|s| s.sysfs) != Some(seen.sysfs))
            .map(|(name, seen)| GoneHeap {
                name: name.clone(),
                identity: seen.sysfs,
            })
            .collect();
        // Heaps gone or come, other attributes, other node permissions.
        let mut changed = next.heaps != self.heaps || next.seen != self.seen;
        // The devices choices were made for, read again through the new
        // scan: a device whose links changed changes its choices.
        let cached: DeviceCache = self
            .devices
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        self.discovery = next.discovery;
        self.heaps = next.heaps;
        self.seen = next.seen;
        for (dev, (_, before)) in &cached {
            changed |= self.device(*dev).ok() != *before;
        }
        Rescan { gone, changed }
    }

    /// The sysfs identity of heap `name` as of the last scan.
    pub fn identity(&self, name: &str) -> Option<u64> {
        self.seen.get(name).and_then(|s| s.sysfs)
    }

    /// Chooses heaps for buffers as large as a full XRGB8888 frame of the
    /// largest of `outputs` (width x height in pixels), and forgets the
    /// device data read so far (a display may have come or gone). Whether
    /// the frame changed: then a heap handed out before may not be the
    /// choice any more.
    pub fn size_for_outputs(&mut self, outputs: impl IntoIterator<Item = (i32, i32)>) -> bool {
        let frame = outputs
            .into_iter()
            .map(|(w, h)| (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0)))
            .filter(|(w, h)| *w > 0 && *h > 0)
            .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
            .unwrap_or(SMALLEST);
        if let Ok(mut devices) = self.devices.lock() {
            devices.clear();
        }
        std::mem::replace(&mut self.frame, frame) != frame
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Names of the DMA-BUF heaps found.
    pub fn names(&self) -> Vec<&str> {
        self.names_where(|_| true)
    }

    /// Names of the heaps that charge the allocator's memory cgroup.
    pub fn accounted_names(&self) -> Vec<&str> {
        self.names_where(is_accounted)
    }

    /// Names of the heaps that bound what one user pins: those any client
    /// may be handed.
    pub fn bounded_names(&self) -> Vec<&str> {
        self.names_where(bounds_each_user)
    }

    fn names_where(&self, keep: impl Fn(&HeapInfo) -> bool) -> Vec<&str> {
        self.heaps
            .iter()
            .filter(|h| keep(h))
            .map(|h| h.name.as_str())
            .collect()
    }

    /// Picks, among the heaps `recipient` may be handed, the heap whose
    /// memory every device in `devices` can use: the first in the first
    /// device's links that the others link to too, else a heap no device
    /// links to (see the module documentation).
    ///
    /// The devices' needs come from every discovered heap; the allocator's
    /// selection then runs over the heaps the recipient may be handed
    /// only, each decided now ([`Recipient::admits`]), for a full frame
    /// where one of those heaps holds one, else for the smallest buffer
    /// (the allocator's own choice, module docs). A tranche that
    /// some heap serves but none of those does gets
    /// [`NoHeap::Unaccounted`] where the recipient is sandboxed and no heap
    /// that charges serves it, else [`NoHeap::Unavailable`]; both name the
    /// heaps withheld and why.
    pub fn select(&self, devices: &[u64], recipient: Recipient<'_>) -> Result<Choice<'_>, NoHeap> {
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
        // Which heaps this client may be handed, each judged now; the nodes
        // opened for that are kept, to hand out the one chosen.
        let mut pool = Vec::new();
        let mut judged = Vec::new();
        let mut refused = Vec::new();
        for heap in &self.heaps {
            match recipient.admits(heap, self.node_type) {
                Ok(fd) => {
                    judged.extend(fd.map(|fd| (heap.name.clone(), fd)));
                    pool.push(heap.clone());
                }
                Err(why) => refused.push((heap, why)),
            }
        }
        // A full frame where some heap this client may be handed can hold
        // one, else the smallest buffer: a heap too small for a full-screen
        // buffer still serves smaller ones. (Chosen against every heap, a
        // frame only a withheld heap holds would leave this client none.)
        let at_frame = self.explain(&pool, &resolved, self.frame);
        let (frame, explained) = if at_frame.as_ref().is_ok_and(|e| e.heap().is_ok()) {
            (self.frame, at_frame)
        } else {
            (SMALLEST, self.explain(&pool, &resolved, SMALLEST))
        };
        // The buffer's size, to judge withheld heaps by (a heap gives at
        // least a page when the layout cannot be made).
        let size = explained
            .as_ref()
            .map(|e| e.layout.alloc_size())
            .unwrap_or(rustix::param::page_size() as u64);
        // Only heaps that would serve are worth a word.
        let withheld: Vec<(&HeapInfo, Withheld)> = refused
            .into_iter()
            .filter(|(heap, _)| needs.check(heap, size).is_ok())
            .collect();
        let withheld_text = || -> Vec<String> {
            withheld
                .iter()
                .map(|(heap, why)| withheld_because(heap, why))
                .collect()
        };
        let err = match explained.and_then(|e| e.heap()) {
            Ok(chosen) => {
                // The pool holds copies: answer with the directory's own.
                let heap = self
                    .heaps
                    .iter()
                    .find(|h| h.name == chosen.name)
                    .ok_or_else(|| NoHeap::Unsatisfiable("the chosen heap vanished".into()))?;
                let judged = judged
                    .into_iter()
                    .find(|(name, _)| *name == heap.name)
                    .map(|(_, fd)| fd);
                return Ok(Choice {
                    heap,
                    withheld: withheld_text(),
                    judged,
                });
            }
            Err(err) => err,
        };
        // Would any heap serve the tranche? Then withholding is the reason;
        // otherwise the tranche is unsatisfiable for everyone.
        if let Err(all) = self.decide(&self.heaps, &resolved, frame) {
            return Err(NoHeap::Unsatisfiable(all.to_string()));
        }
        if withheld.is_empty() {
            return Err(NoHeap::Unsatisfiable(err.to_string()));
        }
        let only_unaccounted = withheld.iter().all(|(_, w)| *w == Withheld::Unaccounted);
        if recipient.sandboxed && only_unaccounted {
            let charging = self.heaps.iter().any(is_accounted);
            let accounted = if charging {
                format!("none of the heaps that charge does: {err}")
            } else {
                "no heap on this system charges the allocating process's memory cgroup".to_owned()
            };
            return Err(NoHeap::Unaccounted(format!(
                "{SANDBOXED}: withheld {}; {accounted}",
                withheld_text().join(", ")
            )));
        }
        let rest = if pool.is_empty() {
            "no other heap may be handed to this client".to_owned()
        } else {
            format!("none of the heaps this client may be handed serves the tranche: {err}")
        };
        let prefix = if recipient.sandboxed {
            format!("{SANDBOXED}: ")
        } else {
            String::new()
        };
        let withheld: Vec<String> = withheld_text()
            .into_iter()
            .map(|w| format!("withheld {w}"))
            .collect();
        Err(NoHeap::Unavailable(format!(
            "{prefix}{}; {rest}",
            withheld.join("; ")
        )))
    }

    /// The allocator's verdict on `heaps` for a `frame` (width, height) of
    /// [`FRAME_FORMAT`] touched by `devices`: [`explain_choice_among`].
    fn explain<'h>(
        &self,
        heaps: &'h [HeapInfo],
        devices: &[DeviceInfo],
        (width, height): (u32, u32),
    ) -> heapland_allocator::Result<Explained<'h>> {
        explain_choice_among(
            &self.discovery,
            heaps,
            devices,
            &[],
            FRAME_FORMAT,
            width,
            height,
        )
    }

    /// The heap of [`HeapDirectory::explain`]'s verdict, or why none.
    fn decide<'h>(
        &self,
        heaps: &'h [HeapInfo],
        devices: &[DeviceInfo],
        frame: (u32, u32),
    ) -> heapland_allocator::Result<&'h HeapInfo> {
        self.explain(heaps, devices, frame)?.heap()
    }

    /// The devices behind `devices` (each resolved once per `dev_t`, see
    /// the module docs) and what they need together.
    fn needs(
        &self,
        devices: &[u64],
    ) -> heapland_allocator::Result<(Vec<DeviceInfo>, Intersection)> {
        let mut resolved: Vec<DeviceInfo> = Vec::with_capacity(devices.len());
        let mut seen = Vec::with_capacity(devices.len());
        for dev in devices {
            if seen.contains(dev) {
                continue;
            }
            seen.push(*dev);
            resolved.push(self.device(*dev)?);
        }
        let parts: Vec<Constraints> = resolved
            .iter()
            .map(|d| Constraints::for_device(d, &self.discovery.heaps_serving(d)))
            .collect();
        let needs = intersect(&parts);
        Ok((resolved, needs))
    }

    /// The device of `dev`, from the cache or read now. A cached entry
    /// counts only while `dev`'s sysfs node is still the same device's
    /// (device numbers are reused when a camera or display goes and
    /// another comes).
    fn device(&self, dev: u64) -> heapland_allocator::Result<DeviceInfo> {
        let number = DeviceNumber::from_dev_t(dev);
        let node = std::fs::canonicalize(
            self.discovery
                .roots()
                .sysfs
                .join("dev/char")
                .join(number.to_string()),
        )
        .ok();
        let cached = self
            .devices
            .lock()
            .ok()
            .and_then(|d| d.get(&dev).cloned())
            .filter(|(at, _)| node.is_some() && *at == node);
        if let Some((_, Some(info))) = cached {
            return Ok(info);
        }
        let info = self.discovery.resolve(number);
        if let Ok(mut cache) = self.devices.lock() {
            cache.insert(dev, (node, info.as_ref().ok().cloned()));
        }
        info
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

    /// Selects (among the heaps `recipient` may be handed) and opens a
    /// heap for a tranche.
    pub fn grant(&self, devices: &[u64], recipient: Recipient<'_>) -> Result<HeapGrant, NoHeap> {
        Self::granted(self.select(devices, recipient)?)
    }

    /// The grant of `choice`: a heap that bounds nobody with the fd its
    /// node was judged on, a heap that bounds every user opened now.
    fn granted(choice: Choice<'_>) -> Result<HeapGrant, NoHeap> {
        let Choice {
            heap,
            withheld,
            judged,
        } = choice;
        let fd = match judged {
            Some(fd) => fd,
            None => rustix::fs::open(
                &heap.dev_path,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                NoHeap::Unavailable(format!("cannot open {}: {e}", heap.dev_path.display()))
            })?,
        };
        let max_bytes = match heap.properties.max_alloc_bytes {
            u64::MAX => 0,
            bytes => bytes,
        };
        Ok(HeapGrant {
            fd,
            name: heap.name.clone(),
            flags: heap_flags(heap),
            max_bytes,
            withheld,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::{symlink, MetadataExt, PermissionsExt},
        path::{Path, PathBuf},
    };

    use super::*;
    use heapland_allocator::{HeapProperties, ServedLink, SysRoots};

    const VGEM: u64 = (226 << 8) | 128;
    const VKMS: u64 = 226 << 8;

    /// What `device_heap.ko` bounds each user to in these trees.
    const PER_USER: u64 = 256 << 20;

    /// A private directory for one fake sysfs tree, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("heapland-heaps-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("sys/dev/char")).unwrap();
            fs::create_dir_all(dir.join("dev/dma_heap")).unwrap();
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

        /// A real file standing for the node of `heap`, with `mode`, owned
        /// by whoever runs the test; `heap` now points at it.
        fn node(&self, heap: &mut HeapInfo, mode: u32) -> PathBuf {
            let path = self.0.join("dev/dma_heap").join(&heap.name);
            fs::write(&path, "").unwrap();
            chmod(&path, mode);
            heap.dev_path = path.clone();
            path
        }

        /// A directory of `heaps`, whose nodes are regular files here.
        fn directory(&self, heaps: Vec<HeapInfo>) -> HeapDirectory {
            HeapDirectory {
                node_type: FileType::RegularFile,
                ..HeapDirectory::from_discovery(Discovery::from_heaps(self.roots(), heaps))
            }
        }

        /// A user who neither owns the tree's files nor is in their group,
        /// nor root: unit tests may run as root.
        fn stranger(&self) -> Peer {
            let meta = fs::metadata(&self.0).unwrap();
            let uid = if meta.uid() == 0 {
                1000
            } else {
                meta.uid() + 1
            };
            let gid = if meta.gid() == 0 {
                1000
            } else {
                meta.gid() + 1
            };
            Peer {
                pid: Some(4242),
                uid,
                gid,
                groups: Vec::new(),
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// An unsandboxed client with credentials `peer`.
    fn client(peer: &Peer) -> Recipient<'_> {
        Recipient {
            sandboxed: false,
            peer: Some(peer),
        }
    }

    /// A sandboxed client with credentials `peer`.
    fn sandboxed(peer: &Peer) -> Recipient<'_> {
        Recipient {
            sandboxed: true,
            peer: Some(peer),
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

    /// A contiguous heap of the module: bounded per user, not charged.
    fn contig(name: &str) -> HeapInfo {
        heap(
            name,
            HeapKind::Device,
            HeapProperties {
                contiguous: true,
                accounting: Accounting::None,
                max_user_bytes: Some(PER_USER),
                ..HeapProperties::ANYWHERE
            },
        )
    }

    /// Scattered pages below 4 GiB, a heap of the module.
    fn sg32(name: &str, accounting: Accounting) -> HeapInfo {
        heap(
            name,
            HeapKind::Device,
            HeapProperties {
                accounting,
                dma_mask_bits: Some(32),
                max_user_bytes: Some(PER_USER),
                ..HeapProperties::ANYWHERE
            },
        )
    }

    /// The kernel's system heap, which bounds nobody, at a node of `t`
    /// with `mode`.
    fn system(t: &Tree, accounting: Accounting, mode: u32) -> HeapInfo {
        let mut h = heap(
            "system",
            HeapKind::System,
            HeapProperties {
                accounting,
                ..HeapProperties::ANYWHERE
            },
        );
        t.node(&mut h, mode);
        h
    }

    fn name(r: Result<Choice<'_>, NoHeap>) -> Result<String, NoHeap> {
        r.map(|c| c.heap.name.clone())
    }

    #[test]
    fn empty_host_has_no_heaps() {
        let t = Tree::new("empty");
        let dirs = HeapDirectory::from_discovery(Discovery::scan_roots(&t.roots()));
        let p = t.stranger();
        for r in [client(&p), sandboxed(&p)] {
            assert!(matches!(dirs.select(&[], r), Err(NoHeap::NoHeaps(_))));
            assert!(matches!(dirs.grant(&[], r), Err(NoHeap::NoHeaps(_))));
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
        let dir = t.directory(vec![
            contig("system-contiguous"),
            system(&t, Accounting::None, 0o644),
        ]);
        let p = t.stranger();
        assert_eq!(
            name(dir.select(&[VGEM], client(&p))),
            Ok("system-contiguous".into())
        );
        match dir.select(&[VGEM], sandboxed(&p)) {
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
        match dir.select(&[], sandboxed(&p)) {
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
        let dir = t.directory(vec![
            contig("system-contiguous"),
            system(&t, Accounting::Memcg, 0o644),
        ]);
        let p = t.stranger();
        match dir.select(&[VGEM], sandboxed(&p)) {
            Err(NoHeap::Unaccounted(m)) => {
                assert!(m.contains("withheld system-contiguous"), "{m}");
                assert!(m.contains("none of the heaps that charge does"), "{m}");
                assert!(m.contains("not contiguous"), "{m}");
            }
            other => panic!("expected Unaccounted, got {other:?}"),
        }
        // Where no device needs contiguous memory, the charged system heap
        // serves (the client may open its node).
        assert_eq!(name(dir.select(&[], sandboxed(&p))), Ok("system".into()));
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
            system(&t, Accounting::None, 0o644),
        ]);
        let p = t.stranger();
        assert_eq!(name(dir.select(&[VGEM], client(&p))), Ok("system".into()));
        assert_eq!(
            name(dir.select(&[VGEM], sandboxed(&p))),
            Ok("system-32bit".into())
        );
        assert_eq!(dir.accounted_names(), vec!["system-32bit"]);
        assert_eq!(
            dir.bounded_names(),
            vec!["system-32bit", "system-contiguous"]
        );
        assert_eq!(heap_flags(&dir.heaps[0]), FLAG_ACCOUNTED, "sg, charged");
        assert_eq!(heap_flags(&contig("c")), FLAG_CONTIGUOUS);
        // Where the system heap charges too, it is everyone's choice.
        let dir = t.directory(vec![
            sg32("system-32bit", Accounting::Memcg),
            system(&t, Accounting::Memcg, 0o644),
        ]);
        for r in [client(&p), sandboxed(&p)] {
            assert_eq!(name(dir.select(&[VGEM], r)), Ok("system".into()));
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
            system(&t, Accounting::None, 0o644),
        ]);
        let p = t.stranger();
        assert_eq!(name(dir.select(&[VGEM], client(&p))), Ok("system".into()));
        assert_eq!(
            name(dir.select(&[VGEM, VKMS], client(&p))),
            Ok("system-contiguous".into())
        );
        assert_eq!(
            name(dir.select(&[VKMS, VGEM], client(&p))),
            Ok("system-32bit-contiguous".into())
        );
    }

    /// A tranche no heap serves is `unsatisfiable` for every client, not
    /// `unaccounted` or `unavailable`: withholding is not why it has none.
    #[test]
    fn unsatisfiable_stays_unsatisfiable_for_every_client() {
        let t = Tree::new("unsat");
        t.device("vgem", "renderD128", VGEM, &["system-contiguous"]);
        let dir = t.directory(vec![
            contig("system-contiguous"),
            system(&t, Accounting::Memcg, 0o600),
        ]);
        let p = t.stranger();
        let unknown = (81 << 8) | 7;
        let none = Recipient {
            sandboxed: false,
            peer: None,
        };
        for r in [client(&p), sandboxed(&p), none] {
            assert!(
                matches!(dir.select(&[unknown], r), Err(NoHeap::Unsatisfiable(_))),
                "{r:?}"
            );
        }
        // vgem needs contiguous memory; its heap gives less than a page and
        // the system heap is not contiguous.
        let mut tiny = contig("system-contiguous");
        tiny.properties.max_alloc_bytes = 1024;
        let dir = t.directory(vec![tiny, system(&t, Accounting::Memcg, 0o600)]);
        for r in [client(&p), sandboxed(&p), none] {
            assert!(
                matches!(dir.select(&[VGEM], r), Err(NoHeap::Unsatisfiable(_))),
                "{r:?}"
            );
        }
    }

    /// The kernel's system heap bounds nobody: a client gets it only while
    /// its own credentials would open the node, read again at every
    /// choice, and otherwise the next heap in the device's links, which
    /// bounds every user.
    #[test]
    fn unbounded_heap_only_for_clients_that_may_open_it() {
        let t = Tree::new("unbounded");
        t.device(
            "vgem",
            "renderD128",
            VGEM,
            &["system", "system-32bit", "system-contiguous"],
        );
        let sys = system(&t, Accounting::None, 0o600);
        let node = sys.dev_path.clone();
        let dir = t.directory(vec![
            sg32("system-32bit", Accounting::None),
            contig("system-contiguous"),
            sys,
        ]);
        let p = t.stranger();
        let choice = dir.select(&[VGEM], client(&p)).unwrap();
        assert_eq!(choice.heap.name, "system-32bit");
        assert_eq!(
            choice.withheld,
            [format!(
                "system: uid {} may not open {}, and nothing bounds what one user pins in it",
                p.uid,
                node.display()
            )]
        );
        // World-readable now: the next choice sees it, no cache.
        chmod(&node, 0o604);
        let choice = dir.select(&[VGEM], client(&p)).unwrap();
        assert_eq!(choice.heap.name, "system");
        assert!(choice.withheld.is_empty(), "{:?}", choice.withheld);
        // Readable by the owning group only: a member of it may.
        chmod(&node, 0o640);
        let member = Peer {
            groups: vec![fs::metadata(&node).unwrap().gid()],
            ..p.clone()
        };
        assert_eq!(
            name(dir.select(&[VGEM], client(&member))),
            Ok("system".into())
        );
        assert_eq!(
            name(dir.select(&[VGEM], client(&p))),
            Ok("system-32bit".into())
        );
        // Root may open anything.
        chmod(&node, 0o600);
        let root = Peer {
            uid: 0,
            gid: 0,
            ..p.clone()
        };
        assert_eq!(
            name(dir.select(&[VGEM], client(&root))),
            Ok("system".into())
        );
        // A node that cannot be read withholds, with the reason.
        fs::remove_file(&node).unwrap();
        let choice = dir.select(&[VGEM], client(&root)).unwrap();
        assert_eq!(choice.heap.name, "system-32bit");
        assert!(
            choice.withheld[0].starts_with("system: whether uid 0 may open"),
            "{:?}",
            choice.withheld
        );
    }

    /// Where only unbounded heaps serve and the client may open none, it is
    /// told `unavailable`, with each heap withheld and why.
    #[test]
    fn withheld_unbounded_heaps_are_unavailable_with_the_reason() {
        let t = Tree::new("unavailable");
        let sys = system(&t, Accounting::None, 0o600);
        let node = sys.dev_path.clone();
        let dir = t.directory(vec![sys]);
        let p = t.stranger();
        assert_eq!(
            dir.select(&[], client(&p)).map(|c| c.heap.name.clone()),
            Err(NoHeap::Unavailable(format!(
                "withheld system: uid {} may not open {}, and nothing bounds what one user \
                 pins in it; no other heap may be handed to this client",
                p.uid,
                node.display()
            )))
        );
        assert!(matches!(
            dir.grant(&[], client(&p)),
            Err(NoHeap::Unavailable(_))
        ));
        // A bounded heap that does not fit: it is named as what the client
        // may be handed, and why it does not serve.
        let mut small = sg32("system-32bit", Accounting::None);
        small.properties.max_alloc_bytes = 1024;
        let sys = system(&t, Accounting::None, 0o600);
        let dir = t.directory(vec![small, sys]);
        match dir.select(&[], client(&p)) {
            Err(NoHeap::Unavailable(m)) => {
                assert!(m.starts_with("withheld system: uid"), "{m}");
                assert!(
                    m.contains(
                        "; none of the heaps this client may be handed serves the tranche: "
                    ),
                    "{m}"
                );
                assert!(m.contains("system-32bit"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// Without credentials a client gets what bounds every user, and
    /// nothing else.
    #[test]
    fn clients_without_credentials_get_bounded_heaps_only() {
        let t = Tree::new("nocred");
        t.device("vgem", "renderD128", VGEM, &["system", "system-32bit"]);
        let dir = t.directory(vec![
            sg32("system-32bit", Accounting::None),
            system(&t, Accounting::Memcg, 0o666),
        ]);
        let unknown = Recipient {
            sandboxed: false,
            peer: None,
        };
        let choice = dir.select(&[VGEM], unknown).unwrap();
        assert_eq!(choice.heap.name, "system-32bit");
        assert_eq!(
            choice.withheld,
            [
                "system: the client's credentials are unknown, and nothing bounds what one \
              user pins in it"
            ]
        );
        let dir = t.directory(vec![system(&t, Accounting::Memcg, 0o666)]);
        match dir.select(&[], unknown) {
            Err(NoHeap::Unavailable(m)) => {
                assert!(m.contains("credentials are unknown"), "{m}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Sandboxed: the accounting rule comes first, then the same.
        let sandboxed_unknown = Recipient {
            sandboxed: true,
            ..unknown
        };
        assert!(matches!(
            dir.select(&[], sandboxed_unknown),
            Err(NoHeap::Unavailable(_))
        ));
    }

    /// A sandboxed client keeps the accounting rule on top: a charging heap
    /// it may not open is withheld too, and then the reason is
    /// `unavailable`, not `unaccounted` (a heap that charges does serve).
    #[test]
    fn sandboxed_clients_need_both_rules() {
        let t = Tree::new("both");
        let dir = t.directory(vec![
            contig("system-contiguous"),
            system(&t, Accounting::Memcg, 0o600),
        ]);
        let p = t.stranger();
        // Unsandboxed: the charged system heap is withheld (no access) and
        // the module's contiguous heap, bounded, serves.
        assert_eq!(
            name(dir.select(&[], client(&p))),
            Ok("system-contiguous".into())
        );
        match dir.select(&[], sandboxed(&p)) {
            Err(NoHeap::Unavailable(m)) => {
                assert!(
                    m.starts_with("sandboxed client (wp_security_context_v1): "),
                    "{m}"
                );
                assert!(
                    m.contains(
                        "withheld system-contiguous (contiguous memory for vgem: not charged"
                    ),
                    "{m}"
                );
                assert!(
                    m.contains(&format!("withheld system: uid {} may not open", p.uid)),
                    "{m}"
                );
                assert!(
                    m.ends_with("; no other heap may be handed to this client"),
                    "{m}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Once the user may open it, the sandboxed client gets it.
        chmod(&t.0.join("dev/dma_heap/system"), 0o604);
        assert_eq!(name(dir.select(&[], sandboxed(&p))), Ok("system".into()));
    }

    /// A granted heap is opened, and says what was withheld on the way.
    #[test]
    fn grant_opens_the_chosen_node() {
        let t = Tree::new("grant");
        t.device("vgem", "renderD128", VGEM, &["system", "system-32bit"]);
        let mut sg = sg32("system-32bit", Accounting::Memcg);
        t.node(&mut sg, 0o600);
        let dir = t.directory(vec![sg, system(&t, Accounting::None, 0o600)]);
        let p = t.stranger();
        let grant = dir.grant(&[VGEM], client(&p)).unwrap();
        assert_eq!(grant.name, "system-32bit");
        assert_eq!(grant.flags, FLAG_ACCOUNTED);
        assert_eq!(grant.max_bytes, 0);
        assert_eq!(grant.withheld.len(), 1, "{:?}", grant.withheld);
        assert!(grant.withheld[0].starts_with("system: uid"));
    }

    /// The frame size is chosen against the heaps this client may be
    /// handed: where only a withheld heap holds a full frame, the client
    /// still gets the heap it may have, for smaller buffers, not
    /// `unavailable`. Clients that may have every heap get the one that
    /// holds a frame, as before.
    #[test]
    fn frame_size_is_chosen_among_the_heaps_the_client_may_have() {
        let t = Tree::new("frame");
        t.device("vgem", "renderD128", VGEM, &["system", "system-32bit"]);
        let mut small = sg32("system-32bit", Accounting::None);
        small.properties.max_alloc_bytes = 1 << 20;
        t.node(&mut small, 0o600);
        let sys = system(&t, Accounting::None, 0o600);
        let node = sys.dev_path.clone();
        let mut dir = t.directory(vec![small, sys]);
        dir.size_for_outputs([(1920, 1080)]);
        let p = t.stranger();
        let choice = dir.select(&[VGEM], client(&p)).unwrap();
        assert_eq!(choice.heap.name, "system-32bit");
        assert_eq!(
            choice.withheld,
            [format!(
                "system: uid {} may not open {}, and nothing bounds what one user pins in it",
                p.uid,
                node.display()
            )]
        );
        let grant = dir.grant(&[VGEM], client(&p)).unwrap();
        assert_eq!(
            (grant.name.as_str(), grant.max_bytes),
            ("system-32bit", 1 << 20)
        );
        // Root may have both: the system heap, which holds a frame, first
        // in the links anyway; so may a user once the node lets it.
        let root = Peer {
            uid: 0,
            gid: 0,
            ..p.clone()
        };
        assert_eq!(
            name(dir.select(&[VGEM], client(&root))),
            Ok("system".into())
        );
        chmod(&node, 0o604);
        assert_eq!(name(dir.select(&[VGEM], client(&p))), Ok("system".into()));
        // The system heap first in the links but smaller than a frame, the
        // bounded one large enough: the frame decides, for everyone.
        let t = Tree::new("frame-order");
        t.device("vgem", "renderD128", VGEM, &["system", "system-32bit"]);
        let mut sys = system(&t, Accounting::None, 0o604);
        sys.properties.max_alloc_bytes = 1 << 20;
        let mut dir = t.directory(vec![sg32("system-32bit", Accounting::None), sys]);
        dir.size_for_outputs([(1920, 1080)]);
        let p = t.stranger();
        for r in [client(&p), client(&root)] {
            assert_eq!(name(dir.select(&[VGEM], r)), Ok("system-32bit".into()));
        }
    }

    /// For a client that may have every heap, the heap of a tranche is
    /// exactly what the library's `explain_choice` says for a full frame
    /// (what `heapland-heaps for` prints), at every output size; and a
    /// changed output size is reported, an unchanged one not.
    #[test]
    fn the_choice_is_the_librarys_for_the_frame() {
        let t = Tree::new("library");
        t.device("vgem", "renderD128", VGEM, &["system", "system-32bit"]);
        let mut sys = system(&t, Accounting::None, 0o604);
        sys.properties.max_alloc_bytes = 4 << 20;
        let mut dir = t.directory(vec![sg32("system-32bit", Accounting::None), sys]);
        let root = Peer {
            uid: 0,
            gid: 0,
            ..t.stranger()
        };
        let devices =
            heapland_allocator::resolve_devices(dir.discovery(), &[DeviceNumber::from_dev_t(VGEM)])
                .unwrap();
        let mut chosen = Vec::new();
        for (w, h) in [(640, 480), (1920, 1080), (3840, 2160)] {
            assert!(dir.size_for_outputs([(w, h)]), "{w}x{h} not a change");
            assert!(!dir.size_for_outputs([(w, h)]), "{w}x{h} twice a change");
            let library = heapland_allocator::explain_choice(
                dir.discovery(),
                &devices,
                &[],
                FRAME_FORMAT,
                w as u32,
                h as u32,
            )
            .unwrap();
            let library = library.heap().unwrap().name.clone();
            assert_eq!(
                name(dir.select(&[VGEM], client(&root))),
                Ok(library.clone()),
                "at {w}x{h}"
            );
            chosen.push(library);
        }
        // The frame decides: the system heap holds 4 MiB, a 640x480 frame
        // but not a 1080p one.
        assert_eq!(chosen, ["system", "system-32bit", "system-32bit"]);
    }

    /// The fd handed out for a heap that bounds nobody is the node that
    /// was judged: a node put in its place after the choice is not what
    /// the client gets.
    #[test]
    fn the_node_judged_is_the_node_handed_out() {
        let t = Tree::new("judged");
        let sys = system(&t, Accounting::None, 0o604);
        let node = sys.dev_path.clone();
        let judged_ino = fs::metadata(&node).unwrap().ino();
        let dir = t.directory(vec![sys]);
        let p = t.stranger();
        let choice = dir.select(&[], client(&p)).unwrap();
        assert!(choice.judged.is_some());
        // Swapped for another file (the client could not read it).
        let other = t.0.join("dev/dma_heap/other");
        fs::write(&other, "").unwrap();
        chmod(&other, 0o600);
        fs::rename(&other, &node).unwrap();
        assert_ne!(fs::metadata(&node).unwrap().ino(), judged_ino);
        let grant = HeapDirectory::granted(choice).unwrap();
        assert_eq!(rustix::fs::fstat(&grant.fd).unwrap().st_ino, judged_ino);
        // Judged again, the new node is withheld; a symbolic link in its
        // place to a node the client may read is not followed.
        assert!(matches!(
            dir.grant(&[], client(&p)),
            Err(NoHeap::Unavailable(_))
        ));
        let readable = t.0.join("readable");
        fs::write(&readable, "").unwrap();
        chmod(&readable, 0o644);
        fs::remove_file(&node).unwrap();
        symlink(&readable, &node).unwrap();
        match dir.grant(&[], client(&p)) {
            Err(NoHeap::Unavailable(m)) => {
                assert!(m.contains("cannot be told (cannot open"), "{m}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // A heap that bounds every user is opened when granted.
        let mut sg = sg32("system-32bit", Accounting::None);
        t.node(&mut sg, 0o600);
        let dir = t.directory(vec![sg]);
        assert!(dir.select(&[], client(&p)).unwrap().judged.is_none());
        assert!(dir.grant(&[], client(&p)).is_ok());
    }

    /// Outside tests a heap's node must be a character device: anything
    /// else is withheld, with why.
    #[test]
    fn unbounded_heap_nodes_must_be_character_devices() {
        let t = Tree::new("chardev");
        let sys = system(&t, Accounting::None, 0o644);
        let node = sys.dev_path.clone();
        let dir = HeapDirectory::from_discovery(Discovery::from_heaps(t.roots(), vec![sys]));
        let p = t.stranger();
        assert_eq!(
            dir.select(&[], client(&p)).map(|c| c.heap.name.clone()),
            Err(NoHeap::Unavailable(format!(
                "withheld system: whether uid {} may open {node} cannot be told ({node} is a \
                 regular file, not a character device), and nothing bounds what one user pins \
                 in it; no other heap may be handed to this client",
                p.uid,
                node = node.display()
            )))
        );
    }

    /// A rescan names the heaps gone: not found any more, or found with
    /// another sysfs device (made again under the same name); a heap still
    /// there is not gone.
    #[test]
    fn rescan_names_heaps_gone_and_heaps_made_again() {
        let t = Tree::new("rescan");
        let class = t.0.join("sys/class/dma_heap");
        let add = |name: &str| {
            fs::write(t.0.join("dev/dma_heap").join(name), "").unwrap();
            fs::create_dir_all(class.join(name)).unwrap();
        };
        add("system");
        add("carveout");
        add("secure");
        let mut dir = HeapDirectory::from_discovery(Discovery::scan_roots(&t.roots()));
        let mut names = dir.names();
        names.sort();
        assert_eq!(names, ["carveout", "secure", "system"]);
        let same = dir.rescan();
        assert!(
            same.gone.is_empty() && !same.changed,
            "nothing changed: {same:?}"
        );

        // `secure` goes; `carveout` is removed and made again (its new
        // sysfs directory made while the old one still exists: another
        // inode).
        fs::remove_file(t.0.join("dev/dma_heap/secure")).unwrap();
        fs::remove_dir(class.join("secure")).unwrap();
        fs::create_dir(class.join("carveout.new")).unwrap();
        fs::remove_dir(class.join("carveout")).unwrap();
        fs::rename(class.join("carveout.new"), class.join("carveout")).unwrap();
        let rescan = dir.rescan();
        assert!(rescan.changed);
        let mut gone: Vec<&str> = rescan.gone.iter().map(|g| g.name.as_str()).collect();
        gone.sort();
        assert_eq!(gone, ["carveout", "secure"]);
        assert!(rescan.gone.iter().all(|g| g.identity.is_some()));
        let mut names = dir.names();
        names.sort();
        assert_eq!(names, ["carveout", "system"]);

        // A heap that comes is not gone, but changes choices.
        add("secure");
        let came = dir.rescan();
        assert!(came.gone.is_empty() && came.changed, "{came:?}");
        assert_eq!(dir.names().len(), 3);
    }

    /// A device read before that now links elsewhere changes choices,
    /// though no heap came or went.
    #[test]
    fn rescan_notices_a_device_relinked() {
        let t = Tree::new("relinked");
        for name in ["system", "carveout"] {
            fs::write(t.0.join("dev/dma_heap").join(name), "").unwrap();
            fs::create_dir_all(t.0.join("sys/class/dma_heap").join(name)).unwrap();
        }
        t.device("vgem", "renderD128", VGEM, &["system"]);
        let mut dir = HeapDirectory::from_discovery(Discovery::scan_roots(&t.roots()));
        let before = dir.device(VGEM).unwrap();
        let same = dir.rescan();
        assert!(!same.changed, "{same:?}");
        let links = t.0.join("sys/devices/platform/vgem/dma_heaps");
        fs::remove_file(links.join("0")).unwrap();
        fs::create_dir_all(t.0.join("sys/devices/virtual/device_heap/carveout")).unwrap();
        symlink("../../../virtual/device_heap/carveout", links.join("0")).unwrap();
        let relinked = dir.rescan();
        assert!(relinked.changed && relinked.gone.is_empty(), "{relinked:?}");
        assert_ne!(dir.device(VGEM).unwrap(), before);

        // A node whose permissions change changes who may have the heap.
        assert!(!dir.rescan().changed);
        chmod(&t.0.join("dev/dma_heap/carveout"), 0o666);
        assert!(dir.rescan().changed, "a node made readable");

        // A device that could not be read, and now can.
        assert!(dir.device(VKMS).is_err());
        assert!(!dir.rescan().changed);
        t.device("vkms", "card0", VKMS, &["system"]);
        assert!(dir.rescan().changed, "a device that came");
        assert!(dir.device(VKMS).is_ok());
    }
}
