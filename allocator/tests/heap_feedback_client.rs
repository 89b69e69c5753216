//! `HeapFeedbackCollector`: joining a linux-dmabuf feedback object (v4 to
//! v6) with the `xx_dmabuf_heaps_v2` object extending it, in whichever
//! order their batches arrive, and refusing batches that do not describe
//! their feedback.

mod wire;

use wire::{dev, memfd, DISPLAY, RENDER};

use heapland_allocator::{
    feedback_client::{FeedbackError, JoinedFeedback},
    heap_feedback_client::{HeapEvent, HeapFeedbackCollector},
    DeviceNumber,
};

/// `heap_flags.contiguous`.
const CONTIGUOUS: u32 = 1;

/// Which linux-dmabuf version the batch is written for.
#[derive(Clone, Copy)]
enum Version {
    /// `main_device`, flags 0 or scanout.
    V4,
    /// No `main_device`; the render node's tranches flagged sampling.
    V6,
}

/// A linux-dmabuf batch: (target, scanout, format indices) per tranche.
fn dmabuf_batch(
    c: &mut HeapFeedbackCollector,
    version: Version,
    with_table: bool,
    tranches: &[(u64, bool, &[u16])],
) {
    let version6 = matches!(version, Version::V6);
    for event in wire::dmabuf_batch(version6, with_table, tranches) {
        c.dmabuf_event(event).unwrap();
    }
}

/// Announces heap `id`.
fn announce(c: &mut HeapFeedbackCollector, id: u32, flags: u32) {
    c.heap_event(HeapEvent::Heap {
        id,
        fd: memfd(b"heap"),
        name: format!("heap-{id}"),
        flags,
        max_size: Some(1 << 32),
    })
    .unwrap();
}

/// A heap batch for linux-dmabuf `done` number `done`: (devices, heap id)
/// per tranche.
fn heap_batch(c: &mut HeapFeedbackCollector, done: u32, tranches: &[(&[u64], u32)]) {
    for (devices, heap) in tranches {
        for d in *devices {
            c.heap_event(HeapEvent::TrancheDevice(dev(*d))).unwrap();
        }
        c.heap_event(HeapEvent::TrancheLayout(
            heapland_allocator::feedback_client::TrancheLayout {
                pitch_alignment: 256,
                offset_alignment: 64,
                base_alignment: 4096,
            },
        ))
        .unwrap();
        c.heap_event(HeapEvent::TrancheHeap(*heap)).unwrap();
        c.heap_event(HeapEvent::TrancheDone).unwrap();
    }
    c.heap_event(HeapEvent::Done(done)).unwrap();
}

fn joined(c: &mut HeapFeedbackCollector) -> JoinedFeedback {
    match c.take() {
        Some(Ok(j)) => j,
        Some(Err(e)) => panic!("not joined: {e}"),
        None => panic!("nothing joined"),
    }
}

const SCANOUT_AND_MAIN: &[(u64, bool, &[u16])] = &[(DISPLAY, true, &[0]), (RENDER, false, &[0, 1])];

