//! linux-dmabuf feedback (default and per-surface) and the heap protocol's
//! batches that mirror it, tranche for tranche.
//!
//! With a DRM render node, linux-dmabuf has feedback naming the render node
//! as main device; without one (the CI hosts), it is version 3 with no
//! feedback, and heap batches carry no tranche. Tests of tranches need a
//! render node and are ignored, with the reason, where there is none
//! (`tests/build.rs`); the guest phases run them on real devices.

mod common;

use std::time::Duration;

use common::{
    feedback_batches, heap_batches, host_has_heaps, rdev, render_node, Compositor, FbEvent,
    HeapEvent, Recorder,
};
use heapland_protocols::client::{
    xx_dmabuf_heap_feedback_v1::{Error as HeapError, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1,
};
use wayland_client::{backend::ObjectId, protocol::wl_compositor::WlCompositor, Proxy};
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1;

const XR24: u32 = u32::from_le_bytes(*b"XR24");

/// One tranche as linux-dmabuf describes it.
#[derive(Debug, PartialEq)]
struct DmabufTranche {
    target: u64,
    flags: u32,
    formats: Vec<(u32, u64)>,
}

/// main_device and tranches of the last complete linux-dmabuf batch.
fn dmabuf_batch(rec: &Recorder, id: &ObjectId) -> (u64, Vec<DmabufTranche>) {
    let events = &rec.feedback[id];
    let mut main = 0;
    let mut table = Vec::new();
    let mut tranches = Vec::new();
    let mut cur = DmabufTranche {
        target: 0,
        flags: 0,
        formats: vec![],
    };
    for e in events {
        match e {
            FbEvent::MainDevice(d) => main = *d,
            FbEvent::FormatTable(t) => table = t.clone(),
            FbEvent::TrancheTarget(d) => cur.target = *d,
            FbEvent::TrancheFlags(f) => cur.flags = *f,
            FbEvent::TrancheFormats(idx) => {
                cur.formats.extend(idx.iter().map(|i| table[*i as usize]))
            }
            FbEvent::TrancheDone => tranches.push(std::mem::replace(
                &mut cur,
                DmabufTranche {
                    target: 0,
                    flags: 0,
                    formats: vec![],
                },
            )),
            FbEvent::Done => {}
        }
    }
    (main, tranches)
}

/// One tranche as the heap protocol describes it.
#[derive(Debug)]
struct HeapTranche {
    target: u64,
    flags: u32,
    devices: Vec<u64>,
    /// tranche_layout was sent.
    layout: bool,
    /// Ok(heap name) or Err(no_heap reason).
    heap: Result<String, u32>,
}

/// Tranches of the last complete heap batch, checking the event grammar.
fn heap_batch(rec: &Recorder, id: &ObjectId) -> Vec<HeapTranche> {
    let events = &rec.heap[id];
    let last_done = events
        .iter()
        .rposition(|e| matches!(e, HeapEvent::Done))
        .expect("a complete batch");
    let start = events[..last_done]
        .iter()
        .rposition(|e| matches!(e, HeapEvent::Done))
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut cur: Option<HeapTranche> = None;
    for e in &events[start..last_done] {
        match e {
            HeapEvent::Target(t, f) => {
                assert!(cur.is_none(), "tranche_target inside a tranche");
                cur = Some(HeapTranche {
                    target: *t,
                    flags: *f,
                    devices: vec![],
                    layout: false,
                    heap: Err(u32::MAX),
                })
            }
            HeapEvent::Device(d) => cur
                .as_mut()
                .expect("device outside a tranche")
                .devices
                .push(*d),
            HeapEvent::Layout(pitch, offset, base) => {
                let t = cur.as_mut().expect("layout outside a tranche");
                assert!(
                    !t.devices.is_empty(),
                    "tranche_layout before tranche_device"
                );
                assert!(*pitch >= 1 && *offset >= 1, "alignments are at least 1");
                assert!(*base >= 4096, "heap buffers start at a page: {base}");
                t.layout = true;
            }
            HeapEvent::Heap { fd, name, .. } => {
                let st = rustix::fs::fstat(fd).expect("heap fd is open");
                assert!(
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::CharacterDevice,
                    "heap fd is not a character device"
                );
                cur.as_mut().expect("heap outside a tranche").heap = Ok(name.clone());
            }
            HeapEvent::NoHeap { reason, message } => {
                assert!(!message.is_empty(), "no_heap without an explanation");
                cur.as_mut().expect("no_heap outside a tranche").heap = Err(*reason);
            }
            HeapEvent::TrancheDone => {
                let t = cur.take().expect("tranche_done without tranche_target");
                assert_ne!(t.heap, Err(u32::MAX), "tranche without heap or no_heap");
                assert!(t.layout, "tranche without tranche_layout");
                out.push(t);
            }
            HeapEvent::Done => unreachable!(),
        }
    }
    assert!(cur.is_none(), "done inside an open tranche");
    out
}

fn check_heaps(heap: &[HeapTranche]) {
    for t in heap {
        if host_has_heaps() {
            assert!(t.heap.is_ok(), "heaps exist but tranche got none: {t:?}");
        } else {
            assert_eq!(
                t.heap,
                Err(0),
                "no heaps on this host: reason must be no_heaps"
            );
        }
    }
}

/// linux-dmabuf's version on this machine: 4 or more with a render node.
fn dmabuf_version(c: &common::Client) -> u32 {
    c.globals
        .contents()
        .with_list(|l| {
            l.iter()
                .find(|g| g.interface == "zwp_linux_dmabuf_v1")
                .map(|g| g.version)
        })
        .expect("zwp_linux_dmabuf_v1 advertised")
}

/// Without a render node: version 3 and a heap batch without tranches.
fn check_no_feedback() {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    assert_eq!(
        dmabuf_version(&c),
        3,
        "no device for main_device: no feedback"
    );
    let _dmabuf: ZwpLinuxDmabufV1 = c.bind(3);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let hfb = heaps.get_default_feedback(&c.qh, ());
    let hid = hfb.id();
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1
            && r.dmabuf_modifiers.contains(&(XR24, 0)))
    );
    let events = &c.rec.heap[&hid];
    assert!(
        events.len() == 1 && matches!(events[0], HeapEvent::Done),
        "linux-dmabuf has no tranche, so neither has the heap batch: {} events",
        events.len()
    );
}

