//! `xx_dmabuf_heaps_v2` against heapland in the guest: a heap feedback
//! object extends one linux-dmabuf feedback object, its batches line up
//! with that object's `done` events tranche for tranche, heaps come once as
//! objects, and its errors are the protocol's.
//!
//! The events are recorded raw and checked here against the protocol text,
//! not parsed by the library whose server side they test.

use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use heapland_protocols::v2::client::{
    xx_dmabuf_heap_feedback_v2::{self, XxDmabufHeapFeedbackV2},
    xx_dmabuf_heap_manager_v2::{self, XxDmabufHeapManagerV2},
    xx_dmabuf_heap_v2::{self, XxDmabufHeapV2},
};
use wayland_client::{
    backend::ObjectId, globals::GlobalList, protocol::wl_buffer::WlBuffer, Connection, Dispatch,
    EventQueue, Proxy, QueueHandle,
};
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_buffer_params_v1::{self, Flags, ZwpLinuxBufferParamsV1},
    zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
    zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
};

use super::{
    compositor::{Heapland, RUNTIME_DIR, SOCKET, XR24},
    dma_heap, drm_card,
    session::dev_t_of,
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "heap_feedback_v2::batches_follow_the_linux_dmabuf_feedback_object",
            run: batches_follow_the_linux_dmabuf_feedback_object,
        },
        Test {
            name: "heap_feedback_v2::errors_are_the_protocols",
            run: errors_are_the_protocols,
        },
        Test {
            name:
                "heap_feedback_v2::linux_dmabuf_v6_flags_sampling_tranches_and_names_no_main_device",
            run: linux_dmabuf_v6_flags_sampling_tranches_and_names_no_main_device,
        },
        Test {
            name: "heap_feedback_v2::a_heap_made_and_removed_while_heapland_runs",
            run: a_heap_made_and_removed_while_heapland_runs,
        },
    ]
}

/// One tranche of a heap batch.
#[derive(Debug, Clone, PartialEq)]
struct Tranche {
    devices: Vec<u64>,
    layout: Option<(u32, u32, u32)>,
    /// Ok(the heap object's id), or Err((reason, message)).
    heap: Result<ObjectId, (u32, String)>,
}

/// One announced heap.
#[derive(Debug)]
struct Announced {
    fd: OwnedFd,
    name: String,
    flags: u32,
}

#[derive(Default)]
struct State {
    /// linux-dmabuf: `done` events so far, and tranches of the batch being
    /// read / of the last complete one.
    dmabuf_dones: u32,
    dmabuf_tranches: u32,
    dmabuf_last: Option<u32>,
    /// linux-dmabuf: `main_device` events so far, and (target, flags) of
    /// the tranches of the batch being read / of the last complete one.
    main_devices: Vec<u64>,
    dmabuf_reading: Vec<(u64, u32)>,
    dmabuf_flags_last: Vec<(u64, u32)>,
    target: u64,
    /// Heap feedback: announced heaps by object id (in order of announcement).
    heaps: HashMap<ObjectId, Announced>,
    announcements: Vec<ObjectId>,
    heap_objects: Vec<XxDmabufHeapV2>,
    current: Vec<Tranche>,
    tranche: Option<Tranche>,
    /// Complete batches: (dmabuf_done, tranches).
    batches: Vec<(u32, Vec<Tranche>)>,
    /// An event out of the protocol's order.
    grammar: Option<String>,
    created: Option<WlBuffer>,
    failed: bool,
    /// Heap objects that got `removed`, with how many batches had come
    /// before.
    removed: Vec<(ObjectId, usize)>,
}

impl State {
    fn tranche(&mut self) -> &mut Tranche {
        self.tranche.get_or_insert_with(|| Tranche {
            devices: Vec::new(),
            layout: None,
            heap: Err((u32::MAX, String::new())),
        })
    }
}

fn connect() -> Result<(Connection, GlobalList, EventQueue<State>), String> {
    heapland_test_client::connect(&Path::new(RUNTIME_DIR).join(SOCKET))
}

