//! Heap discovery and dev_t resolution on fake sysfs trees.

mod common;

use std::path::PathBuf;

use common::*;
use heapland_allocator::{
    Accounting, DeviceNumber, Discovery, Error, HeapKind, HeapProperties, ServedDevice, SysRoots,
};

/// guest_like() and a 32-bit scatter-gather device, `isp`, with a heap of
/// its memory (`system-32bit`, small and not coherent).
fn with_isp() -> FakeTree {
    let t = guest_like();
    t.heap(
        "system-32bit",
        HeapSpec::sg().mask(32).max(4 << 20).noncoherent(),
    )
    .device("platform/isp")
    .links("platform/isp", &["system-32bit", "system-32bit-contiguous"]);
    t
}

fn served_names(d: &Discovery, heap: &str) -> Vec<String> {
    d.heap(heap)
        .unwrap()
        .served
        .iter()
        .map(|s| format!("{}:{}", s.bus, s.name))
        .collect()
}

#[test]
fn finds_device_heaps_with_properties_then_system_then_udmabuf() {
    let t = with_isp();
    let d = t.discover();
    let names: Vec<&str> = d.heaps().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "system-32bit",
            "system-32bit-contiguous",
            "system-contiguous",
            "system",
            "udmabuf"
        ]
    );
    let h = d.heap("system-32bit").unwrap();
    assert_eq!(h.kind, HeapKind::Device);
    assert_eq!(served_names(&d, "system-32bit"), ["platform:isp"]);
    assert_eq!(
        h.served[0].sysfs_path,
        std::fs::canonicalize(t.sys("devices/platform/isp")).unwrap()
    );
    assert_eq!(
        h.properties,
        HeapProperties {
            contiguous: false,
            coherent: false,
            dma_mask_bits: Some(32),
            max_alloc_bytes: 4 << 20,
            alignment_bytes: 4096,
            accounting: Accounting::None,
            max_user_bytes: None,
        }
    );
    assert_eq!(h.contig_source.as_deref(), Some("buddy"));
    assert_eq!(h.dev_path, t.dir.path().join("dev/dma_heap/system-32bit"));
    let contig = d.heap("system-contiguous").unwrap();
    assert_eq!(contig.contig_source.as_deref(), Some("buddy migrate"));
    assert_eq!(
        contig.contig_sources().collect::<Vec<_>>(),
        ["buddy", "migrate"]
    );
    let sys = d.heap("system").unwrap();
    assert_eq!(sys.kind, HeapKind::System);
    assert_eq!(sys.properties, HeapProperties::ANYWHERE);
    assert_eq!(sys.contig_sources().count(), 0);
    let udmabuf = d.heap("udmabuf").unwrap();
    assert_eq!(udmabuf.kind, HeapKind::Udmabuf);
    assert_eq!(udmabuf.properties.accounting, Accounting::Memcg);
    assert!(udmabuf.served.is_empty());
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
    assert!(d.empty_reason().is_none());
}

#[test]
fn a_heap_shared_by_devices_lists_every_one_as_served() {
    let t = with_isp();
    let d = t.discover();
    assert_eq!(
        served_names(&d, "system-32bit-contiguous"),
        [
            "platform:isp",
            "platform:vgem",
            "platform:vivid.0",
            "platform:vkms"
        ]
    );
    assert_eq!(
        served_names(&d, "system-contiguous"),
        ["platform:vgem", "platform:vkms"]
    );
    // The kernel's system heap has no served/: the devices linking to it
    // are found through their links.
    assert_eq!(served_names(&d, "system"), ["platform:vgem"]);
    // Every device linking to a heap is served by it, and no other.
    for heap in d.heaps() {
        for n in [VKMS, VGEM, VIVID] {
            let device = d.resolve(n).unwrap();
            let listed = heap.served.iter().any(|s| s.name == device.name);
            assert_eq!(
                heap.serves(&device),
                listed,
                "{} {}",
                heap.name,
                device.name
            );
        }
    }
}