/// With a render node: feedback whose tranches the heap batch mirrors.
fn check_feedback(render: u64) {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    assert!(dmabuf_version(&c) >= 4);
    let dmabuf: ZwpLinuxDmabufV1 = c.bind(4);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let fb = dmabuf.get_default_feedback(&c.qh, ());
    let hfb = heaps.get_default_feedback(&c.qh, ());
    let (fid, hid) = (fb.id(), hfb.id());
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| feedback_batches(r, &fid) == 1
            && heap_batches(r, &hid) == 1)
    );

    let (main, tranches) = dmabuf_batch(&c.rec, &fid);
    assert_eq!(main, render, "the main device is the render node");
    assert!(!tranches.is_empty());
    let last = tranches.last().unwrap();
    assert_eq!(last.target, main, "the last tranche is the main device's");
    assert!(
        last.formats.contains(&(XR24, 0)),
        "XRGB8888 LINEAR must be offered: {last:?}"
    );
    for t in &tranches {
        assert!(
            t.formats.iter().all(|(_, m)| *m == 0),
            "heaps only produce LINEAR buffers: {t:?}"
        );
        assert_eq!(t.flags & 1, 0, "headless has no scanout tranche");
    }

    let heap = heap_batch(&c.rec, &hid);
    assert_eq!(
        heap.len(),
        tranches.len(),
        "one heap tranche per linux-dmabuf tranche"
    );
    for (h, d) in heap.iter().zip(&tranches) {
        assert_eq!((h.target, h.flags), (d.target, d.flags));
        assert!(h.devices.contains(&main), "main device missing: {h:?}");
    }
    check_heaps(&heap);
}

#[test]
#[cfg_attr(
    not(host_render_node),
    ignore = "needs a DRM render node (the guest's compositor phase checks the same)"
)]
fn default_feedback_and_heap_tranches_line_up() {
    check_feedback(render_node().expect("a render node"));
}

#[test]
#[cfg_attr(host_render_node, ignore = "this host has a DRM render node")]
fn without_a_render_node_linux_dmabuf_is_version_3_and_heap_batches_empty() {
    check_no_feedback();
}

#[test]
#[cfg_attr(
    not(host_render_node),
    ignore = "needs a DRM render node for tranches (the guest's heap_feedback_v2 and session tests check add_device)"
)]
fn surface_feedback_follows_the_surface_and_add_device_resends() {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    let compositor: WlCompositor = c.bind(5);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let surface = compositor.create_surface(&c.qh, ());
    let hfb = heaps.get_surface_feedback(&surface, &c.qh, ());
    let hid = hfb.id();
    // linux-dmabuf's surface feedback.
    let dmabuf: ZwpLinuxDmabufV1 = c.bind(4);
    let fb = dmabuf.get_surface_feedback(&surface, &c.qh, ());
    let fid = fb.id();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| feedback_batches(r, &fid) >= 1));
    let dmabuf_tranches = dmabuf_batch(&c.rec, &fid).1.len();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1));
    let first = heap_batch(&c.rec, &hid);
    assert_eq!(first.len(), dmabuf_tranches);
    check_heaps(&first);

    // The client declares a device of its own: a new batch lists it in every tranche.
    let extra = rdev("/dev/null").expect("/dev/null");
    hfb.add_device(extra.to_ne_bytes().to_vec());
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 2));
    assert_eq!(heap_batches(&c.rec, &hid), 2);
    let second = heap_batch(&c.rec, &hid);
    assert_eq!(second.len(), first.len());
    for t in &second {
        assert!(t.devices.contains(&extra), "declared device missing: {t:?}");
    }
    if host_has_heaps() {
        // /dev/null is served by no device heap; only a heap serving any device fits.
        for t in &second {
            assert!(
                matches!(&t.heap, Ok(n) if n == "system") || t.heap == Err(1),
                "{t:?}"
            );
        }
    } else {
        check_heaps(&second);
    }

    // The same device again changes nothing but still answers with a batch.
    hfb.add_device(extra.to_ne_bytes().to_vec());
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 3));
    assert_eq!(heap_batches(&c.rec, &hid), 3);
    for t in heap_batch(&c.rec, &hid) {
        assert_eq!(t.devices.iter().filter(|d| **d == extra).count(), 1);
    }

    // Once the surface is gone the heap feedback is inert.
    surface.destroy();
    hfb.add_device(extra.to_ne_bytes().to_vec());
    c.roundtrip().expect("roundtrip");
    c.roundtrip().expect("roundtrip");
    assert_eq!(
        heap_batches(&c.rec, &hid),
        3,
        "inert feedback must not send"
    );
}