/// linux-dmabuf (version 4 or 5 unless told), the v2 manager, the default
/// linux-dmabuf feedback object and its heap feedback object.
struct Client {
    conn: Connection,
    queue: EventQueue<State>,
    st: State,
    dmabuf: ZwpLinuxDmabufV1,
    manager: XxDmabufHeapManagerV2,
    linux: ZwpLinuxDmabufFeedbackV1,
    heap_feedback: XxDmabufHeapFeedbackV2,
}

impl Client {
    fn new() -> Result<Client, String> {
        Client::at(4..=5)
    }

    /// As [`Client::new`], with linux-dmabuf bound at a version of `versions`.
    fn at(versions: std::ops::RangeInclusive<u32>) -> Result<Client, String> {
        let (conn, globals, queue) = connect()?;
        let qh = queue.handle();
        let dmabuf: ZwpLinuxDmabufV1 = globals
            .bind(&qh, versions.clone(), ())
            .map_err(|e| format!("bind zwp_linux_dmabuf_v1 at {versions:?}: {e}"))?;
        let manager: XxDmabufHeapManagerV2 = globals
            .bind(&qh, 1..=1, ())
            .map_err(|e| format!("bind xx_dmabuf_heap_manager_v2: {e}"))?;
        let linux = dmabuf.get_default_feedback(&qh, ());
        let heap_feedback = manager.get_heap_feedback(&linux, &qh, ());
        Ok(Client {
            conn,
            queue,
            st: State::default(),
            dmabuf,
            manager,
            linux,
            heap_feedback,
        })
    }

    /// Makes `fd` (a `w`x`h` XRGB8888 linear buffer) a linux-dmabuf buffer
    /// with `create`, meant for `sampling` when given (version 6); whether
    /// it was `created` (else `failed`).
    fn create_buffer(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        (w, h): (u32, u32),
        sampling: Option<u64>,
    ) -> Result<bool, String> {
        let qh = self.queue.handle();
        let params = self.dmabuf.create_params(&qh, ());
        params.add(fd, 0, 0, w * 4, 0, 0);
        if let Some(dev) = sampling.filter(|_| self.dmabuf.version() >= 6) {
            params.set_sampling_device(dev.to_ne_bytes().to_vec());
        }
        params.create(w as i32, h as i32, XR24, Flags::empty());
        self.st.created = None;
        self.st.failed = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.st.created.is_none() && !self.st.failed {
            self.queue
                .roundtrip(&mut self.st)
                .map_err(|e| format!("roundtrip: {e}"))?;
            if Instant::now() > deadline {
                return Err("neither created nor failed in 20 s".into());
            }
        }
        Ok(!self.st.failed)
    }

    /// Reads events until `batches` heap batches came (or the connection
    /// died: its protocol error).
    fn batches(&mut self, batches: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.st.batches.len() < batches {
            self.queue
                .roundtrip(&mut self.st)
                .map_err(|e| format!("roundtrip: {e} ({:?})", self.conn.protocol_error()))?;
            if let Some(g) = &self.st.grammar {
                return Err(g.clone());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} heap batches in 20 s, waited for {batches}",
                    self.st.batches.len()
                ));
            }
        }
        Ok(())
    }
}