#[test]
fn served_links_of_other_buses_and_odd_entries() {
    // A PCI GPU's name holds colons: only the first one ends the bus.
    let t = guest_like();
    let gpu = "pci0000:00/0000:00:02.0";
    t.device(gpu).links(gpu, &["system", "system-contiguous"]);
    let served = t.sys("devices/virtual/device_heap/system-contiguous/served");
    // Not <bus>:<device>, and a device that went away: both left out.
    std::os::unix::fs::symlink("../../../platform/vkms", served.join("nocolon")).unwrap();
    std::os::unix::fs::symlink("../../../platform/gone", served.join("platform:gone")).unwrap();
    let d = t.discover();
    let heap = d.heap("system-contiguous").unwrap();
    let names: Vec<(&str, &str)> = heap
        .served
        .iter()
        .map(|s| (s.bus.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("pci", "0000:00:02.0"),
            ("platform", "vgem"),
            ("platform", "vkms")
        ]
    );
    assert_eq!(
        served_names(&d, "system"),
        ["pci:0000:00:02.0", "platform:vgem"]
    );
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
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
        ("max_user_bytes", "lots\n", "max_user_bytes"),
        ("max_user_bytes", "-1\n", "a decimal number"),
        ("max_user_bytes", "\n", "max_user_bytes"),
    ];
    for (attr, value, expect) in cases {
        let t = guest_like();
        t.set_attr("system-contiguous", attr, value);
        let d = t.discover();
        assert!(
            d.heap("system-contiguous").is_none(),
            "{attr}={value:?} accepted"
        );
        let s = d
            .skipped()
            .iter()
            .find(|s| s.name == "system-contiguous")
            .unwrap();
        assert!(s.reason.contains(expect), "{attr}={value:?}: {}", s.reason);
        // The others are still there.
        assert!(d.heap("system-32bit-contiguous").is_some());
        // A device linking to the skipped heap keeps the rest of its links.
        let vkms = d.resolve(VKMS).unwrap();
        let serving: Vec<&str> = d
            .heaps_serving(&vkms)
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(serving, ["system-32bit-contiguous"]);
    }
}

#[test]
fn missing_attribute_skips_and_unknown_heaps_are_listed_as_other() {
    let t = guest_like();
    std::fs::remove_file(t.sys("devices/virtual/device_heap/system-32bit-contiguous/coherent"))
        .unwrap();
    t.dev_node("dma_heap/linux,cma");
    let d = t.discover();
    assert!(d.heap("system-32bit-contiguous").is_none());
    // Nothing says what linux,cma is (no CMA area of that name in sysfs):
    // listed, with nothing promised, after everything else.
    let other = d.heap("linux,cma").unwrap();
    assert_eq!(other.kind, HeapKind::Other);
    assert_eq!(other.properties, HeapProperties::UNKNOWN);
    assert!(!other.properties_known());
    assert_eq!(d.heaps().last().unwrap().name, "linux,cma");
    let reasons: Vec<String> = d
        .skipped()
        .iter()
        .map(|s| format!("{}: {}", s.name, s.reason))
        .collect();
    assert!(
        reasons.iter().any(
            |r| r.starts_with("system-32bit-contiguous: cannot read") && r.contains("coherent")
        ),
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r.starts_with("linux,cma")));
}

