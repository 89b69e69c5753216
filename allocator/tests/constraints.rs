//! Constraint intersection and heap selection, incl. impossible sets.

mod common;

use common::*;
use heapland_allocator::{
    choose, drm_fourcc::DrmFourcc as Fourcc, explain_choice, intersect, pick_modifier,
    resolve_devices, Constraints, Error, HeapKind, Verdict,
};

#[test]
fn device_needs_come_from_its_heaps() {
    let t = guest_like();
    t.heap("platform/vgem", "vgem-contig", HeapSpec::contig().mask(32));
    let d = t.discover();
    let vivid = d.resolve(VIVID).unwrap();
    let c = Constraints::for_device(&vivid, &d.heaps_serving(&vivid));
    assert!(c.contiguous);
    assert_eq!(c.device, "vivid.0");
    let vgem = d.resolve(VGEM).unwrap();
    let c = Constraints::for_device(&vgem, &d.heaps_serving(&vgem));
    assert!(
        !c.contiguous,
        "vgem has an sg heap, so it does not need contiguous memory"
    );
    assert_eq!(c.dma_mask_bits, 64);
}

#[test]
fn intersection_takes_the_strictest_of_each() {
    let mut a = Constraints::unconstrained("a");
    a.contiguous = true;
    a.pitch_alignment = 64;
    a.offset_alignment = 4096;
    a.max_width = Some(4096);
    let mut b = Constraints::unconstrained("b");
    b.dma_mask_bits = 32;
    b.pitch_alignment = 96;
    b.base_alignment = 1 << 16;
    b.max_width = Some(2048);
    b.max_size = Some(1 << 24);
    b.coherent = true;
    let i = intersect(&[a, b]);
    assert!(i.contiguous && i.coherent);
    assert_eq!(i.dma_mask_bits, 32);
    assert_eq!(i.pitch_alignment, 192, "lcm(64, 96)");
    assert_eq!(i.offset_alignment, 4096);
    assert_eq!(i.base_alignment, 1 << 16);
    assert_eq!(i.max_width, Some(2048));
    assert_eq!(i.max_height, None);
    assert_eq!(i.max_size, Some(1 << 24));
    assert_eq!(i.device_names(), ["a", "b"]);
}

#[test]
fn all_three_guest_devices_get_a_contiguous_heap() {
    let t = guest_like();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS, VGEM, VIVID]).unwrap();
    let (heap, layout, i) = choose(&d, &devs, &[], Fourcc::Nv12, 1280, 720).unwrap();
    assert!(i.contiguous);
    assert!(heap.properties.contiguous);
    // vkms-contig and vivid.0-contig both serve one device; the heap of the
    // first-listed device wins.
    assert_eq!(heap.name, "vkms-contig");
    let devs = resolve_devices(&d, &[VIVID, VKMS, VGEM]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Nv12, 1280, 720).unwrap();
    assert_eq!(heap.name, "vivid.0-contig");
    assert_eq!(layout.size, 1_382_400);
}

#[test]
fn own_heap_is_preferred_over_system_and_udmabuf() {
    let t = guest_like();
    let d = t.discover();
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let (heap, ..) = choose(&d, &vgem, &[], Fourcc::Xrgb8888, 1920, 1080).unwrap();
    assert_eq!(heap.name, "vgem-sg");
    // A device no device heap describes is unknown, not "any memory": no
    // heap is proven to fit it (a display without an IOMMU would refuse the
    // system heap's scattered pages), and the error says what to do.
    let other = heapland_allocator::DeviceNumber::new(226, 1);
    t.device("platform/other")
        .node("platform/other", "drm/card1", other);
    let d = t.discover();
    let devs = resolve_devices(&d, &[other]).unwrap();
    let msg = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("system: nothing describes the memory other needs"),
        "{msg}"
    );
    assert!(msg.contains("modprobe device_heap devices="), "{msg}");
}

#[test]
fn uncontiguous_need_prefers_sg_over_scarce_contig() {
    let t = guest_like();
    t.heap("platform/vgem", "vgem-contig", HeapSpec::contig());
    let d = t.discover();
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let (heap, ..) = choose(&d, &vgem, &[], Fourcc::Xrgb8888, 640, 480).unwrap();
    assert_eq!(heap.name, "vgem-sg");
}

