//! linux-dmabuf v4 feedback negotiation on fake trees.

mod common;

use common::*;
use heapland_allocator::{
    drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier},
    negotiate, Error, Feedback, FormatEntry, Request, Tranche, Usage, WireTranche,
};

const XR24: u32 = Fourcc::Xrgb8888 as u32;
const AR24: u32 = Fourcc::Argb8888 as u32;
const NV12: u32 = Fourcc::Nv12 as u32;
const LINEAR: u64 = 0;
const INVALID: u64 = 0x00ff_ffff_ffff_ffff;
/// I915_FORMAT_MOD_X_TILED: a modifier heaps cannot produce.
const X_TILED: u64 = (1 << 56) | 1;

fn entry(format: u32, modifier: u64) -> FormatEntry {
    FormatEntry { format, modifier }
}

/// vgem composites (main device), vkms scans out.
fn feedback(scanout_formats: Vec<FormatEntry>, main_formats: Vec<FormatEntry>) -> Feedback {
    Feedback {
        main_device: VGEM,
        tranches: vec![
            Tranche {
                target_device: VGEM,
                formats: main_formats,
                scanout: false,
            },
            Tranche {
                target_device: VKMS,
                formats: scanout_formats,
                scanout: true,
            },
        ],
    }
}

fn scanout() -> Usage {
    Usage {
        scanout: true,
        render: true,
        ..Default::default()
    }
}

