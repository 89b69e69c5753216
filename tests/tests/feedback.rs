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
    feedback_batches, heap_batch, heap_batches, host_has_heaps, rdev, render_node, Compositor,
};
use heapland_allocator::{feedback_client::JoinedTranche, DeviceNumber};
use heapland_protocols::client::{
    xx_dmabuf_heap_feedback_v1::{Error as HeapError, NoHeapReason, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1,
};
use wayland_client::{protocol::wl_compositor::WlCompositor, Proxy};
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1;

const XR24: u32 = u32::from_le_bytes(*b"XR24");

/// Every tranche has a heap where the host has heaps, else `no_heaps`; a
/// heap's fd is a character device.
fn check_heaps(tranches: &[JoinedTranche]) {
    for t in tranches {
        match &t.heap {
            Ok(heap) if host_has_heaps() => {
                let st = rustix::fs::fstat(&heap.fd).expect("heap fd is open");
                assert_eq!(
                    rustix::fs::FileType::from_raw_mode(st.st_mode),
                    rustix::fs::FileType::CharacterDevice,
                    "heap fd of {} is not a character device",
                    heap.name
                );
            }
            Ok(heap) => panic!("no heaps on this host, yet {} was handed out", heap.name),
            Err(no) if host_has_heaps() => panic!("heaps exist but tranche got none: {no:?}"),
            Err(no) => assert_eq!(
                no.reason,
                Some(NoHeapReason::NoHeaps),
                "no heaps on this host: the reason must be no_heaps ({})",
                no.message
            ),
        }
        assert!(
            t.layout.pitch_alignment >= 1 && t.layout.offset_alignment >= 1,
            "alignments are at least 1: {:?}",
            t.layout
        );
        assert!(
            t.layout.base_alignment >= 4096,
            "heap buffers start at a page: {:?}",
            t.layout
        );
    }
}

/// Without a render node: version 3 and a heap batch without tranches.
fn check_no_feedback() {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    assert_eq!(
        c.dmabuf_version(),
        3,
        "no device for main_device: no feedback"
    );
    // Version 3 lists its formats as `modifier` events.
    let _dmabuf: ZwpLinuxDmabufV1 = c.bind(3);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let scope = c.heap_scope(&heaps, None);
    assert!(scope.dmabuf.is_none());
    let hid = scope.heap.id();
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1
            && r.dmabuf_modifiers.contains(&(XR24, 0))),
        "no heap batch, or XRGB8888 LINEAR not offered by linux-dmabuf version 3"
    );
    let joined = heap_batch(&c.rec, &hid);
    assert!(
        joined.main_device.is_none() && joined.tranches.is_empty(),
        "linux-dmabuf has no tranche, so neither has the heap batch: {joined:?}"
    );
}

/// With a render node: feedback whose tranches the heap batch describes
/// (the collector joins them only if it does).
fn check_feedback(render: u64) {
    let comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    assert!(c.dmabuf_version() >= 4);
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let scope = c.heap_scope(&heaps, None);
    let hid = scope.heap.id();
    let fid = scope.dmabuf.expect("linux-dmabuf feedback").id();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1));
    assert_eq!(feedback_batches(&c.rec, &fid), 1, "one linux-dmabuf batch");

    let joined = heap_batch(&c.rec, &hid);
    let main = DeviceNumber::from_dev_t(render);
    assert_eq!(
        joined.main_device,
        Some(main),
        "the main device is the render node"
    );
    let last = joined.tranches.last().expect("a tranche");
    assert_eq!(
        last.target_device, main,
        "the last tranche is the main device's"
    );
    for t in &joined.tranches {
        assert!(
            t.formats.iter().all(|f| f.modifier == 0),
            "heaps only produce LINEAR buffers: {t:?}"
        );
        assert!(!t.scanout, "headless has no scanout tranche");
        assert!(t.devices.contains(&main), "main device missing: {t:?}");
    }
    assert!(
        last.formats
            .iter()
            .any(|f| f.format == XR24 && f.modifier == 0),
        "XRGB8888 LINEAR must be offered: {last:?}"
    );
    check_heaps(&joined.tranches);
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
    let scope = c.heap_scope(&heaps, Some(&surface));
    let (hfb, hid) = (scope.heap.clone(), scope.heap.id());
    let fid = scope.dmabuf.expect("linux-dmabuf feedback").id();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1));
    assert_eq!(feedback_batches(&c.rec, &fid), 1);
    let first = heap_batch(&c.rec, &hid);
    assert!(!first.tranches.is_empty());
    check_heaps(&first.tranches);
    let first_len = first.tranches.len();

    // The client declares a device of its own: a new batch lists it in every tranche.
    let extra = DeviceNumber::from_dev_t(rdev("/dev/null").expect("/dev/null"));
    hfb.add_device(extra.to_dev_t().to_ne_bytes().to_vec());
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 2));
    assert_eq!(heap_batches(&c.rec, &hid), 2);
    let second = heap_batch(&c.rec, &hid);
    assert_eq!(second.tranches.len(), first_len);
    for t in &second.tranches {
        assert!(t.devices.contains(&extra), "declared device missing: {t:?}");
    }
    if host_has_heaps() {
        // /dev/null is served by no device heap; only a heap serving any device fits.
        for t in &second.tranches {
            assert!(
                matches!(&t.heap, Ok(h) if h.name == "system")
                    || matches!(&t.heap, Err(no) if no.reason == Some(NoHeapReason::Unsatisfiable)),
                "{t:?}"
            );
        }
    } else {
        check_heaps(&second.tranches);
    }

    // The same device again changes nothing but still answers with a batch.
    hfb.add_device(extra.to_dev_t().to_ne_bytes().to_vec());
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 3));
    assert_eq!(heap_batches(&c.rec, &hid), 3);
    for t in &heap_batch(&c.rec, &hid).tranches {
        assert_eq!(t.devices.iter().filter(|d| **d == extra).count(), 1);
    }

    // Once the surface is gone the heap feedback is inert.
    surface.destroy();
    hfb.add_device(extra.to_dev_t().to_ne_bytes().to_vec());
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
    let hfb = c.heap_scope(&heaps, Some(&surface)).heap;
    let hid = hfb.id();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 1));
    let extra = rdev("/dev/null").expect("/dev/null");
    hfb.add_device(extra.to_ne_bytes().to_vec());
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) >= 2),
        "no batch after add_device"
    );
    assert_eq!(heap_batches(&c.rec, &hid), 2);
    heap_batch(&c.rec, &hid);
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
    let bfb = bystander.heap_scope(&bheaps, None).heap;
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
    heap_batch(&bystander.rec, &bid);
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
    let hid = c.heap_scope(&heaps, None).heap.id();
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
    heap_batch(&c.rec, &hid);
    comp.assert_alive();
}