#[test]
fn accounting_is_read_per_heap() {
    let t = guest_like();
    t.heap("system-32bit", HeapSpec::sg().mask(32).accounting("memcg"))
        .heap(
            "system-40bit-contiguous",
            HeapSpec::contig().mask(40).accounting("none"),
        );
    let d = t.discover();
    let acc = |n: &str| d.heap(n).unwrap().properties.accounting;
    assert_eq!(acc("system-32bit"), Accounting::Memcg);
    assert_eq!(acc("system-40bit-contiguous"), Accounting::None);
    // An older module without the attribute charges nobody.
    assert_eq!(acc("system-contiguous"), Accounting::None);
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

/// Every heap of a module that has the attribute bounds what one user pins;
/// heaps of older modules and the kernel's own heaps do not.
#[test]
fn max_user_bytes_is_read_per_heap_and_only_the_modules_heaps_have_it() {
    let t = heap_core_with_cma();
    t.heap("system-32bit", HeapSpec::sg().mask(32).max_user(512 << 20))
        .set_attr("system-contiguous", "max_user_bytes", "0\n");
    let d = t.discover();
    let bound = |n: &str| d.heap(n).unwrap().properties.max_user_bytes;
    assert_eq!(bound("system-32bit"), Some(512 << 20));
    assert_eq!(bound("system-contiguous"), Some(0));
    // An older module without the attribute bounds nobody.
    assert_eq!(bound("system-32bit-contiguous"), None);
    for kernel in ["system", "default_cma_region", "reserved", "udmabuf"] {
        assert_eq!(bound(kernel), None, "{kernel}");
    }
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
    for p in [
        HeapProperties::ANYWHERE,
        HeapProperties::CMA,
        HeapProperties::UNKNOWN,
    ] {
        assert_eq!(p.max_user_bytes, None);
    }
}

#[test]
fn unknown_accounting_word_skips_the_heap() {
    let t = guest_like();
    t.set_attr("system-contiguous", "accounting", "sometimes\n");
    let d = t.discover();
    assert!(d.heap("system-contiguous").is_none());
    let s = d
        .skipped()
        .iter()
        .find(|s| s.name == "system-contiguous")
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
    // vkms reaches all of RAM and uses the default area: the kernel's CMA
    // heap serves it after the module's contiguous heaps.
    t.links(
        "platform/vkms",
        &[
            "system-contiguous",
            "default_cma_region",
            "system-32bit-contiguous",
        ],
    );
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
    }
    assert_eq!(served_names(&d, "default_cma_region"), ["platform:vkms"]);
    assert!(served_names(&d, "reserved").is_empty());
    let vkms = d.resolve(VKMS).unwrap();
    assert!(d.heap("default_cma_region").unwrap().serves(&vkms));
    assert!(!d.heap("reserved").unwrap().serves(&vkms));
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
    assert_eq!(d.heap("system-contiguous").unwrap().kind, HeapKind::Device);
    // The core lists the kernel's system heap, and the module is loaded:
    // still the kernel's, not a removed heap of the module.
    let system = d.heap("system").unwrap();
    assert_eq!(system.kind, HeapKind::System);
    assert_eq!(system.properties.accounting, Accounting::Memcg);
    assert!(d.skipped().is_empty(), "{:?}", d.skipped());
}

#[test]
fn node_left_by_a_removed_device_heap_is_skipped_with_the_reason() {
    let t = heap_core_with_cma();
    // Heaps of each naming pattern were made and removed: the core keeps
    // their nodes.
    let gone = [
        "system-32bit",
        "system-40bit-contiguous",
        "linux,cma-contiguous",
    ];
    for name in gone {
        t.core_heap(name);
    }
    let d = t.discover();
    for name in gone {
        assert!(d.heap(name).is_none(), "{name}");
        let s = d.skipped().iter().find(|s| s.name == name).unwrap();
        assert!(s.reason.contains("removed device heap"), "{}", s.reason);
    }
    assert_eq!(d.heap("system").unwrap().kind, HeapKind::System);
    // Without device_heap loaded, the same nodes are just unknown heaps.
    std::fs::remove_dir(t.sys("module/device_heap")).unwrap();
    let d = t.discover();
    for name in gone {
        assert_eq!(d.heap(name).unwrap().kind, HeapKind::Other, "{name}");
    }
}