#[test]
fn impossible_set_is_explained() {
    // vivid.0 needs contiguous memory; vgem can only address 32 bits, and
    // the only contiguous heaps give 40-bit memory.
    let t = FakeTree::new();
    t.device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .heap(
            "platform/vivid.0",
            "vivid.0-contig",
            HeapSpec::contig().mask(40),
        )
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .heap("platform/vgem", "vgem-sg", HeapSpec::sg().mask(32))
        .system_heap();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VIVID, VGEM]).unwrap();
    let err = choose(&d, &devs, &[], Fourcc::Nv12, 1280, 720).unwrap_err();
    assert!(matches!(err, Error::NoHeap { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "no heap satisfies vivid.0 (contiguous, DMA mask 40) and vgem (DMA mask 32)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("vgem-sg: not contiguous (needed by vivid.0)"),
        "{msg}"
    );
    assert!(
        msg.contains("vivid.0-contig: memory up to 40 bits, beyond DMA mask 32 of vgem"),
        "{msg}"
    );
    assert!(
        msg.contains("system: not contiguous (needed by vivid.0), memory up to 64 bits"),
        "{msg}"
    );
}

#[test]
fn too_large_for_every_contiguous_heap_is_explained() {
    let t = FakeTree::new();
    t.device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .heap(
            "platform/vkms",
            "vkms-contig",
            HeapSpec::contig().max(4 << 20),
        )
        .system_heap();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    assert!(choose(&d, &devs, &[], Fourcc::Xrgb8888, 1024, 768).is_ok());
    let msg = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("vkms-contig: max allocation 4194304 bytes < 8294400 needed"),
        "{msg}"
    );
    assert!(msg.contains("no heap satisfies vkms (contiguous)"), "{msg}");
}

#[test]
fn caller_limits_are_enforced_and_named() {
    let t = guest_like();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    let mut scanout = Constraints::unconstrained("vkms plane");
    scanout.max_width = Some(1024);
    let err = choose(&d, &devs, &[scanout.clone()], Fourcc::Xrgb8888, 1920, 1080).unwrap_err();
    assert_eq!(
        err.to_string(),
        "width: 1920 exceeds the limit 1024 of vkms plane"
    );
    scanout.max_width = None;
    scanout.max_size = Some(1 << 20);
    let err = choose(&d, &devs, &[scanout.clone()], Fourcc::Xrgb8888, 1024, 768).unwrap_err();
    assert!(
        err.to_string().contains("limit 1048576 of vkms plane"),
        "{err}"
    );
    let mut coherent = Constraints::unconstrained("cpu");
    coherent.coherent = true;
    t.heap("platform/vgem", "vgem-nc", HeapSpec::sg().noncoherent());
    let d = t.discover();
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let (heap, ..) = choose(&d, &vgem, &[coherent], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_ne!(heap.name, "vgem-nc");
}

#[test]
fn no_heaps_at_all_is_its_own_error() {
    let t = FakeTree::new();
    let d = t.discover();
    let err = choose(&d, &[], &[], Fourcc::Xrgb8888, 64, 64).unwrap_err();
    assert!(matches!(err, Error::NoHeaps { .. }), "{err}");
}

#[test]
fn ranking_judges_every_heap_and_agrees_with_select() {
    let t = guest_like();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VIVID, VKMS]).unwrap();
    let explained = explain_choice(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    let (chosen, layout, _) = choose(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(explained.heap().unwrap().name, chosen.name);
    assert_eq!(explained.ranking.chosen().unwrap().name, "vivid.0-contig");
    assert_eq!(explained.layout, layout);
    assert_eq!(explained.ranking.heaps.len(), d.heaps().len());
    let verdict = |n: &str| {
        explained
            .ranking
            .heaps
            .iter()
            .find(|r| r.heap.name == n)
            .unwrap()
            .verdict
            .clone()
    };
    match verdict("vkms-contig") {
        Verdict::Outranked(why) => assert!(
            why.contains("vivid.0-contig is made for vivid.0, listed before vkms"),
            "{why}"
        ),
        v => panic!("vkms-contig: {v:?}"),
    }
    match verdict("system") {
        Verdict::Unmet(why) => assert!(
            why.iter()
                .any(|w| w.contains("not contiguous (needed by vivid.0, vkms)")),
            "{why:?}"
        ),
        v => panic!("system: {v:?}"),
    }
    match verdict("vgem-sg") {
        Verdict::Unmet(_) => {}
        v => panic!("vgem-sg: {v:?}"),
    }
    // Only vgem: its own heap, then the system heap is preferred to heaps
    // made for other devices, and those to udmabuf.
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let e = explain_choice(&d, &vgem, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "vgem-sg");
    for r in &e.ranking.heaps {
        if r.heap.name == "vgem-sg" {
            assert_eq!(r.verdict, Verdict::Chosen);
        } else {
            let Verdict::Outranked(why) = &r.verdict else {
                panic!("{}: {:?}", r.heap.name, r.verdict);
            };
            assert!(
                why.starts_with("fits, but vgem-sg is made for vgem"),
                "{why}"
            );
        }
    }
}

/// A 7.x system with a CMA area and devices needing contiguous memory.
fn with_cma() -> FakeTree {
    let t = guest_like();
    t.cma_area("reserved", 32768)
        .core_heap("default_cma_region")
        .core_heap("reserved")
        .on_heap_core();
    t
}

#[test]
fn cma_heap_is_never_chosen_for_a_device_of_narrower_reach() {
    // vkms can only address 32 bits and its own heap is too small: the CMA
    // heap is large enough but nothing says it lies below 4 GiB.
    let t = FakeTree::new();
    t.device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .heap(
            "platform/vkms",
            "vkms-contig",
            HeapSpec::contig().mask(32).max(1 << 20),
        )
        .system_heap()
        .cma_area("reserved", 32768)
        .core_heap("reserved")
        .on_heap_core();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    let err = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reserved: DMA reach unknown, not proven below DMA mask 32 of vkms"),
        "{msg}"
    );
}

