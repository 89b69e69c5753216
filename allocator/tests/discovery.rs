//! Heap discovery and dev_t resolution on fake sysfs trees.

mod common;

use common::*;
use heapland_allocator::{
    Accounting, DeviceNumber, Discovery, Error, HeapKind, HeapProperties, ServedDevice, SysRoots,
};

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
            dma_mask_bits: Some(32),
            max_alloc_bytes: 4 << 20,
            alignment_bytes: 4096,
            accounting: Accounting::None,
        }
    );
    assert_eq!(h.contig_source.as_deref(), Some("migrate"));
    assert_eq!(h.dev_path, t.dir.path().join("dev/dma_heap/vgem-contig"));
    let sys = d.heap("system").unwrap();
    assert_eq!(sys.kind, HeapKind::System);
    assert_eq!(sys.properties, HeapProperties::ANYWHERE);
    assert!(sys.serves_any_device());
    let udmabuf = d.heap("udmabuf").unwrap();
    assert_eq!(udmabuf.kind, HeapKind::Udmabuf);
    assert_eq!(udmabuf.properties.accounting, Accounting::Memcg);
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
fn missing_attribute_skips_and_unknown_heaps_are_listed_as_other() {
    let t = guest_like();
    std::fs::remove_file(t.sys("devices/platform/vgem/device_heap/vgem-sg/coherent")).unwrap();
    t.dev_node("dma_heap/linux,cma");
    let d = t.discover();
    assert!(d.heap("vgem-sg").is_none());
    // Nothing says what linux,cma is (no CMA area of that name in sysfs):
    // listed, with nothing promised, after everything else.
    let other = d.heap("linux,cma").unwrap();
    assert_eq!(other.kind, HeapKind::Other);
    assert_eq!(other.properties, HeapProperties::UNKNOWN);
    assert!(!other.properties_known() && !other.serves_any_device());
    assert_eq!(d.heaps().last().unwrap().name, "linux,cma");
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
    assert!(!reasons.iter().any(|r| r.starts_with("linux,cma")));
}

#[test]
fn accounting_is_read_per_heap() {
    let t = guest_like();
    t.heap(
        "platform/vgem",
        "vgem-contig",
        HeapSpec::contig().accounting("memcg"),
    )
    .heap(
        "platform/vivid.0",
        "vivid.0-sg",
        HeapSpec::sg().accounting("none"),
    );
    let d = t.discover();
    let acc = |n: &str| d.heap(n).unwrap().properties.accounting;
    assert_eq!(acc("vgem-contig"), Accounting::Memcg);
    assert_eq!(acc("vivid.0-sg"), Accounting::None);
    // An older module without the attribute charges nobody.
    assert_eq!(acc("vkms-contig"), Accounting::None);
    // 6.12: no mem_accounting parameter, the system heap charges nobody.
    assert_eq!(acc("system"), Accounting::None);
    assert_eq!(acc("udmabuf"), Accounting::Memcg);
    t.mem_accounting(true);
    assert_eq!(
        t.discover().heap("system").unwrap().properties.accounting,
        Accounting::Memcg
    );
    t.mem_accounting(false);
    assert_eq!(
        t.discover().heap("system").unwrap().properties.accounting,
        Accounting::None
    );
    assert_eq!(Accounting::Memcg.to_string(), "memcg");
}

#[test]
fn unknown_accounting_word_skips_the_heap() {
    let t = guest_like();
    t.set_attr("vkms-contig", "accounting", "sometimes\n");
    let d = t.discover();
    assert!(d.heap("vkms-contig").is_none());
    let s = d
        .skipped()
        .iter()
        .find(|s| s.name == "vkms-contig")
        .unwrap();
    assert!(s.reason.contains("memcg or none"), "{}", s.reason);
}

/// A 7.x kernel with a CMA area: the core lists the device heaps, `system`,
/// `default_cma_region` and the legacy `reserved`.
fn heap_core_with_cma() -> FakeTree {
    let t = guest_like();
    t.cma_area("reserved", 32768)
        .core_heap("system")
        .core_heap("default_cma_region")
        .core_heap("reserved")
        .on_heap_core()
        .mem_accounting(true);
    t
}