fn batches_follow_the_linux_dmabuf_feedback_object() -> Result<(), String> {
    let comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let mut c = Client::new()?;
    c.batches(1)?;
    let (done, first) = c.st.batches[0].clone();
    if c.st.dmabuf_dones != 1 || done != 1 {
        return Err(format!(
            "the first batch says dmabuf_done {done}; linux-dmabuf sent {} done events",
            c.st.dmabuf_dones
        ));
    }
    if Some(first.len() as u32) != c.st.dmabuf_last {
        return Err(format!(
            "{} heap tranches for {:?} linux-dmabuf tranches",
            first.len(),
            c.st.dmabuf_last
        ));
    }
    let Some(Ok(heap_id)) = first.first().map(|t| t.heap.clone()) else {
        return Err(format!("the first tranche has no heap: {first:?}"));
    };
    let Some(heap) = c.st.heaps.get(&heap_id) else {
        return Err(format!(
            "tranche_heap refers to {heap_id}, which was not announced first"
        ));
    };
    let announced = c.st.announcements.len();
    let names = announced_once(&c.st)?;
    let heap_name = heap.name.clone();
    println!(
        "INFO heap_feedback_v2: {} tranche(s), first from {heap_name} (flags {:#x}); heaps announced: {names:?}",
        first.len(),
        heap.flags
    );

    // The heap's fd allocates, and the buffer is a linux-dmabuf buffer.
    let (w, h) = (64u32, 64u32);
    let buffer = dma_heap::alloc(heap.fd.as_fd(), u64::from(w * h * 4))
        .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC on {heap_name}'s announced fd: {e}"))?;
    if !c.create_buffer(buffer.as_fd(), (w, h), None)? {
        return Err(format!(
            "a buffer from {heap_name}'s announced fd got `failed`"
        ));
    }

    // add_device: another batch for the same (first) feedback, listing the
    // device in every tranche; the heaps it had are not announced again.
    let vgem = dev_t_of(&drm_card::find("vgem", "renderD")?.path)?;
    c.heap_feedback.add_device(vgem.to_ne_bytes().to_vec());
    c.batches(2)?;
    let (done, added) = c.st.batches[1].clone();
    if done != 1 || added.len() != first.len() {
        return Err(format!(
            "after add_device: dmabuf_done {done} (want 1), {} tranches (want {})",
            added.len(),
            first.len()
        ));
    }
    if let Some(t) = added.iter().find(|t| !t.devices.contains(&vgem)) {
        return Err(format!(
            "after add_device({vgem:#x}) a tranche does not list it: {t:?}"
        ));
    }
    let same_heaps = added
        .iter()
        .zip(&first)
        .all(|(a, f)| a.heap.is_err() || a.heap == f.heap);
    if same_heaps && c.st.announcements.len() != announced {
        return Err(format!(
            "the same heaps were announced again after add_device: {:?}",
            c.st.announcements
        ));
    }
    announced_once(&c.st)?;

    // remove_device: a batch without it.
    c.heap_feedback.remove_device(vgem.to_ne_bytes().to_vec());
    c.batches(3)?;
    let (done, removed) = c.st.batches[2].clone();
    if done != 1 || removed != first {
        return Err(format!(
            "after remove_device the batch is not the first again: dmabuf_done {done}, {removed:?} against {first:?}"
        ));
    }
    announced_once(&c.st)?;
    // Still one linux-dmabuf done: the heap protocol sent batches, not
    // linux-dmabuf feedback.
    if c.st.dmabuf_dones != 1 {
        return Err(format!(
            "linux-dmabuf sent {} done events on a default feedback object",
            c.st.dmabuf_dones
        ));
    }
    println!(
        "INFO heap_feedback_v2: add_device and remove_device answered with batches for dmabuf_done 1, heaps announced once"
    );
    drop(c);
    comp.stop()
}

/// The module's scattered heap for vivid.0's 32-bit reach, which vgem links
/// to as well once both are served with ":sg" (module `sg`).
const SG_HEAP: &str = "system-32bit";

/// Entries written to device_heap's `add`, removed again on drop.
struct Served(Vec<String>);

impl Served {
    fn add(&mut self, device: &str, backing: &str) -> Result<(), String> {
        let spec = dma_heap::spec(device, Some(backing))?;
        dma_heap::control("add", &spec)?;
        self.0.push(spec);
        Ok(())
    }

    fn remove(&mut self, device: &str, backing: &str) -> Result<(), String> {
        let spec = dma_heap::spec(device, Some(backing))?;
        self.0.retain(|s| *s != spec);
        dma_heap::control("remove", &spec)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for spec in self.0.drain(..) {
            if let Err(e) = dma_heap::control("remove", &spec) {
                println!("INFO heap_feedback_v2: cleaning up: {e}");
            }
        }
    }
}

