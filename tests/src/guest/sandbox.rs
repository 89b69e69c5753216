//! Sandboxed clients and heaps, with the guest's real heaps: one headless
//! compositor serves an unsandboxed client (main socket) and a sandboxed one
//! (connected through a `wp_security_context_v1` socket the first client
//! created). For every tranche of every batch (the default feedback, then
//! after `add_device` of vkms's card, then of vivid's capture node), both
//! clients must be told the same tranches, read through heapland-allocator's
//! `HeapFeedbackCollector` (linux-dmabuf v4 and `xx_dmabuf_heaps_v2`, joined
//! batch for batch), and:
//!
//! - the unsandboxed client gets the heap kernel/ABI.md says a set of
//!   devices uses (the first heap in the first device's `dma_heaps/` order
//!   that every other device links to too), flagged `accounted` exactly
//!   when the heap's sysfs says it charges the allocator's memory cgroup;
//! - the sandboxed client gets the same rule's heap among the heaps that
//!   charge, always flagged `accounted`, or, where none of those serves the
//!   tranche but some heap does, `tranche_no_heap` with reason
//!   `unaccounted` naming the heap the unsandboxed client got; where no
//!   heap serves, the same reason as the unsandboxed client.
//!
//! The expected heap is worked out here from sysfs as the ABI document
//! describes it ([`Abi`]), not with the allocator library the compositor
//! decides with, so a bug there cannot make its own test pass. Nothing
//! here says which heap charges: sysfs does, so the test holds before and
//! after the module charges sg heaps, and with or without
//! `dma_heap.mem_accounting`. It runs twice: in the boot state (the device
//! heaps of vkms, vgem and vivid.0 are contiguous), and with vivid.0 also
//! served as a scatter-gather device through the module's `add` file for
//! the time of the test (the module then makes `system-32bit`, which
//! charges). Every granted fd is checked to be the heap named (same device
//! number) and to allocate.

use std::{
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use heapland_allocator::{
    feedback_client::JoinedTranche,
    heap_feedback_client::{HeapEvent, HeapFeedbackCollector},
};
use heapland_protocols::v2::client::{
    xx_dmabuf_heap_feedback_v2::{self, XxDmabufHeapFeedbackV2},
    xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2,
    xx_dmabuf_heap_v2::{self, XxDmabufHeapV2},
};
use wayland_client::{globals::GlobalList, Connection, Dispatch, EventQueue, Proxy, QueueHandle};
use wayland_protocols::wp::{
    linux_dmabuf::zv1::client::{
        zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
        zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    security_context::v1::client::{
        wp_security_context_manager_v1::WpSecurityContextManagerV1,
        wp_security_context_v1::WpSecurityContextV1,
    },
};

use super::{
    compositor::{Heapland, RUNTIME_DIR, SOCKET},
    dma_heap, drm_card, v4l2, Test,
};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "sandbox::boot_heaps_accounted_only_for_sandboxed_clients",
            run: boot_state,
        },
        Test {
            name: "sandbox::sg_heap_accounted_only_for_sandboxed_clients",
            run: with_sg_heap,
        },
    ]
}

const SANDBOX_SOCKET: &str = "heapland-guest-sandbox";
const MANAGER: &str = "wp_security_context_manager_v1";
/// `heap_flags.accounted`.
const ACCOUNTED: u32 = 0x2;
/// `no_heap_reason`.
const NO_HEAPS: u32 = 0;
const UNSATISFIABLE: u32 = 1;
const UNACCOUNTED: u32 = 3;
/// A full XRGB8888 frame of the compositor's 320x240 output: what heaps
/// are chosen for. Every heap of the guest holds one (the oracle checks
/// that), so buffer size plays no part in the expected choice.
const FRAME_BYTES: u64 = 320 * 240 * 4;
const PAGE_BYTES: u64 = 4096;

fn boot_state() -> Result<(), String> {
    scenario("boot")
}

