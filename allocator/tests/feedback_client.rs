//! `FeedbackCollector`: joining linux-dmabuf feedback and heap batches as a
//! compositor sends them, and refusing batches that are out of step.

mod wire;

use wire::{dev, memfd, table, DISPLAY, RENDER, XR24};

use heapland_allocator::{
    feedback_client::{FeedbackCollector, FeedbackError},
    DeviceNumber,
};
use heapland_protocols::client::xx_dmabuf_heap_feedback_v1::{Event as Heap, HeapFlags};
use wayland_client::WEnum;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::Event as Dmabuf;

/// A linux-dmabuf batch (version 4): (target, scanout, format indices) per tranche.
fn dmabuf_batch(c: &mut FeedbackCollector, with_table: bool, tranches: &[(u64, bool, &[u16])]) {
    for event in wire::dmabuf_batch(false, with_table, tranches) {
        c.dmabuf_event(event).unwrap();
    }
}

/// A heap batch: (target, scanout, devices) per tranche, each with a heap.
fn heap_batch(c: &mut FeedbackCollector, tranches: &[(u64, bool, &[u64])]) {
    for (target, scanout, devices) in tranches {
        c.heap_event(Heap::TrancheTarget {
            target_device: dev(*target),
            flags: u32::from(*scanout),
        })
        .unwrap();
        for d in *devices {
            c.heap_event(Heap::TrancheDevice { device: dev(*d) })
                .unwrap();
        }
        c.heap_event(Heap::TrancheLayout {
            pitch_alignment: 256,
            offset_alignment: 64,
            base_alignment: 4096,
        })
        .unwrap();
        c.heap_event(Heap::TrancheHeap {
            fd: memfd(b"heap"),
            name: format!("heap-{target:x}"),
            flags: WEnum::Value(HeapFlags::Accounted),
            max_size_hi: 1,
            max_size_lo: 0,
        })
        .unwrap();
        c.heap_event(Heap::TrancheDone).unwrap();
    }
    c.heap_event(Heap::Done).unwrap();
}

#[test]
fn matching_batches_join_into_tranches_with_heaps() {
    let mut c = FeedbackCollector::new();
    dmabuf_batch(
        &mut c,
        true,
        &[(DISPLAY, true, &[0]), (RENDER, false, &[0, 1])],
    );
    assert!(c.take().is_none(), "the heap batch is still to come");
    heap_batch(
        &mut c,
        &[
            (DISPLAY, true, &[DISPLAY, RENDER]),
            (RENDER, false, &[RENDER]),
        ],
    );
    let joined = c.take().expect("joined").expect("in step");
    assert_eq!(joined.main_device, Some(DeviceNumber::from_dev_t(RENDER)));
    assert_eq!(joined.tranches.len(), 2);
    let scanout = &joined.tranches[0];
    assert!(scanout.scanout);
    assert_eq!(scanout.target_device, DeviceNumber::from_dev_t(DISPLAY));
    assert_eq!(scanout.formats.len(), 1);
    assert_eq!(scanout.formats[0].format, XR24);
    assert_eq!(scanout.layout.pitch_alignment, 256);
    let heap = scanout.heap.as_ref().expect("a heap");
    assert!(heap.accounted && !heap.contiguous);
    assert_eq!(heap.max_size, Some(1 << 32));
    assert_eq!(joined.tranches[1].formats.len(), 2);
    let negotiable = joined.dmabuf().expect("feedback");
    assert_eq!(negotiable.tranches.len(), 2);
    assert!(c.take().is_none(), "taken once");
}

#[test]
fn a_heap_batch_before_any_linux_dmabuf_batch_waits_for_it() {
    let mut c = FeedbackCollector::new();
    heap_batch(&mut c, &[(RENDER, false, &[RENDER])]);
    assert!(c.take().is_none());
    dmabuf_batch(&mut c, true, &[(RENDER, false, &[0])]);
    assert!(c.take().expect("joined").is_ok());
}

#[test]
fn new_linux_dmabuf_tranches_wait_for_their_heap_batch() {
    let mut c = FeedbackCollector::new();
    dmabuf_batch(&mut c, true, &[(RENDER, false, &[0])]);
    heap_batch(&mut c, &[(RENDER, false, &[RENDER])]);
    assert!(c.take().expect("first").is_ok());
    // The surface became scanout-capable: linux-dmabuf first, no error yet.
    dmabuf_batch(
        &mut c,
        false,
        &[(DISPLAY, true, &[0]), (RENDER, false, &[0])],
    );
    assert!(c.take().is_none());
    heap_batch(
        &mut c,
        &[
            (DISPLAY, true, &[DISPLAY, RENDER]),
            (RENDER, false, &[RENDER]),
        ],
    );
    let joined = c.take().expect("second").expect("in step");
    assert_eq!(joined.tranches.len(), 2);
}

