//! Constraint intersection and heap selection, incl. impossible sets.

mod common;

use common::*;
use heapland_allocator::{
    choose, drm_fourcc::DrmFourcc as Fourcc, intersect, resolve_devices, Constraints, Error,
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
    // A device without heaps gets the system heap, not udmabuf.
    let other = heapland_allocator::DeviceNumber::new(226, 1);
    t.device("platform/other")
        .node("platform/other", "drm/card1", other);
    let d = t.discover();
    let devs = resolve_devices(&d, &[other]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(heap.name, "system");
    // Without the system heap: another device's heap before udmabuf.
    std::fs::remove_file(t.dir.path().join("dev/dma_heap/system")).unwrap();
    let d = t.discover();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(heap.name, "vgem-sg");
    // With nothing else: udmabuf, the last resort.
    let bare = FakeTree::new();
    bare.device("platform/other")
        .node("platform/other", "drm/card1", other)
        .udmabuf();
    let d = bare.discover();
    let devs = resolve_devices(&d, &[other]).unwrap();
    let (heap, ..) = choose(&d, &devs, &[], Fourcc::Xrgb8888, 64, 64).unwrap();
    assert_eq!(heap.name, "udmabuf");
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