#[test]
fn cma_heap_is_the_last_choice_of_a_64_bit_device_needing_contiguity() {
    let t = with_cma();
    let d = t.discover();
    // vivid.0 (contiguous, 64-bit) has its own heap: CMA is outranked.
    let devs = resolve_devices(&d, &[VIVID]).unwrap();
    let e = explain_choice(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "vivid.0-contig");
    for r in &e.ranking.heaps {
        if r.heap.kind == HeapKind::Cma {
            assert!(
                matches!(&r.verdict, Verdict::Outranked(w) if w.contains("made for vivid.0")),
                "{:?}",
                r.verdict
            );
        }
    }
    // A device needing no contiguity never gets CMA memory over system.
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let e = explain_choice(&d, &vgem, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    let cma = e
        .ranking
        .heaps
        .iter()
        .find(|r| r.heap.name == "reserved")
        .unwrap();
    assert!(
        matches!(&cma.verdict, Verdict::Outranked(w) if w.contains("CMA heap")),
        "{:?}",
        cma.verdict
    );
    // Where its own heap is too small, a 64-bit device needing contiguity
    // gets a contiguous heap: another device's first, CMA last.
    let big = HeapSpec::contig().max(1 << 20);
    let t = FakeTree::new();
    t.device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .heap("platform/vivid.0", "vivid.0-contig", big)
        .system_heap()
        .cma_area("reserved", 32768)
        .core_heap("reserved")
        .on_heap_core();
    let d = t.discover();
    let devs = resolve_devices(&d, &[VIVID]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(heap.name, "reserved");
    assert_eq!(heap.kind, HeapKind::Cma);
}

#[test]
fn heap_of_unknown_kind_is_never_chosen() {
    let t = FakeTree::new();
    let other = heapland_allocator::DeviceNumber::new(226, 1);
    t.device("platform/other")
        .node("platform/other", "drm/card1", other)
        .dev_node("dma_heap/mystery");
    let d = t.discover();
    assert_eq!(d.heap("mystery").unwrap().kind, HeapKind::Other);
    let devs = resolve_devices(&d, &[other]).unwrap();
    let msg = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("mystery: memory properties unknown"), "{msg}");
}

#[test]
fn modifiers_are_linear_or_implicit() {
    use heapland_allocator::drm_fourcc::DrmModifier as Modifier;
    let f = Fourcc::Xrgb8888;
    assert_eq!(pick_modifier(f, &[]).unwrap(), Modifier::Linear);
    assert_eq!(
        pick_modifier(f, &[Modifier::Invalid, Modifier::Linear]).unwrap(),
        Modifier::Linear
    );
    assert_eq!(
        pick_modifier(f, &[Modifier::Invalid]).unwrap(),
        Modifier::Invalid
    );
    assert!(matches!(
        pick_modifier(f, &[Modifier::I915_x_tiled]),
        Err(Error::UnsupportedModifiers { .. })
    ));
}