#[test]
fn a_heap_batch_with_another_tranche_count_is_a_mismatch() {
    let mut c = FeedbackCollector::new();
    dmabuf_batch(
        &mut c,
        true,
        &[(DISPLAY, true, &[0]), (RENDER, false, &[0])],
    );
    heap_batch(&mut c, &[(RENDER, false, &[RENDER])]);
    match c.take() {
        Some(Err(FeedbackError::Mismatch(m))) => assert!(m.contains("2 linux-dmabuf"), "{m}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn a_heap_tranche_without_the_main_device_is_a_mismatch() {
    let mut c = FeedbackCollector::new();
    dmabuf_batch(&mut c, true, &[(DISPLAY, true, &[0])]);
    heap_batch(&mut c, &[(DISPLAY, true, &[DISPLAY])]);
    match c.take() {
        Some(Err(FeedbackError::Mismatch(m))) => assert!(m.contains("main device"), "{m}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn other_flags_are_a_mismatch() {
    let mut c = FeedbackCollector::new();
    dmabuf_batch(&mut c, true, &[(RENDER, false, &[0])]);
    heap_batch(&mut c, &[(RENDER, true, &[RENDER])]);
    assert!(matches!(c.take(), Some(Err(FeedbackError::Mismatch(_)))));
}

#[test]
fn without_linux_dmabuf_feedback_heap_batches_are_empty() {
    let mut c = FeedbackCollector::without_dmabuf_feedback();
    heap_batch(&mut c, &[]);
    let joined = c.take().expect("joined").expect("empty is in step");
    assert!(joined.main_device.is_none() && joined.tranches.is_empty());
    heap_batch(&mut c, &[(RENDER, false, &[RENDER])]);
    assert!(matches!(c.take(), Some(Err(FeedbackError::Mismatch(_)))));
}

#[test]
fn malformed_events_are_errors_not_panics() {
    let mut c = FeedbackCollector::new();
    let err = c.heap_event(Heap::TrancheLayout {
        pitch_alignment: 1,
        offset_alignment: 1,
        base_alignment: 1,
    });
    assert!(
        matches!(err, Err(FeedbackError::Malformed { .. })),
        "{err:?}"
    );
    let err = c.heap_event(Heap::TrancheDevice {
        device: vec![1, 2, 3],
    });
    assert!(err.is_err());
    c.heap_event(Heap::TrancheTarget {
        target_device: dev(RENDER),
        flags: 0,
    })
    .unwrap();
    assert!(
        c.heap_event(Heap::TrancheDone).is_err(),
        "no heap, no layout"
    );

    let mut c = FeedbackCollector::new();
    c.dmabuf_event(Dmabuf::MainDevice {
        device: dev(RENDER),
    })
    .unwrap();
    let (fd, size) = table();
    c.dmabuf_event(Dmabuf::FormatTable { fd, size }).unwrap();
    c.dmabuf_event(Dmabuf::TrancheTargetDevice {
        device: dev(RENDER),
    })
    .unwrap();
    c.dmabuf_event(Dmabuf::TrancheFormats {
        indices: 9u16.to_ne_bytes().to_vec(),
    })
    .unwrap();
    c.dmabuf_event(Dmabuf::TrancheDone).unwrap();
    let err = c.dmabuf_event(Dmabuf::Done);
    assert!(
        matches!(err, Err(FeedbackError::Malformed { .. })),
        "{err:?}"
    );
}

/// The order within a tranche is the protocol's: devices, layout, one heap
/// part (a `no_heap` with its explanation).
#[test]
fn events_out_of_the_tranche_order_are_malformed() {
    let layout = || Heap::TrancheLayout {
        pitch_alignment: 1,
        offset_alignment: 1,
        base_alignment: 4096,
    };
    let no_heap = |message: &str| Heap::TrancheNoHeap {
        reason: WEnum::Unknown(0),
        message: message.into(),
    };
    let target = || Heap::TrancheTarget {
        target_device: dev(RENDER),
        flags: 0,
    };
    for (what, events) in wire::out_of_order_tranches(layout, no_heap, || Heap::TrancheDevice {
        device: dev(RENDER),
    }) {
        let mut c = FeedbackCollector::new();
        c.heap_event(target()).unwrap();
        wire::assert_last_malformed(what, events, |e| c.heap_event(e));
    }
}