/// On every host: `add_device` answers with a batch, and a surface's heap
/// feedback whose surface is gone sends none.
#[test]
fn add_device_resends_and_a_gone_surfaces_feedback_is_inert() {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    let compositor: WlCompositor = c.bind(5);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let surface = compositor.create_surface(&c.qh, ());
    let hfb = heaps.get_surface_feedback(&surface, &c.qh, ());
    let hid = hfb.id();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 1));
    let extra = rdev("/dev/null").expect("/dev/null");
    hfb.add_device(extra.to_ne_bytes().to_vec());
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 2),
        "no batch after add_device"
    );
    assert_eq!(heap_batches(&c.rec, &hid), 2);
    surface.destroy();
    hfb.add_device(extra.to_ne_bytes().to_vec());
    c.roundtrip().expect("roundtrip");
    c.roundtrip().expect("roundtrip");
    assert_eq!(
        heap_batches(&c.rec, &hid),
        2,
        "a surface's heap feedback sent a batch after the surface was destroyed"
    );
}

fn bad_add_device(device: Vec<u8>, count: usize) {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut bystander = comp.connect();
    let bheaps: XxDmabufHeapManagerV1 = bystander.bind(1);
    let bfb = bheaps.get_default_feedback(&bystander.qh, ());
    let bid = bfb.id();
    assert!(bystander.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &bid) == 1));

    let mut c = comp.connect();
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let hfb: XxDmabufHeapFeedbackV1 = heaps.get_default_feedback(&c.qh, ());
    for _ in 0..count {
        hfb.add_device(device.clone());
    }
    c.expect_error(
        "xx_dmabuf_heap_feedback_v1",
        HeapError::InvalidDevice as u32,
    );
    comp.assert_alive();

    // The bystander is still served.
    bfb.add_device(0u64.to_ne_bytes().to_vec());
    assert!(bystander.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &bid) == 2));
}

#[test]
fn add_device_with_a_short_array_is_invalid_device() {
    bad_add_device(vec![1, 2, 3, 4], 1);
}

#[test]
fn add_device_with_an_empty_array_is_invalid_device() {
    bad_add_device(vec![], 1);
}

#[test]
fn add_device_beyond_the_limit_is_too_many_devices() {
    // 17 distinct devices; the limit is 16.
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let hfb: XxDmabufHeapFeedbackV1 = heaps.get_default_feedback(&c.qh, ());
    for i in 0..17u64 {
        hfb.add_device(rustix::fs::makedev(1, i as u32).to_ne_bytes().to_vec());
    }
    let msg = c.expect_error(
        "xx_dmabuf_heap_feedback_v1",
        HeapError::TooManyDevices as u32,
    );
    assert!(msg.contains("16"), "{msg}");
    comp.assert_alive();
    comp.connect().roundtrip().expect("others still served");
}

/// The heap a tranche gets is chosen for a full frame of the largest
/// output, so an output that changes size re-sends every heap batch (on
/// this host without heaps, a batch without tranches; what counts is that
/// it comes).
#[test]
fn an_output_mode_change_resends_heap_batches() {
    use wayland_protocols_wlr::output_management::v1::client::zwlr_output_manager_v1::ZwlrOutputManagerV1;
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let hfb = heaps.get_default_feedback(&c.qh, ());
    let hid = hfb.id();
    let manager: ZwlrOutputManagerV1 = c.bind(4);
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1
            && !r.output_heads.is_empty()
            && r.output_serial.is_some()),
        "no first heap batch or no output head"
    );
    let serial = c.rec.output_serial.expect("serial");
    let head = c.rec.output_heads[0].0.clone();
    let configuration = manager.create_configuration(serial, &c.qh, ());
    let configured = configuration.enable_head(&head, &c.qh, ());
    configured.set_custom_mode(640, 480, 0);
    configuration.apply();
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 2),
        "no heap batch after the output grew from 320x240 to 640x480"
    );
    assert_eq!(heap_batches(&c.rec, &hid), 2, "more than one re-sent batch");
    comp.assert_alive();
}