#[test]
fn the_modules_own_system_heap_is_a_device_heap() {
    // A kernel without a system heap: the module makes "system".
    let t = FakeTree::new();
    t.heap("system", HeapSpec::sg().mask(33).accounting("memcg"))
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .links("platform/vgem", &["system"]);
    let d = t.discover();
    let system = d.heap("system").unwrap();
    assert_eq!(system.kind, HeapKind::Device);
    assert_eq!(system.properties.dma_mask_bits, Some(33));
    assert_eq!(served_names(&d, "system"), ["platform:vgem"]);
    let target = std::fs::read_link(t.sys("devices/platform/vgem/dma_heaps/0")).unwrap();
    assert!(target.ends_with("virtual/device_heap/system"), "{target:?}");
}

#[test]
fn served_devices_name_their_driver_nodes_and_rank() {
    let t = guest_like();
    t.driver("platform/vivid.0", "vivid").node(
        "platform/vivid.0",
        "video4linux/video1",
        DeviceNumber::new(81, 1),
    );
    let d = t.discover();
    let heap = d.heap("system-32bit-contiguous").unwrap();
    let served = ServedDevice::all(d.roots(), heap);
    let summary: Vec<(&str, Option<usize>)> = served
        .iter()
        .map(|s| (s.name.as_str(), s.rank_of(&heap.name)))
        .collect();
    assert_eq!(
        summary,
        [("vgem", Some(2)), ("vivid.0", Some(0)), ("vkms", Some(1))]
    );
    let vivid = &served[1];
    assert_eq!(vivid.bus, "platform");
    assert_eq!(vivid.driver.as_deref(), Some("vivid"));
    assert_eq!(vivid.sysfs_path, heap.served[1].sysfs_path);
    assert_eq!(vivid.heap_names, ["system-32bit-contiguous"]);
    let nodes: Vec<(String, String)> = vivid
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
        ]
    );
    let vkms = &served[2];
    assert_eq!(vkms.driver, None);
    assert_eq!(vkms.nodes[0].path, Some(dev.join("dri/card0")));
    let system = ServedDevice::all(d.roots(), d.heap("system").unwrap());
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].rank_of("system"), Some(0));
    assert!(ServedDevice::all(d.roots(), d.heap("udmabuf").unwrap()).is_empty());
}

#[test]
fn heap_in_sysfs_without_dev_node_is_reported() {
    let t = guest_like();
    std::fs::remove_file(t.dir.path().join("dev/dma_heap/system-contiguous")).unwrap();
    let d = t.discover();
    assert!(d.heap("system-contiguous").is_none());
    assert!(d
        .skipped()
        .iter()
        .any(|s| s.name == "system-contiguous" && s.reason.contains("missing")));
}

#[test]
fn resolves_dev_t_to_device_and_its_links_in_rank_order() {
    let t = guest_like();
    let d = t.discover();
    let vkms = d.resolve(VKMS).unwrap();
    assert_eq!(vkms.name, "vkms");
    assert_eq!(
        vkms.heap_names,
        ["system-contiguous", "system-32bit-contiguous"]
    );
    assert!(vkms.sysfs_path.ends_with("platform/vkms"));
    assert_eq!(vkms.heaps_from.as_ref(), Some(&vkms.sysfs_path));
    assert_eq!(vkms.rank_of("system-32bit-contiguous"), Some(1));
    assert_eq!(vkms.rank_of("system"), None);
    let vgem = d.resolve(VGEM).unwrap();
    assert_eq!(
        vgem.heap_names,
        ["system", "system-contiguous", "system-32bit-contiguous"]
    );
    // The kernel's heap is linked like the module's.
    let serving: Vec<(&str, HeapKind)> = d
        .heaps_serving(&vgem)
        .iter()
        .map(|h| (h.name.as_str(), h.kind))
        .collect();
    assert_eq!(
        serving,
        [
            ("system", HeapKind::System),
            ("system-contiguous", HeapKind::Device),
            ("system-32bit-contiguous", HeapKind::Device)
        ]
    );
    let target = std::fs::read_link(t.sys("devices/platform/vgem/dma_heaps/0")).unwrap();
    assert!(target.ends_with("virtual/dma_heap/system"), "{target:?}");
    let vivid = d.resolve(VIVID).unwrap();
    assert_eq!(vivid.name, "vivid.0");
    assert!(d.heap("system-32bit-contiguous").unwrap().serves(&vivid));
    assert!(!d.heap("system-contiguous").unwrap().serves(&vivid));
    assert!(d.heap("system").unwrap().serves(&vgem));
    assert!(!d.heap("system").unwrap().serves(&vivid));
    assert!(!d.heap("udmabuf").unwrap().serves(&vgem));
}

