//! Sandboxed clients and heaps, with the guest's real heaps: one headless
//! compositor serves an unsandboxed client (main socket) and a sandboxed one
//! (connected through a `wp_security_context_v1` socket the first client
//! created). For every tranche of every batch (the default feedback, then
//! after `add_device` of vkms's card, then of vivid's capture node), both
//! clients must be told the same tranches on both protocols, and:
//!
//! - the unsandboxed client gets the heap the allocator library chooses
//!   among all DMA-BUF heaps, flagged `accounted` exactly when discovery
//!   says it charges the allocator's memory cgroup;
//! - the sandboxed client gets the heap the library chooses among the heaps
//!   discovery reports as charging (`Accounting::Memcg`), always flagged
//!   `accounted`, or, where none of those serves the tranche but some heap
//!   does, `tranche_no_heap` with reason `unaccounted` naming the heap the
//!   unsandboxed client got; where no heap serves, the same reason as the
//!   unsandboxed client.
//!
//! Nothing here says which heap charges: that is read from discovery, so the
//! test holds before and after the module charges sg heaps, and with or
//! without `dma_heap.mem_accounting`. It runs twice: in the boot state (the
//! device heaps of vkms, vgem and vivid.0 are contiguous), and with vivid.0
//! also served as a scatter-gather device through the module's `add` file for
//! the time of the test (the module then makes `system-32bit`, which charges). Every granted fd is checked to be the heap named (same device
//! number) and to allocate.