#[test]
fn cma_heaps_are_contiguous_of_unknown_reach_and_never_charged() {
    let t = heap_core_with_cma();
    let d = t.discover();
    for name in ["default_cma_region", "reserved"] {
        let h = d.heap(name).unwrap();
        assert_eq!(h.kind, HeapKind::Cma, "{name}");
        assert!(h.properties.contiguous);
        assert_eq!(h.properties.dma_mask_bits, None, "reach unknown");
        assert_eq!(h.properties.accounting, Accounting::None);
        assert_eq!(
            h.properties.max_alloc_bytes,
            32768 * rustix::param::page_size() as u64
        );
        assert_eq!(h.contig_source.as_deref(), Some("cma:reserved"));
        assert!(!h.serves_any_device());
    }
    // Order: device heaps, system, CMA, udmabuf.
    let kinds: Vec<HeapKind> = d.heaps().iter().map(|h| h.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| match k {
        HeapKind::Device => 0,
        HeapKind::System => 1,
        HeapKind::Cma => 2,
        HeapKind::Udmabuf => 3,
        HeapKind::Other => 4,
    });
    assert_eq!(kinds, sorted);
}

#[test]
fn device_heaps_on_the_heap_core_are_listed_once() {
    let t = heap_core_with_cma();
    let d = t.discover();
    let mut names: Vec<&str> = d.heaps().iter().map(|h| h.name.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "{names:?}");
    assert_eq!(d.heap("vkms-contig").unwrap().kind, HeapKind::Device);
    assert_eq!(
        d.heap("system").unwrap().properties.accounting,
        Accounting::Memcg
    );
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
}

#[test]
fn node_left_by_a_removed_device_heap_is_skipped_with_the_reason() {
    let t = heap_core_with_cma();
    // vgem-contig was added and removed: the core keeps its node.
    t.core_heap("vgem-contig");
    let d = t.discover();
    assert!(d.heap("vgem-contig").is_none());
    let s = d
        .skipped()
        .iter()
        .find(|s| s.name == "vgem-contig")
        .unwrap();
    assert!(s.reason.contains("removed device heap"), "{}", s.reason);
    // Without device_heap loaded, the same node is just an unknown heap.
    std::fs::remove_dir(t.sys("module/device_heap")).unwrap();
    assert_eq!(
        t.discover().heap("vgem-contig").unwrap().kind,
        HeapKind::Other
    );
}

#[test]
fn served_device_names_its_driver_and_nodes() {
    let t = guest_like();
    t.driver("platform/vivid.0", "vivid").node(
        "platform/vivid.0",
        "video4linux/video1",
        DeviceNumber::new(81, 1),
    );
    let d = t.discover();
    let heap = d.heap("vivid.0-contig").unwrap();
    let served = ServedDevice::of(d.roots(), heap).unwrap();
    assert_eq!(served.name, "vivid.0");
    assert_eq!(served.driver.as_deref(), Some("vivid"));
    assert_eq!(served.sysfs_path, heap.served_sysfs_path.clone().unwrap());
    let nodes: Vec<(String, String)> = served
        .nodes
        .iter()
        .map(|n| {
            (
                n.path.as_ref().unwrap().display().to_string(),
                n.number.to_string(),
            )
        })
        .collect();
    let dev = t.dir.path().join("dev");
    assert_eq!(
        nodes,
        [
            (dev.join("video0").display().to_string(), "81:0".into()),
            (dev.join("video1").display().to_string(), "81:1".into()),
        ],
        "the heap's own node under device_heap/ is not the device's"
    );
    let vkms = ServedDevice::of(d.roots(), d.heap("vkms-contig").unwrap()).unwrap();
    assert_eq!(vkms.driver, None);
    assert_eq!(vkms.nodes[0].path, Some(dev.join("dri/card0")));
    assert!(ServedDevice::of(d.roots(), d.heap("system").unwrap()).is_none());
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