impl Client {
    /// Reads events until the last batch satisfies `done` (or 20 s pass).
    fn batch_until(
        &mut self,
        what: &str,
        done: impl Fn(&State, &[Tranche]) -> bool,
    ) -> Result<Vec<Tranche>, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((_, last)) = self.st.batches.last() {
                if done(&self.st, last) {
                    return Ok(last.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no batch {what} in 20 s; batches: {:?}",
                    self.st.batches
                ));
            }
            self.batches(self.st.batches.len() + 1)?;
        }
    }
}

/// A heap made while heapland runs reaches a client in a new batch, as a
/// new heap object, once every device of the tranche links to it; taken
/// away, the client gets `removed` before the next batch, which does not
/// name it, and may destroy the object.
///
/// The tranches are vgem's (the render node) with vivid.0 and vkms added.
/// Serving vgem and vivid.0 with ":sg" makes SG_HEAP, which vkms does not
/// link to yet (a batch without it: the heaps changed). Serving vkms with
/// ":sg" makes no heap, only links: that batch comes from the module's
/// DMA_HEAPS uevent on vkms alone.
fn a_heap_made_and_removed_while_heapland_runs() -> Result<(), String> {
    if Path::new(dma_heap::CLASS).join(SG_HEAP).exists() {
        return Err(format!("{SG_HEAP} exists before the test makes it"));
    }
    let comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let mut c = Client::new()?;
    c.batches(1)?;
    let vivid = dev_t_of(&super::heaps_command::node_of(
        "video4linux",
        "video",
        "vivid.0",
    )?)?;
    let vkms = dev_t_of(&drm_card::find("vkms", "card")?.path)?;
    c.heap_feedback.add_device(vivid.to_ne_bytes().to_vec());
    c.heap_feedback.add_device(vkms.to_ne_bytes().to_vec());
    let before = c.batch_until("listing vivid.0 and vkms", |_, tranches| {
        tranches
            .iter()
            .all(|t| t.devices.contains(&vivid) && t.devices.contains(&vkms))
    })?;
    let named = |st: &State, t: &Tranche| -> Option<String> {
        t.heap
            .as_ref()
            .ok()
            .and_then(|id| st.heaps.get(id))
            .map(|h| h.name.clone())
    };
    let names_before: Vec<Option<String>> = before.iter().map(|t| named(&c.st, t)).collect();
    if names_before.iter().any(|n| n.as_deref() == Some(SG_HEAP)) {
        return Err(format!(
            "{SG_HEAP} named before it exists: {names_before:?}"
        ));
    }

    // A heap made: a batch (the heaps changed), without it (vkms does not
    // link to it).
    let mut served = Served(Vec::new());
    let batches = c.st.batches.len();
    served.add("vgem", "sg")?;
    served.add("vivid.0", "sg")?;
    if !Path::new(dma_heap::CLASS).join(SG_HEAP).exists() {
        return Err(format!("{SG_HEAP} was not made"));
    }
    let unlinked = c.batch_until(&format!("after {SG_HEAP} was made"), |st, _| {
        st.batches.len() > batches
    })?;
    let names_unlinked: Vec<Option<String>> = unlinked.iter().map(|t| named(&c.st, t)).collect();
    if names_unlinked != names_before {
        return Err(format!(
            "with {SG_HEAP} made but not linked from vkms, the tranches' heaps are {names_unlinked:?}, before {names_before:?}"
        ));
    }

    // Links only: vkms gathers pages too and links to SG_HEAP.
    served.add("vkms", "sg")?;
    let made = c.batch_until(&format!("naming {SG_HEAP}"), |st, tranches| {
        tranches
            .iter()
            .any(|t| named(st, t).as_deref() == Some(SG_HEAP))
    })?;
    let heap_id = made
        .iter()
        .find(|t| named(&c.st, t).as_deref() == Some(SG_HEAP))
        .and_then(|t| t.heap.clone().ok())
        .ok_or("no tranche with the heap")?;
    announced_once(&c.st)?;
    let batches_made = c.st.batches.len();
    println!(
        "INFO heap_feedback_v2: {SG_HEAP} made: a batch without it until vkms linked to it, then batch {batches_made} names it (before: {names_before:?})"
    );

    // Taken away: `removed`, then a batch without it.
    served.remove("vivid.0", "sg")?;
    let after = c.batch_until("after the removal", |st, _| {
        st.removed.iter().any(|(id, _)| *id == heap_id) && st.batches.len() > batches_made
    })?;
    if c.st.removed.len() != 1 {
        return Err(format!(
            "`removed` for other heaps than {SG_HEAP}: {:?}",
            c.st.removed
        ));
    }
    let removed_at = c.st.removed[0].1;
    // Batches until `removed` still name it; none after.
    for (i, (_, tranches)) in c.st.batches.iter().enumerate().skip(batches_made - 1) {
        let names_it = tranches.iter().any(|t| t.heap.as_ref() == Ok(&heap_id));
        if names_it != (i < removed_at) {
            return Err(format!(
                "batch {} (of {}) {} the heap, `removed` came after {removed_at} batches",
                i + 1,
                c.st.batches.len(),
                if names_it { "names" } else { "does not name" }
            ));
        }
    }
    let names_after: Vec<Option<String>> = after.iter().map(|t| named(&c.st, t)).collect();
    if names_after != names_before {
        return Err(format!(
            "after the removal the tranches' heaps are {names_after:?}, before it {names_before:?}"
        ));
    }
    let fd = &c.st.heaps[&heap_id].fd;
    match dma_heap::alloc(fd.as_fd(), 4096) {
        Err(rustix::io::Errno::NODEV) => {}
        other => {
            return Err(format!(
                "allocation through the removed heap's fd: {other:?}, expected ENODEV"
            ))
        }
    }
    // A removed heap's object may be destroyed: no in_use error.
    c.st.heap_objects
        .iter()
        .find(|h| h.id() == heap_id)
        .ok_or("the removed heap's object is not among those announced")?
        .destroy();
    c.queue.roundtrip(&mut c.st).map_err(|e| {
        format!(
            "after destroying the removed heap: {e} ({:?})",
            c.conn.protocol_error()
        )
    })?;
    println!(
        "INFO heap_feedback_v2: {SG_HEAP} removed: `removed` after batch {removed_at}, then a batch with {names_after:?}; its fd gets ENODEV"
    );
    drop(served);
    drop(c);
    comp.stop()
}

