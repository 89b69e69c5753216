//! Constraint intersection and heap selection, incl. impossible sets.

mod common;

use common::*;
use heapland_allocator::{
    choose, drm_fourcc::DrmFourcc as Fourcc, explain_choice, intersect, pick_modifier,
    resolve_devices, Constraints, Error, HeapKind, Verdict,
};

#[test]
fn device_needs_come_from_its_links() {
    let t = guest_like();
    let d = t.discover();
    let needs = |n| {
        let device = d.resolve(n).unwrap();
        Constraints::for_device(&device, &d.heaps_serving(&device))
    };
    let vivid = needs(VIVID);
    assert_eq!(vivid.device, "vivid.0");
    assert!(vivid.contiguous && vivid.known);
    assert_eq!(vivid.dma_mask_bits, 32);
    // system-contiguous says 33 bits, RAM's last byte: memory "anywhere in
    // RAM", so vkms reaches all of it.
    let vkms = needs(VKMS);
    assert!(vkms.contiguous);
    assert_eq!(vkms.dma_mask_bits, 64);
    let vgem = needs(VGEM);
    assert!(
        !vgem.contiguous,
        "vgem links to the system heap, so it gathers scattered pages"
    );
    assert_eq!(vgem.dma_mask_bits, 64);
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
    for order in [[VKMS, VGEM, VIVID], [VIVID, VKMS, VGEM]] {
        let devs = resolve_devices(&d, &order).unwrap();
        let (heap, layout, i) = choose(&d, &devs, &[], Fourcc::Nv12, 1280, 720).unwrap();
        assert!(i.contiguous);
        assert_eq!(i.dma_mask_bits, 32);
        // The only heap all three link to.
        assert_eq!(heap.name, "system-32bit-contiguous");
        assert_eq!(layout.size, 1_382_400);
    }
}

#[test]
fn one_device_gets_the_first_heap_of_its_links() {
    let t = guest_like();
    let d = t.discover();
    for (n, want) in [
        (VGEM, "system"),
        (VKMS, "system-contiguous"),
        (VIVID, "system-32bit-contiguous"),
    ] {
        let devs = resolve_devices(&d, &[n]).unwrap();
        let (heap, ..) = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080).unwrap();
        assert_eq!(heap.name, want, "{n}");
    }
    // A device linking to no heap is unknown, not "any memory": no heap is
    // proven to fit it (a display without an IOMMU would refuse the system
    // heap's scattered pages), and the error says what to do.
    let other = heapland_allocator::DeviceNumber::new(226, 1);
    t.device("platform/other")
        .node("platform/other", "drm/card1", other);
    let d = t.discover();
    let devs = resolve_devices(&d, &[other]).unwrap();
    let msg = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("system: nothing describes the memory other needs (it links to no heap"),
        "{msg}"
    );
    assert!(msg.contains("modprobe device_heap devices="), "{msg}");
    assert!(
        msg.starts_with("no heap satisfies other (needs unknown (it links to no heap))"),
        "{msg}"
    );
}

#[test]
fn a_link_that_does_not_fit_passes_to_the_next_rank() {
    // vkms's best heap holds 4 MiB: a 1080p buffer comes from its next.
    let t = guest_like();
    t.set_attr("system-contiguous", "max_alloc_bytes", "4194304\n");
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1024, 768).unwrap();
    assert_eq!(heap.name, "system-contiguous");
    let e = explain_choice(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "system-32bit-contiguous");
    let unmet = e.ranking.unmet();
    let first = unmet
        .iter()
        .find(|u| u.heap == "system-contiguous")
        .unwrap();
    assert_eq!(
        first.reasons,
        ["max allocation 4194304 bytes < 8294400 needed"]
    );
}