#[test]
fn links_are_read_in_numeric_rank_order() {
    let t = FakeTree::new();
    let names: Vec<String> = (0..12).map(|i| format!("heap{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    t.device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links("platform/vkms", &refs);
    let info = t.discover().resolve(VKMS).unwrap();
    // Lexically "10" and "11" would come before "2".
    assert_eq!(info.heap_names, names);
    assert_eq!(info.rank_of("heap10"), Some(10));
}

#[test]
fn odd_link_names_and_dangling_links_are_left_out() {
    let t = guest_like();
    let vkms = "platform/vkms";
    t.raw_link(vkms, "01", "devices/virtual/dma_heap/system")
        .raw_link(vkms, "+2", "devices/virtual/dma_heap/system")
        .raw_link(vkms, "x", "devices/virtual/dma_heap/system")
        .raw_link(vkms, "99999999999", "devices/virtual/dma_heap/system")
        // The heap went away while the module remade the links.
        .raw_link(vkms, "2", "devices/virtual/device_heap/gone-contiguous")
        .raw_link(vkms, "3", "devices/virtual/dma_heap/system");
    // A file that is not a link at all.
    std::fs::write(t.sys("devices/platform/vkms/dma_heaps/4"), "").unwrap();
    let d = t.discover();
    let info = d.resolve(VKMS).unwrap();
    assert_eq!(
        info.heap_names,
        ["system-contiguous", "system-32bit-contiguous", "system"]
    );
}

#[test]
fn the_nearest_directory_with_links_wins() {
    // A PCI GPU is served, and a child of it too; a DRM node below the child
    // takes the child's links, one below another child the GPU's.
    let t = guest_like();
    let gpu = "pci0000:00/0000:00:02.0";
    let child = format!("{gpu}/child");
    let plain = format!("{gpu}/plain");
    let render = DeviceNumber::new(226, 129);
    let card = DeviceNumber::new(226, 1);
    t.device(gpu)
        .links(gpu, &["system", "system-contiguous"])
        .device(&child)
        .links(&child, &["system-32bit-contiguous"])
        .node(&child, "drm/renderD129", render)
        .device(&plain)
        .node(&plain, "drm/card1", card);
    let d = t.discover();
    let info = d.resolve(render).unwrap();
    assert_eq!(info.name, "child");
    assert_eq!(info.heap_names, ["system-32bit-contiguous"], "nearest only");
    let info = d.resolve(card).unwrap();
    assert_eq!(info.name, "plain");
    assert_eq!(info.heap_names, ["system", "system-contiguous"]);
    assert_eq!(
        info.heaps_from,
        Some(std::fs::canonicalize(t.sys(&format!("devices/{gpu}"))).unwrap())
    );
    // An empty dma_heaps/ (links being remade) still stops the walk.
    t.links(&child, &[]);
    let info = t.discover().resolve(render).unwrap();
    assert!(info.heap_names.is_empty());
    assert!(info
        .heaps_from
        .as_deref()
        .is_some_and(|p| p.ends_with("child")));
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
    assert_eq!(info.heaps_from, None::<PathBuf>);
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