use std::{
    collections::HashMap,
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use heapland_allocator::{
    intersect, negotiation::device_constraints, resolve_devices, Accounting, DeviceNumber,
    Discovery, HeapInfo, HeapKind,
};
use heapland_protocols::client::{
    xx_dmabuf_heap_feedback_v1::{self, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1,
};
use wayland_client::{
    backend::ObjectId,
    globals::{registry_queue_init, GlobalList, GlobalListContents},
    protocol::wl_registry::WlRegistry,
    Connection, Dispatch, EventQueue, Proxy, QueueHandle,
};
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
/// The size the compositor chooses heaps for: a full XRGB8888 frame of its
/// 320x240 output where some heap holds one, else one page.
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

/// One heap tranche.
struct HeapTranche {
    target: u64,
    flags: u32,
    devices: Vec<u64>,
    heap: Result<Granted, (u32, String)>,
}

impl HeapTranche {
    fn describe(&self) -> String {
        match &self.heap {
            Ok(g) => format!("{} (flags {:#x})", g.name, g.flags),
            Err((reason, msg)) => format!("no_heap {reason}: {msg}"),
        }
    }
}

/// A linux-dmabuf batch being received.
#[derive(Default)]
struct DmabufPending {
    tranches: Vec<(u64, u32)>,
    target: u64,
    flags: u32,
}

/// What the client received, batch by batch.
#[derive(Default)]
struct Recorder {
    /// linux-dmabuf feedback: per object, completed batches of (target, flags).
    dmabuf: HashMap<ObjectId, Vec<Vec<(u64, u32)>>>,
    dmabuf_pending: HashMap<ObjectId, DmabufPending>,
    /// Heap feedback: per object, completed batches.
    heap: HashMap<ObjectId, Vec<Vec<HeapTranche>>>,
    heap_pending: HashMap<ObjectId, (Vec<HeapTranche>, Option<HeapTranche>)>,
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
        let stream =
            UnixStream::connect(path).map_err(|e| format!("{who}: connect {path:?}: {e}"))?;
        let conn = Connection::from_socket(stream).map_err(|e| format!("{who}: {e}"))?;
        let (globals, queue) =
            registry_queue_init::<Recorder>(&conn).map_err(|e| format!("{who}: registry: {e}"))?;
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
        self.globals
            .bind::<I, Recorder, ()>(&self.qh, version..=version, ())
            .map_err(|e| format!("{}: bind {}: {e}", self.who, I::interface().name))
    }

    fn roundtrip(&mut self) -> Result<(), String> {
        self.queue
            .roundtrip(&mut self.rec)
            .map(|_| ())
            .map_err(|e| format!("{}: roundtrip: {e}", self.who))
    }

    /// Roundtrips until both objects have `n` complete batches.
    fn wait_batches(&mut self, fid: &ObjectId, hid: &ObjectId, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let f = self.rec.dmabuf.get(fid).map_or(0, Vec::len);
            let h = self.rec.heap.get(hid).map_or(0, Vec::len);
            if f >= n && h >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: {f} linux-dmabuf and {h} heap batches, waited for {n}",
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
    let discovery = Discovery::scan();
    let mut comp = Heapland::start_with(&["--backend", "headless", "--output", "320x240@30"])?;
    let result = run_clients(label, &discovery, &mut comp);
    let alive = comp.alive();
    let stopped = comp.stop();
    result?;
    alive?;
    stopped
}

fn run_clients(label: &str, discovery: &Discovery, comp: &mut Heapland) -> Result<(), String> {
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

    // Default feedback on both protocols, for both clients.
    let mut objects = Vec::new();
    for c in [&mut normal, &mut sandboxed] {
        let dmabuf: ZwpLinuxDmabufV1 = c.bind(4)?;
        let heaps: XxDmabufHeapManagerV1 = c.bind(1)?;
        let fb = dmabuf.get_default_feedback(&c.qh, ());
        let hfb = heaps.get_default_feedback(&c.qh, ());
        c.wait_batches(&fb.id(), &hfb.id(), 1)?;
        objects.push((fb, hfb));
    }

    // Then the client's own devices: vkms's card, vivid's capture node.
    let vkms = drm_card::find("vkms", "card")?.path;
    let (vivid, _video) = v4l2::find_capture("vivid")?;
    let extra = [rdev(&vkms)?, rdev(&vivid)?];
    for (i, dev) in extra.iter().enumerate() {
        for (c, (_, hfb)) in [&mut normal, &mut sandboxed].into_iter().zip(&objects) {
            hfb.add_device(dev.to_ne_bytes().to_vec());
            let hid = hfb.id();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.rec.heap.get(&hid).map_or(0, Vec::len) < i + 2 {
                if Instant::now() > deadline {
                    return Err(format!("{}: no heap batch after add_device", c.who));
                }
                c.roundtrip()?;
            }
        }
    }
    comp.alive()?;

    let heaps: Vec<HeapInfo> = discovery
        .heaps()
        .iter()
        .filter(|h| h.kind != HeapKind::Udmabuf)
        .cloned()
        .collect();
    let accounted: Vec<HeapInfo> = heaps
        .iter()
        .filter(|h| h.properties.accounting == Accounting::Memcg)
        .cloned()
        .collect();
    let names = |v: &[HeapInfo]| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    println!(
        "INFO sandbox[{label}]: heaps {:?}, charging the allocator's memory cgroup {:?}",
        names(&heaps),
        names(&accounted)
    );

    let (nfb, nhfb) = &objects[0];
    let (sfb, shfb) = &objects[1];
    let n_dmabuf = normal.rec.dmabuf[&nfb.id()]
        .last()
        .cloned()
        .unwrap_or_default();
    let s_dmabuf = sandboxed.rec.dmabuf[&sfb.id()]
        .last()
        .cloned()
        .unwrap_or_default();
    let mut errs = Vec::new();
    if n_dmabuf != s_dmabuf {
        errs.push(format!(
            "linux-dmabuf tranches differ: unsandboxed {n_dmabuf:?}, sandboxed {s_dmabuf:?}"
        ));
    }
    let n_batches = &normal.rec.heap[&nhfb.id()];
    let s_batches = &sandboxed.rec.heap[&shfb.id()];
    if n_batches.len() != s_batches.len() {
        errs.push(format!(
            "{} heap batches unsandboxed, {} sandboxed",
            n_batches.len(),
            s_batches.len()
        ));
    }
    for (b, (nb, sb)) in n_batches.iter().zip(s_batches).enumerate() {
        let frame = |t: &[HeapTranche]| -> Vec<(u64, u32)> {
            t.iter().map(|t| (t.target, t.flags)).collect()
        };
        if frame(nb) != n_dmabuf || frame(sb) != n_dmabuf {
            errs.push(format!(
                "batch {b}: heap tranches {:?} / {:?} do not match linux-dmabuf {n_dmabuf:?}",
                frame(nb),
                frame(sb)
            ));
            continue;
        }
        for (i, (n, s)) in nb.iter().zip(sb).enumerate() {
            let at = format!("[{label}] batch {b} tranche {i}");
            if n.devices != s.devices {
                errs.push(format!(
                    "{at}: devices differ: {:?} / {:?}",
                    n.devices, s.devices
                ));
                continue;
            }
            println!(
                "INFO sandbox{at} devices {:?}: unsandboxed {}; sandboxed {}",
                n.devices,
                n.describe(),
                s.describe()
            );
            if let Err(e) = check_tranche(discovery, &heaps, &accounted, n, s) {
                errs.push(format!("{at}: {e}"));
            }
        }
    }
    drop((normal, sandboxed));
    let _ = std::fs::remove_file(&sandbox_path);
    super::all_ok(errs)
}

/// The heap a set of devices gets from `candidates`, by the library's
/// selection with the devices' needs read from every heap; `Err` if the
/// devices cannot be resolved.
fn library_choice(
    discovery: &Discovery,
    candidates: &[HeapInfo],
    devices: &[u64],
) -> Result<Option<String>, String> {
    let numbers: Vec<DeviceNumber> = devices
        .iter()
        .map(|d| DeviceNumber::from_dev_t(*d))
        .collect();
    let resolved = resolve_devices(discovery, &numbers).map_err(|e| e.to_string())?;
    let needs = intersect(&device_constraints(discovery, &resolved));
    let heaps: Vec<HeapInfo> = discovery
        .heaps()
        .iter()
        .filter(|h| h.kind != HeapKind::Udmabuf)
        .cloned()
        .collect();
    let size = if needs.select(&heaps, &resolved, FRAME_BYTES).is_ok() {
        FRAME_BYTES
    } else {
        PAGE_BYTES
    };
    Ok(needs
        .select(candidates, &resolved, size)
        .ok()
        .map(|h| h.name.clone()))
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

fn check_tranche(
    discovery: &Discovery,
    heaps: &[HeapInfo],
    accounted: &[HeapInfo],
    normal: &HeapTranche,
    sandboxed: &HeapTranche,
) -> Result<(), String> {
    let (all, acc) = match (
        library_choice(discovery, heaps, &normal.devices),
        library_choice(discovery, accounted, &normal.devices),
    ) {
        (Ok(all), Ok(acc)) => (all, acc),
        (Err(e), _) | (_, Err(e)) => {
            // Devices the allocator cannot resolve: unsatisfiable for everyone.
            for t in [normal, sandboxed] {
                if !matches!(&t.heap, Err((UNSATISFIABLE, _))) {
                    return Err(format!(
                        "devices do not resolve ({e}), yet {}",
                        t.describe()
                    ));
                }
            }
            return Ok(());
        }
    };
    let charges = |name: &str| {
        discovery
            .heap(name)
            .is_some_and(|h| h.properties.accounting == Accounting::Memcg)
    };

    // The unsandboxed client: the library's choice among every heap.
    match (&all, &normal.heap) {
        (Some(want), Ok(g)) if *want == g.name => {
            if (g.flags & ACCOUNTED != 0) != charges(&g.name) {
                return Err(format!(
                    "unsandboxed: {} flags {:#x}, but discovery says accounting {:?}",
                    g.name,
                    g.flags,
                    discovery.heap(&g.name).map(|h| h.properties.accounting)
                ));
            }
            check_fd(g)?;
        }
        (None, Err((reason, _))) if *reason == UNSATISFIABLE || *reason == NO_HEAPS => {}
        (want, _) => {
            return Err(format!(
                "unsandboxed: library chooses {want:?}, compositor sent {}",
                normal.describe()
            ))
        }
    }

    // The sandboxed client: the library's choice among charging heaps only.
    match (&acc, &sandboxed.heap) {
        (Some(want), Ok(g)) if *want == g.name => {
            if g.flags & ACCOUNTED == 0 || !charges(&g.name) {
                return Err(format!(
                    "sandboxed: handed {} (flags {:#x}), which does not charge",
                    g.name, g.flags
                ));
            }
            check_fd(g)
        }
        (None, Err((reason, message))) => match (&all, &normal.heap) {
            (Some(_), Ok(g)) => {
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
            (_, Err((theirs, _))) if theirs == reason => Ok(()),
            _ => Err(format!(
                "sandboxed: {} while unsandboxed: {}",
                sandboxed.describe(),
                normal.describe()
            )),
        },
        (want, _) => Err(format!(
            "sandboxed: library chooses {want:?} among charging heaps, compositor sent {}",
            sandboxed.describe()
        )),
    }
}

impl Dispatch<WlRegistry, GlobalListContents> for Recorder {
    fn event(
        _: &mut Self,
        _: &WlRegistry,
        _: <WlRegistry as Proxy>::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

macro_rules! ignore {
    ($($ty:ty),*) => {$(
        impl Dispatch<$ty, ()> for Recorder {
            fn event(_: &mut Self, _: &$ty, _: <$ty as Proxy>::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {}
        }
    )*};
}

ignore!(
    ZwpLinuxDmabufV1,
    XxDmabufHeapManagerV1,
    WpSecurityContextManagerV1,
    WpSecurityContextV1
);

fn dev_of(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(u64::MAX, u64::from_ne_bytes)
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        fb: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwp_linux_dmabuf_feedback_v1::Event;
        let pending = s.dmabuf_pending.entry(fb.id()).or_default();
        match e {
            Event::TrancheTargetDevice { device } => pending.target = dev_of(&device),
            Event::TrancheFlags { flags } => {
                pending.flags = flags.into_result().map(|f| f.bits()).unwrap_or(0)
            }
            Event::TrancheDone => {
                let t = (pending.target, pending.flags);
                pending.tranches.push(t);
                pending.flags = 0;
            }
            Event::Done => {
                let batch = std::mem::take(&mut pending.tranches);
                s.dmabuf.entry(fb.id()).or_default().push(batch);
            }
            _ => {}
        }
    }
}

impl Dispatch<XxDmabufHeapFeedbackV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        fb: &XxDmabufHeapFeedbackV1,
        e: xx_dmabuf_heap_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use xx_dmabuf_heap_feedback_v1::Event;
        let (tranches, cur) = s.heap_pending.entry(fb.id()).or_default();
        match e {
            Event::TrancheTarget {
                target_device,
                flags,
            } => {
                *cur = Some(HeapTranche {
                    target: dev_of(&target_device),
                    flags,
                    devices: Vec::new(),
                    heap: Err((u32::MAX, "neither tranche_heap nor tranche_no_heap".into())),
                })
            }
            Event::TrancheDevice { device } => {
                if let Some(t) = cur {
                    t.devices.push(dev_of(&device));
                }
            }
            Event::TrancheHeap {
                fd, name, flags, ..
            } => {
                if let Some(t) = cur {
                    t.heap = Ok(Granted {
                        fd,
                        name,
                        flags: flags.into(),
                    });
                }
            }
            Event::TrancheNoHeap { reason, message } => {
                if let Some(t) = cur {
                    t.heap = Err((reason.into(), message));
                }
            }
            Event::TrancheDone => {
                if let Some(t) = cur.take() {
                    tranches.push(t);
                }
            }
            Event::Done => {
                let batch = std::mem::take(tranches);
                s.heap.entry(fb.id()).or_default().push(batch);
            }
            _ => {}
        }
    }
}