/// The names of the heaps announced, each once.
fn announced_once(st: &State) -> Result<Vec<String>, String> {
    let names: Vec<String> = st
        .announcements
        .iter()
        .filter_map(|id| st.heaps.get(id))
        .map(|h| h.name.clone())
        .collect();
    if names
        .iter()
        .enumerate()
        .any(|(i, n)| names[..i].contains(n))
    {
        return Err(format!("a heap announced twice: {names:?}"));
    }
    Ok(names)
}

/// The protocol error of one request on a fresh client (linux-dmabuf at
/// a version of `versions`), as `(interface, code)`.
fn error_at(
    versions: std::ops::RangeInclusive<u32>,
    request: impl FnOnce(&mut Client),
) -> Result<(String, u32), String> {
    let mut c = Client::at(versions)?;
    c.batches(1)?;
    request(&mut c);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Err(e) = c.queue.roundtrip(&mut c.st) {
            return match c.conn.protocol_error() {
                Some(p) => Ok((p.object_interface, p.code)),
                None => Err(format!("connection lost without a protocol error: {e}")),
            };
        }
        if Instant::now() > deadline {
            return Err("no protocol error in 20 s".into());
        }
    }
}

/// What a request is, the request, and the protocol error it must get.
type ErrorCase = (
    &'static str,
    Box<dyn FnOnce(&mut Client)>,
    (&'static str, u32),
);

fn errors_are_the_protocols() -> Result<(), String> {
    let comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let cases: [ErrorCase; 4] = [
        (
            "a second get_heap_feedback for one feedback object",
            Box::new(|c: &mut Client| {
                let qh = c.queue.handle();
                let _ = c.manager.get_heap_feedback(&c.linux, &qh, ());
            }),
            (
                "xx_dmabuf_heap_manager_v2",
                xx_dmabuf_heap_manager_v2::Error::HeapFeedbackExists as u32,
            ),
        ),
        (
            "a heap destroyed while its heap feedback object lives",
            Box::new(|c: &mut Client| {
                if let Some(heap) = c.st.heap_objects.first() {
                    heap.destroy();
                }
            }),
            ("xx_dmabuf_heap_v2", xx_dmabuf_heap_v2::Error::InUse as u32),
        ),
        (
            "add_device with 3 bytes",
            Box::new(|c: &mut Client| c.heap_feedback.add_device(vec![1, 2, 3])),
            (
                "xx_dmabuf_heap_feedback_v2",
                xx_dmabuf_heap_feedback_v2::Error::InvalidDevice as u32,
            ),
        ),
        (
            "17 devices added",
            Box::new(|c: &mut Client| {
                for dev in 1..=17u64 {
                    c.heap_feedback.add_device(dev.to_ne_bytes().to_vec());
                }
            }),
            (
                "xx_dmabuf_heap_feedback_v2",
                xx_dmabuf_heap_feedback_v2::Error::TooManyDevices as u32,
            ),
        ),
    ];
    for (what, request, (interface, code)) in cases {
        let got = error_at(4..=5, request)?;
        // A destroyed object's error may come without its interface (the
        // client library has forgotten it).
        if got.1 != code || (got.0 != interface && !got.0.is_empty()) {
            return Err(format!(
                "{what}: protocol error {got:?}, want {interface} error {code}"
            ));
        }
    }
    // A destroyed heap feedback object frees its slot: a new one is no error.
    let mut c = Client::new()?;
    c.batches(1)?;
    c.heap_feedback.destroy();
    let qh = c.queue.handle();
    c.heap_feedback = c.manager.get_heap_feedback(&c.linux, &qh, ());
    c.st.batches.clear();
    c.batches(1)?;
    // Heap objects may go once their heap feedback object has.
    c.heap_feedback.destroy();
    for heap in std::mem::take(&mut c.st.heap_objects) {
        heap.destroy();
    }
    c.queue
        .roundtrip(&mut c.st)
        .map_err(|e| format!("destroying heaps after their heap feedback object: {e}"))?;
    println!("INFO heap_feedback_v2: heap_feedback_exists, in_use, invalid_device and too_many_devices posted; a destroyed heap feedback object can be replaced, and its heaps then destroyed");
    drop(c);
    comp.stop()
}

/// `zwp_linux_dmabuf_feedback_v1.tranche_flags`: scanout, and sampling
/// (version 6).
const SCANOUT: u32 = 1;
const SAMPLING: u32 = 2;

fn linux_dmabuf_v6_flags_sampling_tranches_and_names_no_main_device() -> Result<(), String> {
    let comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let mut old = Client::at(4..=4)?;
    old.batches(1)?;
    let mut c = Client::at(6..=6)?;
    c.batches(1)?;
    if c.dmabuf.version() != 6 {
        return Err(format!(
            "linux-dmabuf bound at {}, not 6",
            c.dmabuf.version()
        ));
    }
    // Version 4: one main_device, no sampling flag (it does not exist there).
    let [main] = old.st.main_devices[..] else {
        return Err(format!(
            "a version 4 feedback object got main_device {:x?}, want one",
            old.st.main_devices
        ));
    };
    if let Some(t) = old
        .st
        .dmabuf_flags_last
        .iter()
        .find(|(_, f)| f & !SCANOUT != 0)
    {
        return Err(format!(
            "version 4 got a tranche with flags {:#x}: {t:x?}",
            t.1
        ));
    }
    // Version 6: no main_device, a flag on every tranche, the main
    // device's tranches sampling, at least one of them.
    if !c.st.main_devices.is_empty() {
        return Err(format!(
            "a version 6 feedback object got main_device {:x?}",
            c.st.main_devices
        ));
    }
    let tranches = c.st.dmabuf_flags_last.clone();
    if let Some(t) = tranches.iter().find(|(_, f)| *f == 0) {
        return Err(format!(
            "a version 6 tranche without a flag: {t:x?} in {tranches:x?}"
        ));
    }
    let sampling: Vec<u64> = tranches
        .iter()
        .filter(|(_, f)| f & SAMPLING != 0)
        .map(|(d, _)| *d)
        .collect();
    if sampling.is_empty() || sampling.iter().any(|d| *d != main) {
        return Err(format!(
            "version 6 sampling tranches target {sampling:x?}; version 4's main device is {main:#x}"
        ));
    }
    if old.st.dmabuf_flags_last.len() != tranches.len() {
        return Err(format!(
            "version 4 got {} tranches, version 6 {}",
            old.st.dmabuf_flags_last.len(),
            tranches.len()
        ));
    }
    // The heap batch of a version 6 feedback object: one tranche per
    // linux-dmabuf tranche, each with a heap.
    let (done, batch) = c.st.batches[0].clone();
    if done != 1 || batch.len() != tranches.len() {
        return Err(format!(
            "heap batch for dmabuf_done {done} with {} tranches, linux-dmabuf sent {}",
            batch.len(),
            tranches.len()
        ));
    }
    if let Some(t) = batch.iter().find(|t| t.heap.is_err()) {
        return Err(format!("a version 6 tranche without a heap: {t:?}"));
    }
    let Ok(heap_id) = batch[0].heap.clone() else {
        return Err("unreachable: checked above".into());
    };
    let heap =
        c.st.heaps
            .get(&heap_id)
            .ok_or_else(|| format!("tranche_heap {heap_id} was not announced"))?;

    // A buffer from that heap, for the sampling device, is created.
    let (w, h) = (64u32, 64u32);
    let buffer = dma_heap::alloc(heap.fd.as_fd(), u64::from(w * h * 4))
        .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC on {}'s fd: {e}", heap.name))?;
    if !c.create_buffer(buffer.as_fd(), (w, h), Some(main))? {
        return Err("a version 6 buffer with set_sampling_device got `failed`".into());
    }

    // A dev_t of the wrong size, too short or too long, is
    // invalid_dev_t_size.
    let want = zwp_linux_buffer_params_v1::Error::InvalidDevTSize as u32;
    for bytes in [4, 16] {
        let got = error_at(6..=6, |c| {
            let qh = c.queue.handle();
            let params = c.dmabuf.create_params(&qh, ());
            params.set_sampling_device(vec![0; bytes]);
        })?;
        if got != ("zwp_linux_buffer_params_v1".to_string(), want) {
            return Err(format!(
                "a {bytes}-byte set_sampling_device got {got:?}, want invalid_dev_t_size ({want})"
            ));
        }
    }
    println!(
        "INFO heap_feedback_v2: linux-dmabuf v6: {} tranche(s) {tranches:x?}, no main_device, sampling on {main:#x} (v4's main device), a heap on each; set_sampling_device buffer created; a 4- or 16-byte dev_t is invalid_dev_t_size",
        tranches.len()
    );
    drop(c);
    drop(old);
    comp.stop()
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for State {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwp_linux_dmabuf_feedback_v1::Event;
        let dev = |d: &[u8]| {
            <[u8; 8]>::try_from(d)
                .map(u64::from_ne_bytes)
                .unwrap_or(u64::MAX)
        };
        match e {
            Event::MainDevice { device } => s.main_devices.push(dev(&device)),
            Event::TrancheTargetDevice { device } => s.target = dev(&device),
            Event::TrancheFlags { flags } => {
                let flags = match flags {
                    wayland_client::WEnum::Value(f) => f.bits(),
                    wayland_client::WEnum::Unknown(raw) => raw,
                };
                s.dmabuf_reading.push((s.target, flags));
            }
            Event::TrancheDone => s.dmabuf_tranches += 1,
            Event::Done => {
                s.dmabuf_dones += 1;
                s.dmabuf_last = Some(std::mem::take(&mut s.dmabuf_tranches));
                s.dmabuf_flags_last = std::mem::take(&mut s.dmabuf_reading);
            }
            _ => {}
        }
    }
}

impl Dispatch<XxDmabufHeapFeedbackV2, ()> for State {
    fn event(
        s: &mut Self,
        _: &XxDmabufHeapFeedbackV2,
        e: xx_dmabuf_heap_feedback_v2::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use xx_dmabuf_heap_feedback_v2::Event;
        match e {
            Event::Heap {
                id,
                fd,
                name,
                flags,
                ..
            } => {
                let flags = flags.into();
                s.announcements.push(id.id());
                s.heap_objects.push(id.clone());
                s.heaps.insert(id.id(), Announced { fd, name, flags });
            }
            Event::TrancheDevice { device } => match <[u8; 8]>::try_from(device.as_slice()) {
                Ok(b) => s.tranche().devices.push(u64::from_ne_bytes(b)),
                Err(_) => s.grammar = Some(format!("tranche_device of {} bytes", device.len())),
            },
            Event::TrancheLayout {
                pitch_alignment,
                offset_alignment,
                base_alignment,
            } => {
                s.tranche().layout = Some((pitch_alignment, offset_alignment, base_alignment));
            }
            Event::TrancheHeap { heap } => s.tranche().heap = Ok(heap.id()),
            Event::TrancheNoHeap { reason, message } => {
                s.tranche().heap = Err((reason.into(), message));
            }
            Event::TrancheDone => {
                let t = s.tranche.take().unwrap_or_else(|| Tranche {
                    devices: Vec::new(),
                    layout: None,
                    heap: Err((u32::MAX, String::new())),
                });
                if t.layout.is_none() || t.heap == Err((u32::MAX, String::new())) {
                    s.grammar = Some(format!(
                        "a tranche without tranche_layout or without tranche_heap/no_heap: {t:?}"
                    ));
                }
                s.current.push(t);
            }
            Event::Done { dmabuf_done } => {
                if s.tranche.is_some() {
                    s.grammar = Some("done inside a tranche".into());
                }
                let tranches = std::mem::take(&mut s.current);
                s.batches.push((dmabuf_done, tranches));
            }
            _ => {}
        }
    }

    wayland_client::event_created_child!(State, XxDmabufHeapFeedbackV2, [
        xx_dmabuf_heap_feedback_v2::EVT_HEAP_OPCODE => (XxDmabufHeapV2, ()),
    ]);
}

impl Dispatch<ZwpLinuxBufferParamsV1, ()> for State {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxBufferParamsV1,
        e: zwp_linux_buffer_params_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwp_linux_buffer_params_v1::Event::Created { buffer } => s.created = Some(buffer),
            zwp_linux_buffer_params_v1::Event::Failed => s.failed = true,
            _ => {}
        }
    }

    wayland_client::event_created_child!(State, ZwpLinuxBufferParamsV1, [
        zwp_linux_buffer_params_v1::EVT_CREATED_OPCODE => (WlBuffer, ()),
    ]);
}

impl Dispatch<XxDmabufHeapV2, ()> for State {
    fn event(
        s: &mut Self,
        heap: &XxDmabufHeapV2,
        e: xx_dmabuf_heap_v2::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xx_dmabuf_heap_v2::Event::Removed = e {
            s.removed.push((heap.id(), s.batches.len()));
        }
    }
}

heapland_test_client::registry_events!(State);
heapland_test_client::ignore_events!(
    State: ZwpLinuxDmabufV1,
    XxDmabufHeapManagerV2,
    WlBuffer
);