#[test]
fn scanout_tranche_is_preferred_for_scanout_usage() {
    let t = guest_like();
    let d = t.discover();
    let fb = feedback(vec![entry(XR24, LINEAR)], vec![entry(XR24, LINEAR)]);
    let n = negotiate(
        &d,
        &fb,
        &Request::new(1024, 768, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap();
    assert_eq!(n.tranche, 1);
    assert!(n.scanout);
    assert_eq!(n.modifier, Modifier::Linear);
    let names: Vec<&str> = n.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["vkms", "vgem"], "target then main device");
    // vkms needs contiguous memory: its first heap, which vgem links to too.
    assert_eq!(n.heap.name, "system-contiguous");
    assert!(n.passed_over.is_empty());
    assert_eq!(n.layout.planes[0].stride, 4096);

    // Without scanout usage the compositor's order stands.
    let n = negotiate(
        &d,
        &fb,
        &Request::new(1024, 768, vec![Fourcc::Xrgb8888], Usage::default()),
    )
    .unwrap();
    assert_eq!(n.tranche, 0);
    assert_eq!(n.heap.name, "system");
}

#[test]
fn falls_back_to_the_main_tranche_and_explains() {
    let t = guest_like();
    let d = t.discover();
    // The scanout tranche only takes X-tiled XR24: heaps cannot make it.
    let fb = feedback(
        vec![entry(XR24, X_TILED)],
        vec![entry(XR24, LINEAR), entry(AR24, LINEAR)],
    );
    let n = negotiate(
        &d,
        &fb,
        &Request::new(1920, 1080, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap();
    assert_eq!(n.tranche, 0);
    assert!(!n.scanout);
    assert_eq!(n.heap.name, "system");
    assert_eq!(n.passed_over.len(), 1);
    let why = &n.passed_over[0];
    assert!(why.starts_with("tranche 1 (226:0, scanout):"), "{why}");
    assert!(
        why.contains("XR24 only with modifiers [0x100000000000001], heaps produce LINEAR"),
        "{why}"
    );
}

#[test]
fn falls_back_when_no_heap_fits_the_scanout_device() {
    // vkms's contiguous heap cannot hold 1080p; the main tranche can.
    let t = FakeTree::new();
    t.heap("system-contiguous", system_contiguous().max(4 << 20))
        .system_heap()
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links("platform/vkms", &["system-contiguous"])
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .links("platform/vgem", &["system", "system-contiguous"]);
    let d = t.discover();
    let fb = feedback(vec![entry(XR24, LINEAR)], vec![entry(XR24, LINEAR)]);
    let n = negotiate(
        &d,
        &fb,
        &Request::new(1920, 1080, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap();
    assert_eq!(n.tranche, 0);
    assert_eq!(n.heap.name, "system");
    assert!(
        n.passed_over[0].contains("max allocation 4194304 bytes < 8294400"),
        "{:?}",
        n.passed_over
    );
}

#[test]
fn modifier_filtering() {
    let t = guest_like();
    let d = t.discover();
    // Implicit modifiers only: INVALID is acceptable without CPU access...
    let fb = feedback(vec![entry(XR24, INVALID)], vec![entry(XR24, X_TILED)]);
    let n = negotiate(
        &d,
        &fb,
        &Request::new(64, 64, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap();
    assert_eq!(n.modifier, Modifier::Invalid);
    assert_eq!(n.tranche, 1);
    // ...but not when the CPU must know the layout.
    let cpu = Usage {
        cpu: true,
        ..scanout()
    };
    let err = negotiate(&d, &fb, &Request::new(64, 64, vec![Fourcc::Xrgb8888], cpu)).unwrap_err();
    let Error::Negotiation { reasons } = &err else {
        panic!("{err}")
    };
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons[0].contains("only with implicit modifiers, unusable for CPU access"),
        "{err}"
    );
    assert!(reasons[1].contains("heaps produce LINEAR"), "{err}");
    // LINEAR wins over INVALID when both are offered.
    let fb = feedback(vec![entry(XR24, INVALID), entry(XR24, LINEAR)], vec![]);
    let n = negotiate(
        &d,
        &fb,
        &Request::new(64, 64, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap();
    assert_eq!(n.modifier, Modifier::Linear);
}

#[test]
fn format_preference_follows_the_request() {
    let t = guest_like();
    let d = t.discover();
    let fb = feedback(vec![], vec![entry(XR24, LINEAR), entry(NV12, LINEAR)]);
    let req = Request::new(
        1280,
        720,
        vec![Fourcc::Nv12, Fourcc::Xrgb8888],
        Usage::default(),
    );
    let n = negotiate(&d, &fb, &req).unwrap();
    assert_eq!(n.fourcc, Fourcc::Nv12);
    assert_eq!(n.layout.planes.len(), 2);
    let req = Request::new(1280, 720, vec![Fourcc::Yuyv], Usage::default());
    let err = negotiate(&d, &fb, &req).unwrap_err().to_string();
    assert!(err.contains("no YUYV (offers XR24 NV12)"), "{err}");
}

#[test]
fn extra_devices_join_the_intersection() {
    // A camera (vivid.0, contiguous) writes a buffer that vgem composites.
    let t = guest_like();
    let d = t.discover();
    let fb = feedback(vec![], vec![entry(NV12, LINEAR)]);
    let mut req = Request::new(
        1280,
        720,
        vec![Fourcc::Nv12],
        Usage {
            capture: true,
            ..Default::default()
        },
    );
    req.extra_devices.push(VIVID);
    let n = negotiate(&d, &fb, &req).unwrap();
    // The first of vgem's links that vivid.0 (32-bit) links to too.
    assert_eq!(n.heap.name, "system-32bit-contiguous");
    assert!(n.intersection.contiguous);
    assert_eq!(n.devices.len(), 2, "vgem deduplicated, vivid.0 added");
}

#[test]
fn unknown_devices_and_empty_feedback_are_explained() {
    let t = guest_like();
    let d = t.discover();
    let fb = Feedback {
        main_device: heapland_allocator::DeviceNumber::new(9, 9),
        tranches: vec![Tranche {
            target_device: VKMS,
            formats: vec![entry(XR24, LINEAR)],
            scanout: true,
        }],
    };
    let err = negotiate(
        &d,
        &fb,
        &Request::new(64, 64, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no sysfs device"), "{err}");
    let fb = Feedback {
        main_device: VGEM,
        tranches: vec![],
    };
    let err = negotiate(
        &d,
        &fb,
        &Request::new(64, 64, vec![Fourcc::Xrgb8888], scanout()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no tranches"), "{err}");
}

fn table(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, m) in entries {
        out.extend_from_slice(&f.to_ne_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&m.to_ne_bytes());
    }
    out
}

#[test]
fn wire_feedback_decodes_and_rejects_malformed_input() {
    let tbl = table(&[(XR24, LINEAR), (NV12, LINEAR), (XR24, X_TILED)]);
    let main = VGEM.to_dev_t().to_ne_bytes();
    let target = VKMS.to_dev_t().to_ne_bytes();
    let idx: Vec<u8> = [2u16, 0].iter().flat_map(|i| i.to_ne_bytes()).collect();
    let fb = Feedback::from_wire(
        &main,
        &tbl,
        &[WireTranche {
            target_device: &target,
            formats: &idx,
            flags: 1,
        }],
    )
    .unwrap();
    assert_eq!(fb.main_device, VGEM);
    assert_eq!(
        fb.tranches,
        [Tranche {
            target_device: VKMS,
            formats: vec![entry(XR24, X_TILED), entry(XR24, LINEAR)],
            scanout: true
        }]
    );

    let bad_index: Vec<u8> = 3u16.to_ne_bytes().to_vec();
    let err = Feedback::from_wire(
        &main,
        &tbl,
        &[WireTranche {
            target_device: &target,
            formats: &bad_index,
            flags: 0,
        }],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("index 3 beyond the format table of 3 entries"),
        "{err}"
    );
    assert!(Feedback::from_wire(&main, &tbl[..15], &[]).is_err());
    assert!(Feedback::from_wire(&main[..4], &tbl, &[]).is_err());
    assert!(Feedback::from_wire(
        &main,
        &tbl,
        &[WireTranche {
            target_device: &target,
            formats: &[0],
            flags: 0
        }]
    )
    .is_err());
}

#[test]
fn version_6_feedback_takes_its_main_device_from_the_first_sampling_tranche() {
    let tbl = table(&[(XR24, LINEAR)]);
    let scanout = VKMS.to_dev_t().to_ne_bytes();
    let render = VGEM.to_dev_t().to_ne_bytes();
    let idx = 0u16.to_ne_bytes();
    let tranches = [
        WireTranche {
            target_device: &scanout,
            formats: &idx,
            flags: 1,
        },
        WireTranche {
            target_device: &render,
            formats: &idx,
            flags: 2,
        },
    ];
    let fb = Feedback::from_wire(&[], &tbl, &tranches).unwrap();
    assert_eq!(fb.main_device, VGEM);
    assert_eq!(fb.tranches.len(), 2);
    assert!(fb.tranches[0].scanout && !fb.tranches[1].scanout);
    // Without main_device and without a sampling tranche there is no
    // device that composites: an error, not a guess.
    let err = Feedback::from_wire(&[], &tbl, &tranches[..1]).unwrap_err();
    assert!(err.to_string().contains("sampling"), "{err}");
}

#[test]
fn the_target_devices_order_wins() {
    // Two heaps both devices link to, ranked differently by each.
    let t = FakeTree::new();
    t.heap("system-contiguous", system_contiguous())
        .heap("system-32bit-contiguous", system_32bit_contiguous())
        .system_heap()
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links(
            "platform/vkms",
            &["system-contiguous", "system-32bit-contiguous"],
        )
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .links(
            "platform/vgem",
            &["system-32bit-contiguous", "system-contiguous"],
        );
    let d = t.discover();
    let fb = feedback(vec![entry(XR24, LINEAR)], vec![entry(XR24, LINEAR)]);
    let req = Request::new(1024, 768, vec![Fourcc::Xrgb8888], scanout());
    let n = negotiate(&d, &fb, &req).unwrap();
    assert_eq!((n.tranche, n.heap.name.as_str()), (1, "system-contiguous"));
    let req = Request::new(1024, 768, vec![Fourcc::Xrgb8888], Usage::default());
    let n = negotiate(&d, &fb, &req).unwrap();
    assert_eq!(
        (n.tranche, n.heap.name.as_str()),
        (0, "system-32bit-contiguous")
    );
    // vgem's tranche composited by vkms: vgem's order still leads.
    let fb = Feedback {
        main_device: VKMS,
        tranches: vec![Tranche {
            target_device: VGEM,
            formats: vec![entry(XR24, LINEAR)],
            scanout: false,
        }],
    };
    let n = negotiate(&d, &fb, &req).unwrap();
    let names: Vec<&str> = n.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["vgem", "vkms"]);
    assert_eq!(n.heap.name, "system-32bit-contiguous");
}