#[test]
fn impossible_set_is_explained() {
    // vivid.0 needs contiguous memory and its heap gives 40-bit memory; vgem
    // can only address 32 bits and gathers scattered pages below them.
    let t = FakeTree::new();
    t.heap("system-40bit-contiguous", HeapSpec::contig().mask(40))
        .heap("system-32bit", HeapSpec::sg().mask(32))
        .system_heap()
        .device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .links("platform/vivid.0", &["system-40bit-contiguous"])
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .links("platform/vgem", &["system-32bit"]);
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
        msg.contains("system-32bit: not contiguous (needed by vivid.0)"),
        "{msg}"
    );
    assert!(
        msg.contains("system-40bit-contiguous: memory up to 40 bits, beyond DMA mask 32 of vgem"),
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
    t.heap("system-contiguous", system_contiguous().max(4 << 20))
        .system_heap()
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links("platform/vkms", &["system-contiguous"]);
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    assert!(choose(&d, &devs, &[], Fourcc::Xrgb8888, 1024, 768).is_ok());
    let msg = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("system-contiguous: max allocation 4194304 bytes < 8294400 needed"),
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
    // vkms's best heap is not coherent: a coherent need takes its next.
    let mut coherent = Constraints::unconstrained("cpu");
    coherent.coherent = true;
    t.set_attr("system-contiguous", "coherent", "0\n");
    let d = t.discover();
    let vkms = resolve_devices(&d, &[VKMS]).unwrap();
    let (heap, ..) = choose(&d, &vkms, &[coherent], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(heap.name, "system-32bit-contiguous");
}

#[test]
fn no_heaps_at_all_is_its_own_error() {
    let t = FakeTree::new();
    let d = t.discover();
    let err = choose(&d, &[], &[], Fourcc::Xrgb8888, 64, 64).unwrap_err();
    assert!(matches!(err, Error::NoHeaps { .. }), "{err}");
}

fn verdict_of<'a>(e: &'a heapland_allocator::Explained<'_>, heap: &str) -> &'a Verdict {
    &e.ranking
        .heaps
        .iter()
        .find(|r| r.heap.name == heap)
        .unwrap_or_else(|| panic!("{heap} not judged"))
        .verdict
}

fn outranked_because(e: &heapland_allocator::Explained<'_>, heap: &str) -> String {
    match verdict_of(e, heap) {
        Verdict::Outranked(why) => why.clone(),
        v => panic!("{heap}: {v:?}"),
    }
}

#[test]
fn ranking_judges_every_heap_and_agrees_with_select() {
    let t = guest_like();
    let d = t.discover();
    // vgem first: its order is system (not contiguous, as vkms needs),
    // system-contiguous, system-32bit-contiguous; vkms links to both.
    let devs = resolve_devices(&d, &[VGEM, VKMS]).unwrap();
    let explained = explain_choice(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    let (chosen, layout, _) = choose(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(explained.heap().unwrap().name, chosen.name);
    assert_eq!(
        explained.ranking.chosen().unwrap().name,
        "system-contiguous"
    );
    assert_eq!(explained.layout, layout);
    assert_eq!(explained.ranking.heaps.len(), d.heaps().len());
    assert_eq!(
        outranked_because(&explained, "system-32bit-contiguous"),
        "fits, but system-contiguous is rank 1 for vgem, this heap rank 2"
    );
    match verdict_of(&explained, "system") {
        Verdict::Unmet(why) => assert_eq!(why, &["not contiguous (needed by vkms)"]),
        v => panic!("system: {v:?}"),
    }
    assert!(matches!(
        verdict_of(&explained, "udmabuf"),
        Verdict::Unmet(_)
    ));
    // Only vgem: its first link, the kernel's system heap; its other links
    // by rank; udmabuf, which nothing links to, after them.
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let e = explain_choice(&d, &vgem, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "system");
    assert_eq!(
        outranked_because(&e, "system-contiguous"),
        "fits, but system is rank 0 for vgem, this heap rank 1"
    );
    assert_eq!(
        outranked_because(&e, "system-32bit-contiguous"),
        "fits, but system is rank 0 for vgem, this heap rank 2"
    );
    assert_eq!(
        outranked_because(&e, "udmabuf"),
        "fits, but system serves vgem (rank 0), and none of these devices links to \
         this heap (udmabuf, the last resort)"
    );
    // vkms first, vivid.0 second: vivid.0 links only to the 32-bit heap.
    let devs = resolve_devices(&d, &[VKMS, VIVID]).unwrap();
    let e = explain_choice(&d, &devs, &[], Fourcc::Nv12, 1280, 720).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "system-32bit-contiguous");
    match verdict_of(&e, "system-contiguous") {
        Verdict::Unmet(why) => assert_eq!(
            why,
            &["memory up to 33 bits, beyond DMA mask 32 of vivid.0"]
        ),
        v => panic!("{v:?}"),
    }
}

#[test]
fn two_devices_follow_the_first_devices_order() {
    // Two heaps both devices link to, ranked differently by each.
    let t = FakeTree::new();
    t.heap("system-contiguous", system_contiguous())
        .heap(
            "reserved-contiguous",
            HeapSpec::contig().source("cma:reserved buddy"),
        )
        .heap("system-32bit-contiguous", system_32bit_contiguous())
        .system_heap()
        .device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .links(
            "platform/vivid.0",
            &["system-contiguous", "reserved-contiguous"],
        )
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links(
            "platform/vkms",
            &[
                "system-32bit-contiguous",
                "reserved-contiguous",
                "system-contiguous",
            ],
        );
    let d = t.discover();
    let pick = |order: &[heapland_allocator::DeviceNumber]| {
        let devs = resolve_devices(&d, order).unwrap();
        choose(&d, &devs, &[], Fourcc::Xrgb8888, 640, 480)
            .unwrap()
            .0
            .name
    };
    assert_eq!(pick(&[VIVID, VKMS]), "system-contiguous");
    // vkms's best is not linked by vivid.0: its next one both link to.
    assert_eq!(pick(&[VKMS, VIVID]), "reserved-contiguous");
    assert_eq!(pick(&[VKMS]), "system-32bit-contiguous");
    let devs = resolve_devices(&d, &[VKMS, VIVID]).unwrap();
    let e = explain_choice(&d, &devs, &[], Fourcc::Xrgb8888, 640, 480).unwrap();
    assert_eq!(
        outranked_because(&e, "system-contiguous"),
        "fits, but reserved-contiguous is rank 1 for vkms, this heap rank 2"
    );
    assert_eq!(
        outranked_because(&e, "system-32bit-contiguous"),
        "fits, but reserved-contiguous serves vkms (rank 1), vivid.0 (rank 1), this heap \
         only vkms (rank 0)"
    );
    // Where the devices share no heap, one linked by the earlier device
    // comes first.
    t.links("platform/vivid.0", &["system-contiguous"]).links(
        "platform/vkms",
        &["system-32bit-contiguous", "reserved-contiguous"],
    );
    let d = t.discover();
    let devs = resolve_devices(&d, &[VIVID, VKMS]).unwrap();
    let e = explain_choice(&d, &devs, &[], Fourcc::Xrgb8888, 640, 480).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "system-contiguous");
    assert_eq!(
        outranked_because(&e, "system-32bit-contiguous"),
        "fits, but system-contiguous is rank 0 for vivid.0, listed before vkms"
    );
}

/// A 7.x system with a CMA area: vkms reaches all of RAM and uses the
/// default area, so the kernel's CMA heap serves it after the module's.
fn with_cma() -> FakeTree {
    let t = guest_like();
    t.cma_area("reserved", 32768)
        .core_heap("default_cma_region")
        .core_heap("reserved")
        .on_heap_core()
        .links(
            "platform/vkms",
            &[
                "system-contiguous",
                "default_cma_region",
                "system-32bit-contiguous",
            ],
        );
    t
}

#[test]
fn cma_heap_is_never_chosen_for_a_device_of_narrower_reach() {
    // vivid.0 can only address 32 bits and its heap is too small: the CMA
    // heap is large enough but nothing says it lies below 4 GiB.
    let t = FakeTree::new();
    t.heap(
        "system-32bit-contiguous",
        system_32bit_contiguous().max(1 << 20),
    )
    .system_heap()
    .cma_area("reserved", 32768)
    .core_heap("reserved")
    .on_heap_core()
    .device("platform/vivid.0")
    .node("platform/vivid.0", "video4linux/video0", VIVID)
    .links("platform/vivid.0", &["system-32bit-contiguous"]);
    let d = t.discover();
    let devs = resolve_devices(&d, &[VIVID]).unwrap();
    let err = choose(&d, &devs, &[], Fourcc::Xrgb8888, 1920, 1080).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reserved: DMA reach unknown, not proven below DMA mask 32 of vivid.0"),
        "{msg}"
    );
}