#[test]
fn version_4_batches_join_with_heaps_announced_once() {
    let mut c = HeapFeedbackCollector::new();
    dmabuf_batch(&mut c, Version::V4, true, SCANOUT_AND_MAIN);
    assert!(c.take().is_none(), "joined before its heap batch");
    announce(&mut c, 7, CONTIGUOUS);
    announce(&mut c, 8, 0);
    heap_batch(&mut c, 1, &[(&[DISPLAY, RENDER], 7), (&[RENDER], 8)]);
    let j = joined(&mut c);
    assert_eq!(j.main_device, Some(DeviceNumber::from_dev_t(RENDER)));
    assert_eq!(j.tranches.len(), 2);
    assert!(j.tranches[0].scanout);
    let heap = j.tranches[0].heap.as_ref().unwrap();
    assert_eq!(heap.name, "heap-7");
    assert!(heap.contiguous && !heap.accounted);
    assert_eq!(heap.max_size, Some(1 << 32));
    assert_eq!(j.tranches[1].heap.as_ref().unwrap().name, "heap-8");
    assert_eq!(j.tranches[1].formats.len(), 2);
    assert_eq!(j.tranches[0].layout.pitch_alignment, 256);

    // add_device: another batch for the same feedback, the heaps not
    // announced again; each joined feedback owns its own fds.
    heap_batch(
        &mut c,
        1,
        &[(&[DISPLAY, RENDER, 0x1234], 7), (&[RENDER, 0x1234], 8)],
    );
    let again = joined(&mut c);
    assert!(again.tranches[0]
        .devices
        .contains(&DeviceNumber::from_dev_t(0x1234)));
    drop(j);
    assert!(again.tranches[0].heap.is_ok());
}

#[test]
fn version_6_batches_take_the_sampling_device_as_the_compositing_device() {
    let mut c = HeapFeedbackCollector::new();
    dmabuf_batch(&mut c, Version::V6, true, SCANOUT_AND_MAIN);
    announce(&mut c, 3, CONTIGUOUS);
    heap_batch(&mut c, 1, &[(&[DISPLAY, RENDER], 3), (&[RENDER], 3)]);
    let j = joined(&mut c);
    assert_eq!(j.main_device, Some(DeviceNumber::from_dev_t(RENDER)));
    assert_eq!(
        j.dmabuf().unwrap().main_device,
        DeviceNumber::from_dev_t(RENDER)
    );
    assert!(j.tranches.iter().all(|t| t.heap.is_ok()));
}

#[test]
fn a_heap_batch_may_come_before_its_feedback() {
    // Different event queues: the heap object's queue was dispatched first.
    let mut c = HeapFeedbackCollector::new();
    announce(&mut c, 3, 0);
    heap_batch(&mut c, 1, &[(&[DISPLAY, RENDER], 3), (&[RENDER], 3)]);
    assert!(c.take().is_none(), "joined without linux-dmabuf feedback");
    dmabuf_batch(&mut c, Version::V4, true, SCANOUT_AND_MAIN);
    assert_eq!(joined(&mut c).tranches.len(), 2);
}

#[test]
fn only_the_newest_feedback_is_joined() {
    let mut c = HeapFeedbackCollector::new();
    announce(&mut c, 3, 0);
    dmabuf_batch(&mut c, Version::V4, true, SCANOUT_AND_MAIN);
    // The surface left the display before the heap batch for feedback 1
    // was read: feedback 2 has only the render tranche.
    dmabuf_batch(&mut c, Version::V4, false, &[(RENDER, false, &[0, 1])]);
    heap_batch(&mut c, 1, &[(&[DISPLAY, RENDER], 3), (&[RENDER], 3)]);
    assert!(
        c.take().is_none(),
        "feedback 1 joined after feedback 2 came"
    );
    heap_batch(&mut c, 2, &[(&[RENDER], 3)]);
    let j = joined(&mut c);
    assert_eq!(j.tranches.len(), 1);
    assert!(!j.tranches[0].scanout);
}

#[test]
fn batches_that_do_not_describe_their_feedback_are_refused() {
    let mismatch = |tranches: &[(&[u64], u32)]| {
        let mut c = HeapFeedbackCollector::new();
        announce(&mut c, 3, 0);
        dmabuf_batch(&mut c, Version::V4, true, SCANOUT_AND_MAIN);
        heap_batch(&mut c, 1, tranches);
        match c.take() {
            Some(Err(e)) => e.to_string(),
            other => panic!("joined: {other:?}"),
        }
    };
    assert!(mismatch(&[(&[RENDER], 3)]).contains("2 linux-dmabuf tranches, 1 heap tranches"));
    assert!(mismatch(&[(&[RENDER], 3), (&[RENDER], 3)]).contains("its target"));
    assert!(mismatch(&[(&[DISPLAY], 3), (&[RENDER], 3)]).contains("compositing device"));
    assert!(mismatch(&[(&[DISPLAY, RENDER], 9), (&[RENDER], 3)]).contains("never announced"));
}