fn with_sg_heap() -> Result<(), String> {
    const NAME: &str = "system-32bit";
    let entry = dma_heap::spec("vivid.0", Some("sg"))?;
    let added = if Path::new(dma_heap::CLASS).join(NAME).exists() {
        false
    } else {
        dma_heap::control("add", &entry)?;
        true
    };
    let result = scenario(NAME);
    if added {
        // The clients and the compositor are gone: nothing holds the heap.
        dma_heap::control("remove", &entry)?;
    }
    result
}

/// A granted heap, as the client received it.
struct Granted {
    fd: OwnedFd,
    name: String,
    flags: u32,
}

/// One tranche, as the test checks it.
struct HeapTranche {
    target: u64,
    /// 1: scanout.
    flags: u32,
    /// (fourcc, modifier) pairs, from linux-dmabuf.
    formats: Vec<(u32, u64)>,
    devices: Vec<u64>,
    /// (pitch, offset, base) alignment.
    layout: (u32, u32, u32),
    heap: Result<Granted, (u32, String)>,
}

impl HeapTranche {
    fn describe(&self) -> String {
        match &self.heap {
            Ok(g) => format!("{} (flags {:#x})", g.name, g.flags),
            Err((reason, msg)) => format!("no_heap {reason}: {msg}"),
        }
    }

    /// A tranche joined by the collector.
    fn joined(t: JoinedTranche) -> HeapTranche {
        HeapTranche {
            target: t.target_device.to_dev_t(),
            flags: u32::from(t.scanout),
            formats: t.formats.iter().map(|f| (f.format, f.modifier)).collect(),
            devices: t.devices.iter().map(|d| d.to_dev_t()).collect(),
            layout: (
                t.layout.pitch_alignment,
                t.layout.offset_alignment,
                t.layout.base_alignment,
            ),
            heap: match t.heap {
                Ok(h) => Ok(Granted {
                    fd: h.fd,
                    name: h.name,
                    flags: u32::from(h.contiguous) | if h.accounted { ACCOUNTED } else { 0 },
                }),
                Err(no) => Err((no.reason.map_or(u32::MAX, u32::from), no.message)),
            },
        }
    }
}

/// What the client received: the joined batches of its default feedback.
#[derive(Default)]
struct Recorder {
    collector: HeapFeedbackCollector,
    batches: Vec<Vec<HeapTranche>>,
    /// A batch the collector could not join (out of step, malformed).
    error: Option<String>,
}

impl Recorder {
    /// After an event: the batch it completed, if any.
    fn joined(&mut self) {
        match self.collector.take() {
            Some(Ok(j)) => self
                .batches
                .push(j.tranches.into_iter().map(HeapTranche::joined).collect()),
            Some(Err(e)) => self.error = Some(e.to_string()),
            None => {}
        }
    }
}

struct Client {
    _conn: Connection,
    queue: EventQueue<Recorder>,
    qh: QueueHandle<Recorder>,
    globals: GlobalList,
    rec: Recorder,
    who: &'static str,
}

impl Client {
    fn connect(path: &Path, who: &'static str) -> Result<Client, String> {
        let (conn, globals, queue) =
            heapland_test_client::connect(path).map_err(|e| format!("{who}: {e}"))?;
        let qh = queue.handle();
        Ok(Client {
            _conn: conn,
            queue,
            qh,
            globals,
            rec: Recorder::default(),
            who,
        })
    }

    fn has_global(&self, interface: &str) -> bool {
        self.globals
            .contents()
            .with_list(|l| l.iter().any(|g| g.interface == interface))
    }

    fn bind<I: Proxy + 'static>(&self, version: u32) -> Result<I, String>
    where
        Recorder: Dispatch<I, ()>,
    {
        heapland_test_client::bind(&self.globals, &self.qh, version..=version)
            .map_err(|e| format!("{}: {e}", self.who))
    }

    fn roundtrip(&mut self) -> Result<(), String> {
        self.queue
            .roundtrip(&mut self.rec)
            .map(|_| ())
            .map_err(|e| format!("{}: roundtrip: {e}", self.who))
    }

