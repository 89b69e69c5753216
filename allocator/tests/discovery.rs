//! Heap discovery and dev_t resolution on fake sysfs trees.

mod common;

use common::*;
use heapland_allocator::{DeviceNumber, Discovery, Error, HeapKind, HeapProperties, SysRoots};

#[test]
fn finds_device_heaps_with_properties_then_system_then_udmabuf() {
    let t = guest_like();
    t.heap(
        "platform/vgem",
        "vgem-contig",
        HeapSpec::contig().mask(32).max(4 << 20).noncoherent(),
    );
    let d = t.discover();
    let names: Vec<&str> = d.heaps().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vgem-contig",
            "vgem-sg",
            "vivid.0-contig",
            "vkms-contig",
            "system",
            "udmabuf"
        ]
    );
    let h = d.heap("vgem-contig").unwrap();
    assert_eq!(h.kind, HeapKind::Device);
    assert_eq!(h.served_device.as_deref(), Some("vgem"));
    assert_eq!(
        h.properties,
        HeapProperties {
            contiguous: true,
            coherent: false,
            dma_mask_bits: 32,
            max_alloc_bytes: 4 << 20,
            alignment_bytes: 4096
        }
    );
    assert_eq!(h.dev_path, t.dir.path().join("dev/dma_heap/vgem-contig"));
    let sys = d.heap("system").unwrap();
    assert_eq!(sys.kind, HeapKind::System);
    assert_eq!(sys.properties, HeapProperties::ANYWHERE);
    assert!(sys.serves_any_device());
    assert_eq!(d.heap("udmabuf").unwrap().kind, HeapKind::Udmabuf);
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
    assert!(d.empty_reason().is_none());
}

#[test]
fn empty_host_gives_an_empty_set_with_a_reason() {
    let t = FakeTree::new();
    let d = t.discover();
    assert!(d.is_empty());
    let reason = d.empty_reason().unwrap();
    assert!(reason.contains("dma_heap"), "{reason}");
    assert!(reason.contains("udmabuf"), "{reason}");
    // A nonexistent root must not panic either.
    let d = Discovery::scan_roots(&SysRoots::under(&t.dir.path().join("nowhere")));
    assert!(d.is_empty());
    assert!(d.empty_reason().unwrap().contains("cannot list"));
}

#[test]
fn malformed_attributes_skip_the_heap_and_say_why() {
    let cases: &[(&str, &str, &str)] = &[
        ("dma_mask_bits", "abc\n", "dma_mask_bits"),
        ("dma_mask_bits", "99\n", "1 to 64"),
        ("contiguous", "2\n", "0 or 1"),
        ("contiguous", "0\n", "1 for backing contig"),
        ("backing", "weird\n", "contig or sg"),
        ("alignment_bytes", "3000\n", "power of two"),
        ("max_alloc_bytes", "\n", "max_alloc_bytes"),
        ("name", "other\n", "own name"),
        ("coherent", "\u{0}\u{ff}\n", "coherent"),
    ];
    for (attr, value, expect) in cases {
        let t = guest_like();
        t.set_attr("vkms-contig", attr, value);
        let d = t.discover();
        assert!(d.heap("vkms-contig").is_none(), "{attr}={value:?} accepted");
        let s = d
            .skipped()
            .iter()
            .find(|s| s.name == "vkms-contig")
            .unwrap();
        assert!(s.reason.contains(expect), "{attr}={value:?}: {}", s.reason);
        // The others are still there.
        assert!(d.heap("vgem-sg").is_some());
    }
}

#[test]
fn missing_attribute_and_unknown_heaps_are_skipped() {
    let t = guest_like();
    std::fs::remove_file(t.sys("devices/platform/vgem/device_heap/vgem-sg/coherent")).unwrap();
    t.dev_node("dma_heap/linux,cma");
    let d = t.discover();
    assert!(d.heap("vgem-sg").is_none());
    assert!(d.heap("linux,cma").is_none());
    let reasons: Vec<String> = d
        .skipped()
        .iter()
        .map(|s| format!("{}: {}", s.name, s.reason))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("vgem-sg: cannot read") && r.contains("coherent")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("linux,cma") && r.contains("unknown")),
        "{reasons:?}"
    );
}

#[test]
fn heap_in_sysfs_without_dev_node_is_reported() {
    let t = guest_like();
    std::fs::remove_file(t.dir.path().join("dev/dma_heap/vivid.0-contig")).unwrap();
    let d = t.discover();
    assert!(d.heap("vivid.0-contig").is_none());
    assert!(d
        .skipped()
        .iter()
        .any(|s| s.name == "vivid.0-contig" && s.reason.contains("missing")));
}

#[test]
fn resolves_dev_t_to_device_and_heaps() {
    let t = guest_like();
    let d = t.discover();
    let vkms = d.resolve(VKMS).unwrap();
    assert_eq!(vkms.name, "vkms");
    assert_eq!(vkms.heap_names, ["vkms-contig"]);
    assert!(vkms.sysfs_path.ends_with("platform/vkms"));
    let vivid = d.resolve(VIVID).unwrap();
    assert_eq!(vivid.name, "vivid.0");
    assert_eq!(vivid.heap_names, ["vivid.0-contig"]);
    let serving: Vec<&str> = d
        .heaps_serving(&vivid)
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(serving, ["vivid.0-contig"]);
    assert!(d.heap("vivid.0-contig").unwrap().serves(&vivid));
    assert!(!d.heap("vkms-contig").unwrap().serves(&vivid));
}

#[test]
fn resolution_walks_up_to_parent_heaps() {
    // A PCI GPU whose heap hangs off the PCI function, reached from its
    // render node through a child device.
    let t = FakeTree::new();
    let gpu = "pci0000:00/0000:00:02.0";
    let num = DeviceNumber::new(226, 129);
    t.device(gpu)
        .heap(gpu, "0000:00:02.0-sg", HeapSpec::sg())
        .device(&format!("{gpu}/subdev"))
        .heap(
            &format!("{gpu}/subdev"),
            "subdev-contig",
            HeapSpec::contig(),
        )
        .node(&format!("{gpu}/subdev"), "drm/renderD129", num);
    let d = t.discover();
    let info = d.resolve(num).unwrap();
    assert_eq!(info.name, "subdev");
    assert_eq!(
        info.heap_names,
        ["subdev-contig", "0000:00:02.0-sg"],
        "nearest first"
    );
}

#[test]
fn unknown_dev_t_is_a_clear_error() {
    let t = guest_like();
    let err = t.discover().resolve(DeviceNumber::new(1, 3)).unwrap_err();
    assert!(matches!(err, Error::UnknownDevice { .. }));
    assert!(err.to_string().contains("1:3"), "{err}");
}

#[test]
fn device_without_heaps_resolves_with_none() {
    let t = guest_like();
    let num = DeviceNumber::new(226, 1);
    t.device("platform/other")
        .node("platform/other", "drm/card1", num);
    let info = t.discover().resolve(num).unwrap();
    assert_eq!(info.name, "other");
    assert!(info.heap_names.is_empty());
}

#[test]
fn device_numbers_round_trip() {
    let n = DeviceNumber::new(226, 128);
    assert_eq!(DeviceNumber::from_dev_t(n.to_dev_t()), n);
    assert_eq!(DeviceNumber::from(n.to_dev_t()), n);
    assert_eq!(
        DeviceNumber::from_feedback_bytes(&n.to_dev_t().to_ne_bytes()).unwrap(),
        n
    );
    assert!(DeviceNumber::from_feedback_bytes(&[1, 2, 3]).is_err());
    assert_eq!(n.to_string(), "226:128");
}