#[test]
fn a_removed_heap_may_not_be_referred_to() {
    let mut c = HeapFeedbackCollector::new();
    announce(&mut c, 3, 0);
    dmabuf_batch(&mut c, Version::V4, true, &[(RENDER, false, &[0])]);
    heap_batch(&mut c, 1, &[(&[RENDER], 3)]);
    let before = joined(&mut c);
    c.heap_removed(3);
    heap_batch(&mut c, 1, &[(&[RENDER], 3)]);
    match c.take() {
        Some(Err(FeedbackError::Malformed { reason, .. })) => {
            assert!(reason.contains("removed"), "{reason}")
        }
        other => panic!("a removed heap joined: {other:?}"),
    }
    // Joined feedback from before keeps its fd.
    assert!(before.tranches[0].heap.is_ok());
}

#[test]
fn a_batch_that_waits_for_its_feedback_keeps_the_heaps_it_named() {
    // The heap batch first (another event queue), then the heap goes,
    // and its protocol id is used for a new heap, before linux-dmabuf's
    // done: the batch was valid when sent, and says the heap it named.
    let mut c = HeapFeedbackCollector::new();
    announce(&mut c, 3, CONTIGUOUS);
    heap_batch(&mut c, 1, &[(&[RENDER], 3)]);
    c.heap_removed(3);
    c.heap_event(HeapEvent::Heap {
        id: 3,
        fd: memfd(b"other"),
        name: "other".into(),
        flags: 0,
        max_size: None,
    })
    .unwrap();
    dmabuf_batch(&mut c, Version::V4, true, &[(RENDER, false, &[0])]);
    let j = joined(&mut c);
    let heap = j.tranches[0].heap.as_ref().unwrap();
    assert_eq!(heap.name, "heap-3");
    assert!(heap.contiguous);
}

#[test]
fn malformed_heap_events_are_errors_not_panics() {
    let mut c = HeapFeedbackCollector::new();
    assert!(c.heap_event(HeapEvent::TrancheDone).is_err());
    assert!(c
        .heap_event(HeapEvent::TrancheDevice(vec![1, 2, 3]))
        .is_err());
    assert!(c.heap_event(HeapEvent::Done(0)).is_err());
    announce(&mut c, 3, 0);
    let twice = c.heap_event(HeapEvent::Heap {
        id: 3,
        fd: memfd(b"heap"),
        name: "again".into(),
        flags: 0,
        max_size: None,
    });
    assert!(twice.is_err());
    // A tranche without layout and heap.
    c.heap_event(HeapEvent::TrancheDevice(dev(RENDER))).unwrap();
    assert!(c.heap_event(HeapEvent::TrancheDone).is_err());
}

/// The order within a tranche is the protocol's: devices, layout, one heap
/// part (a `no_heap` with its explanation).
#[test]
fn events_out_of_the_tranche_order_are_malformed() {
    use heapland_allocator::feedback_client::{NoHeap, TrancheLayout};
    let layout = || {
        HeapEvent::TrancheLayout(TrancheLayout {
            pitch_alignment: 1,
            offset_alignment: 1,
            base_alignment: 4096,
        })
    };
    let no_heap = |message: &str| {
        HeapEvent::TrancheNoHeap(NoHeap {
            reason: None,
            message: message.into(),
        })
    };
    for (what, events) in
        wire::out_of_order_tranches(layout, no_heap, || HeapEvent::TrancheDevice(dev(RENDER)))
    {
        let mut c = HeapFeedbackCollector::new();
        wire::assert_last_malformed(what, events, |e| c.heap_event(e));
    }
}