    /// Roundtrips until `n` batches were joined.
    fn wait_batches(&mut self, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = &self.rec.error {
                return Err(format!("{}: {e}", self.who));
            }
            let got = self.rec.batches.len();
            if got >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: {got} joined batches, waited for {n}",
                    self.who
                ));
            }
            self.roundtrip()?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The device number of a character device node.
fn rdev(path: &Path) -> Result<u64, String> {
    rustix::fs::stat(path)
        .map(|st| st.st_rdev)
        .map_err(|e| format!("stat {}: {e}", path.display()))
}

/// Creates a context through `creator` listening at `path`; returns the
/// creator's end of the close fd (the context lives while it is open).
fn create_context(creator: &mut Client, path: &Path) -> Result<UnixStream, String> {
    let _ = std::fs::remove_file(path);
    let manager: WpSecurityContextManagerV1 = creator.bind(1)?;
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {path:?}: {e}"))?;
    let (close, close_theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let context = manager.create_listener(listener.as_fd(), close_theirs.as_fd(), &creator.qh, ());
    context.set_sandbox_engine("org.example.heapland-guest".into());
    context.set_app_id("org.example.sandboxed".into());
    context.commit();
    creator.roundtrip()?;
    Ok(close)
}

fn scenario(label: &str) -> Result<(), String> {
    let mut comp = Heapland::start_with(&["--backend", "headless", "--output", "320x240@30"])?;
    let result = run_clients(label, &mut comp);
    let alive = comp.alive();
    let stopped = comp.stop();
    result?;
    alive?;
    stopped
}

fn run_clients(label: &str, comp: &mut Heapland) -> Result<(), String> {
    let mut normal = Client::connect(&Path::new(RUNTIME_DIR).join(SOCKET), "unsandboxed")?;
    if !normal.has_global(MANAGER) {
        return Err(format!("unsandboxed client: no {MANAGER}"));
    }
    let sandbox_path: PathBuf = Path::new(RUNTIME_DIR).join(SANDBOX_SOCKET);
    let _close = create_context(&mut normal, &sandbox_path)?;
    let mut sandboxed = Client::connect(&sandbox_path, "sandboxed")?;
    if sandboxed.has_global(MANAGER) {
        return Err(format!("the sandboxed client sees {MANAGER}"));
    }

    // The default linux-dmabuf feedback and its heap feedback, for both
    // clients.
    let mut objects = Vec::new();
    for c in [&mut normal, &mut sandboxed] {
        let dmabuf: ZwpLinuxDmabufV1 = c.bind(4)?;
        let heaps: XxDmabufHeapManagerV2 = c.bind(1)?;
        let fb = dmabuf.get_default_feedback(&c.qh, ());
        let hfb = heaps.get_heap_feedback(&fb, &c.qh, ());
        c.wait_batches(1)?;
        objects.push((fb, hfb));
    }

    // Then the client's own devices: vkms's card, vivid's capture node.
    let vkms = drm_card::find("vkms", "card")?.path;
    let (vivid, _video) = v4l2::find_capture("vivid")?;
    let extra = [rdev(&vkms)?, rdev(&vivid)?];
    for (i, dev) in extra.iter().enumerate() {
        for (c, (_, hfb)) in [&mut normal, &mut sandboxed].into_iter().zip(&objects) {
            hfb.add_device(dev.to_ne_bytes().to_vec());
            c.wait_batches(i + 2)?;
        }
    }
    // One batch each for the feedback and for each add_device, no more,
    // and batch k lists the first k devices added in every tranche.
    for c in [&mut normal, &mut sandboxed] {
        c.roundtrip()?;
        if c.rec.batches.len() != 1 + extra.len() {
            return Err(format!(
                "{}: {} batches for the feedback and {} add_device requests",
                c.who,
                c.rec.batches.len(),
                extra.len()
            ));
        }
        for (k, batch) in c.rec.batches.iter().enumerate() {
            if let Some(t) = batch
                .iter()
                .find(|t| !extra[..k].iter().all(|d| t.devices.contains(d)))
            {
                return Err(format!(
                    "{}: batch {k} has a tranche without the {k} device(s) added: {:?}",
                    c.who, t.devices
                ));
            }
        }
    }
    comp.alive()?;

    let heaps = Abi::heaps()?;
    let charging: Vec<&String> = heaps.iter().filter(|h| Abi::charges(h)).collect();
    println!(
        "INFO sandbox[{label}]: heaps {heaps:?}, charging the allocator's memory cgroup {charging:?}"
    );

    // The oracle must name a heap for the render node alone, the first
    // tranche: a guest where it names none would check nothing.
    if let Some(first) = normal.rec.batches.first().and_then(|b| b.first()) {
        if !matches!(Abi::expected(&first.devices, |_| true)?, Expected::Heap(_)) {
            return Err(format!(
                "the ABI names no heap for {:?} (no dma_heaps/ links?): the checks would say nothing",
                first.devices
            ));
        }
    }
    let mut errs = Vec::new();
    let n_batches = &normal.rec.batches;
    let s_batches = &sandboxed.rec.batches;
    if n_batches.len() != s_batches.len() {
        errs.push(format!(
            "{} batches unsandboxed, {} sandboxed",
            n_batches.len(),
            s_batches.len()
        ));
    }
    for (b, (nb, sb)) in n_batches.iter().zip(s_batches).enumerate() {
        let frame = |t: &[HeapTranche]| -> Vec<(u64, u32)> {
            t.iter().map(|t| (t.target, t.flags)).collect()
        };
        // Each client's batches match its linux-dmabuf feedback (the
        // collector joined them); the two clients' must match each other.
        if frame(nb) != frame(sb) {
            errs.push(format!(
                "batch {b}: tranches {:?} unsandboxed, {:?} sandboxed",
                frame(nb),
                frame(sb)
            ));
            continue;
        }
        for (i, (n, s)) in nb.iter().zip(sb).enumerate() {
            let at = format!("[{label}] batch {b} tranche {i}");
            if (&n.devices, &n.formats, n.layout) != (&s.devices, &s.formats, s.layout) {
                errs.push(format!(
                    "{at}: devices, formats or layout differ: {:?} {:?} {:?} / {:?} {:?} {:?}",
                    n.devices, n.formats, n.layout, s.devices, s.formats, s.layout
                ));
                continue;
            }
            println!(
                "INFO sandbox{at} devices {:?}: unsandboxed {}; sandboxed {}",
                n.devices,
                n.describe(),
                s.describe()
            );
            if let Err(e) = check_tranche(n, s) {
                errs.push(format!("{at}: {e}"));
            }
        }
    }
    drop((normal, sandboxed));
    let _ = std::fs::remove_file(&sandbox_path);
    super::all_ok(errs)
}

/// kernel/ABI.md, read from sysfs by this test alone.
struct Abi;

/// What the ABI says a set of devices uses.
#[derive(Debug, PartialEq)]
enum Expected {
    /// This heap: the first in the first device's order that every other
    /// device links to too, among the heaps considered.
    Heap(String),
    /// No heap considered is linked by every device: the ABI names none
    /// (the compositor may fall back to a heap no device links to).
    NoCommonLink,
}

impl Abi {
    /// The heaps under /dev/dma_heap (udmabuf is elsewhere).
    fn heaps() -> Result<Vec<String>, String> {
        let mut names: Vec<String> = std::fs::read_dir("/dev/dma_heap")
            .map_err(|e| format!("/dev/dma_heap: {e}"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whether `heap` charges the allocating process's memory cgroup:
    /// the module's `accounting` attribute; the kernel's `system` heap
    /// when `dma_heap.mem_accounting` is on; no other kernel heap.
    fn charges(heap: &str) -> bool {
        let read = |path: &Path| std::fs::read_to_string(path).map(|s| s.trim().to_owned());
        match read(&Path::new(dma_heap::CLASS).join(heap).join("accounting")) {
            Ok(value) => value == "memcg",
            Err(_) if heap == "system" => {
                read(Path::new("/sys/module/dma_heap/parameters/mem_accounting"))
                    .is_ok_and(|v| v == "Y" || v == "1")
            }
            Err(_) => false,
        }
    }

    /// The heaps device `dev` links to, best first: `dma_heaps/<rank>` of
    /// the first directory with one, from the device of
    /// /sys/dev/char/MAJ:MIN up; empty for a device nothing serves.
    fn links(dev: u64) -> Result<Vec<String>, String> {
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let node = Path::new("/sys/dev/char").join(format!("{major}:{minor}"));
        let node = std::fs::canonicalize(&node).map_err(|e| format!("{}: {e}", node.display()))?;
        let mut dir = std::fs::canonicalize(node.join("device")).unwrap_or(node);
        loop {
            let heaps_dir = dir.join("dma_heaps");
            if heaps_dir.is_dir() {
                let mut ranked: Vec<(u32, String)> = Vec::new();
                for entry in std::fs::read_dir(&heaps_dir)
                    .map_err(|e| format!("{}: {e}", heaps_dir.display()))?
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Ok(rank) = name.parse::<u32>() else {
                        return Err(format!("{}: a link named {name}", heaps_dir.display()));
                    };
                    let target = std::fs::read_link(entry.path())
                        .map_err(|e| format!("{}: {e}", entry.path().display()))?;
                    let heap = target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .ok_or_else(|| format!("{}: no heap name", target.display()))?;
                    ranked.push((rank, heap));
                }
                ranked.sort();
                return Ok(ranked.into_iter().map(|(_, heap)| heap).collect());
            }
            if !dir.pop() || dir == Path::new("/sys/devices") || dir == Path::new("/") {
                return Ok(Vec::new());
            }
        }
    }

    /// The heap `devices` (in the tranche's order) use among the heaps
    /// `considered` says yes to.
    fn expected(devices: &[u64], considered: impl Fn(&str) -> bool) -> Result<Expected, String> {
        let links = devices
            .iter()
            .map(|d| Abi::links(*d))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, others)) = links.split_first() else {
            return Err("a tranche without devices".into());
        };
        let chosen = first.iter().find(|h| {
            considered(h)
                && others.iter().all(|o| o.contains(h))
                && Path::new("/dev/dma_heap").join(h.as_str()).exists()
        });
        let Some(heap) = chosen else {
            return Ok(Expected::NoCommonLink);
        };
        // The assumption that sizes play no part.
        let max = Path::new(dma_heap::CLASS)
            .join(heap)
            .join("max_alloc_bytes");
        if let Ok(text) = std::fs::read_to_string(&max) {
            let bytes: u64 = text.trim().parse().unwrap_or(0);
            if bytes < FRAME_BYTES {
                return Err(format!(
                    "oracle assumption broken: {heap} holds {bytes} bytes, less than a frame ({FRAME_BYTES})"
                ));
            }
        }
        Ok(Expected::Heap(heap.clone()))
    }
}

/// The fd is the heap it is named after, and allocates.
fn check_fd(g: &Granted) -> Result<(), String> {
    let node = Path::new("/dev/dma_heap").join(&g.name);
    let want = rdev(&node)?;
    let got = rustix::fs::fstat(&g.fd)
        .map_err(|e| format!("fstat the fd of {}: {e}", g.name))?
        .st_rdev;
    if got != want {
        return Err(format!(
            "the fd named {} is device {got:#x}, {} is {want:#x}",
            g.name,
            node.display()
        ));
    }
    dma_heap::alloc(g.fd.as_fd(), PAGE_BYTES)
        .map(drop)
        .map_err(|e| format!("allocating 4096 bytes from the granted {}: {e}", g.name))
}

fn check_tranche(normal: &HeapTranche, sandboxed: &HeapTranche) -> Result<(), String> {
    let all = Abi::expected(&normal.devices, |_| true)?;
    let charging = Abi::expected(&normal.devices, Abi::charges)?;

    // The unsandboxed client: the ABI's heap among every heap.
    match (&all, &normal.heap) {
        (Expected::Heap(want), Ok(g)) if *want == g.name => {
            if (g.flags & ACCOUNTED != 0) != Abi::charges(&g.name) {
                return Err(format!(
                    "unsandboxed: {} flags {:#x}, but its sysfs says it {} charge",
                    g.name,
                    g.flags,
                    if Abi::charges(&g.name) {
                        "does"
                    } else {
                        "does not"
                    }
                ));
            }
            check_fd(g)?;
        }
        // No heap every device links to: a heap none of them needs
        // more than (the compositor's fallback), or none.
        (Expected::NoCommonLink, Ok(g)) => check_fd(g)?,
        (Expected::NoCommonLink, Err((reason, _)))
            if *reason == UNSATISFIABLE || *reason == NO_HEAPS => {}
        (want, _) => {
            return Err(format!(
                "unsandboxed: the ABI says {want:?}, compositor sent {}",
                normal.describe()
            ))
        }
    }

    // The sandboxed client: the ABI's heap among the heaps that charge.
    match (&charging, &sandboxed.heap) {
        (Expected::Heap(want), Ok(g)) if *want == g.name => {
            if g.flags & ACCOUNTED == 0 {
                return Err(format!(
                    "sandboxed: handed {} without the accounted flag ({:#x})",
                    g.name, g.flags
                ));
            }
            check_fd(g)
        }
        (Expected::NoCommonLink, Ok(g)) => {
            if g.flags & ACCOUNTED == 0 || !Abi::charges(&g.name) {
                return Err(format!(
                    "sandboxed: handed {} (flags {:#x}), which does not charge",
                    g.name, g.flags
                ));
            }
            check_fd(g)
        }
        (Expected::NoCommonLink, Err((reason, message))) => match &normal.heap {
            Ok(g) => {
                if *reason != UNACCOUNTED {
                    return Err(format!(
                        "sandboxed: no charging heap serves, unsandboxed got {}; reason {reason}, want unaccounted ({UNACCOUNTED}): {message}",
                        g.name
                    ));
                }
                if !message.contains(&g.name) {
                    return Err(format!(
                        "sandboxed: the unaccounted message does not name the withheld {}: {message}",
                        g.name
                    ));
                }
                Ok(())
            }
            Err((theirs, _)) if theirs == reason => Ok(()),
            Err(_) => Err(format!(
                "sandboxed: {} while unsandboxed: {}",
                sandboxed.describe(),
                normal.describe()
            )),
        },
        (want, _) => Err(format!(
            "sandboxed: the ABI says {want:?} among charging heaps, compositor sent {}",
            sandboxed.describe()
        )),
    }
}

heapland_test_client::registry_events!(Recorder);
heapland_test_client::ignore_events!(
    Recorder: ZwpLinuxDmabufV1,
    XxDmabufHeapManagerV2,
    WpSecurityContextManagerV1,
    WpSecurityContextV1
);

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let Err(err) = s.collector.dmabuf_event(e) {
            s.error = Some(err.to_string());
        }
        s.joined();
    }
}

impl Dispatch<XxDmabufHeapFeedbackV2, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &XxDmabufHeapFeedbackV2,
        e: xx_dmabuf_heap_feedback_v2::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(e) = HeapEvent::from_wire(e) else {
            return;
        };
        if let Err(err) = s.collector.heap_event(e) {
            s.error = Some(err.to_string());
        }
        s.joined();
    }

    wayland_client::event_created_child!(Recorder, XxDmabufHeapFeedbackV2, [
        xx_dmabuf_heap_feedback_v2::EVT_HEAP_OPCODE => (XxDmabufHeapV2, ()),
    ]);
}

impl Dispatch<XxDmabufHeapV2, ()> for Recorder {
    fn event(
        s: &mut Self,
        heap: &XxDmabufHeapV2,
        e: xx_dmabuf_heap_v2::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xx_dmabuf_heap_v2::Event::Removed = e {
            s.collector.heap_removed(heap.id().protocol_id());
        }
    }
}