#[test]
fn cma_heaps_come_where_the_links_put_them_and_last_otherwise() {
    let t = with_cma();
    let d = t.discover();
    // vkms links to the kernel's default CMA heap after the module's heap.
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    let e = explain_choice(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(e.ranking.chosen().unwrap().name, "system-contiguous");
    assert_eq!(
        outranked_because(&e, "default_cma_region"),
        "fits, but system-contiguous is rank 0 for vkms, this heap rank 1"
    );
    // `reserved`, the same area by its old name, is linked by nobody.
    let why = outranked_because(&e, "reserved");
    assert!(
        why.ends_with(
            "none of these devices links to this heap (a CMA heap (contiguous memory is scarce))"
        ),
        "{why}"
    );
    // A device needing no contiguity never gets CMA memory over system.
    let vgem = resolve_devices(&d, &[VGEM]).unwrap();
    let e = explain_choice(&d, &vgem, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert!(outranked_because(&e, "reserved").contains("CMA heap"));
    // Where the module's heap is too small, the linked CMA heap serves.
    t.set_attr("system-contiguous", "max_alloc_bytes", "1048576\n");
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Nv12, 1920, 1080).unwrap();
    assert_eq!(
        (heap.name.as_str(), heap.kind),
        ("default_cma_region", HeapKind::Cma)
    );
    // A 64-bit device whose links are all too small gets a contiguous heap
    // it does not link to: CMA, the last resort.
    let big = system_contiguous().max(1 << 20);
    let t = FakeTree::new();
    t.heap("system-contiguous", big)
        .system_heap()
        .cma_area("reserved", 32768)
        .core_heap("reserved")
        .on_heap_core()
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links("platform/vkms", &["system-contiguous"]);
    let d = t.discover();
    let devs = resolve_devices(&d, &[VKMS]).unwrap();
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
