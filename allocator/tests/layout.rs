//! Layouts of every listed format, checked against the kernel's
//! `drm_format_info` (drivers/gpu/drm/drm_fourcc.c, 6.12).

use heapland_allocator::{
    drm_fourcc::DrmFourcc as Fourcc, format_info, Alignment, Layout, LayoutError, PlaneLayout,
};

/// (format, num_planes, cpp, hsub, vsub) copied from drm_fourcc.c.
const KERNEL: &[(Fourcc, u8, [u8; 3], u8, u8)] = &[
    (Fourcc::Rgb565, 1, [2, 0, 0], 1, 1),
    (Fourcc::Xrgb8888, 1, [4, 0, 0], 1, 1),
    (Fourcc::Xbgr8888, 1, [4, 0, 0], 1, 1),
    (Fourcc::Xrgb2101010, 1, [4, 0, 0], 1, 1),
    (Fourcc::Argb8888, 1, [4, 0, 0], 1, 1),
    (Fourcc::Abgr8888, 1, [4, 0, 0], 1, 1),
    (Fourcc::Yuv420, 3, [1, 1, 1], 2, 2),
    (Fourcc::Nv12, 2, [1, 2, 0], 2, 2),
    (Fourcc::Nv16, 2, [1, 2, 0], 2, 1),
    (Fourcc::Yuyv, 1, [2, 0, 0], 2, 1),
    // P010: char_per_block {2, 4, 0}, block 1x1.
    (Fourcc::P010, 2, [2, 4, 0], 2, 2),
];

#[test]
fn format_table_matches_the_kernel() {
    for &(f, planes, cpp, hsub, vsub) in KERNEL {
        let info = format_info(f).unwrap_or_else(|| panic!("{f} missing"));
        assert_eq!(
            (info.num_planes, info.cpp, info.hsub, info.vsub),
            (planes, cpp, hsub, vsub),
            "{f}"
        );
    }
    assert!(format_info(Fourcc::Nv21).is_none());
}

/// The kernel's minimum pitch and plane height, as `drm_format_info_min_pitch`
/// and `drm_format_info_plane_{width,height}` compute them.
fn kernel_planes(f: Fourcc, w: u32, h: u32) -> Vec<(u64, u64)> {
    let &(_, planes, cpp, hsub, vsub) = KERNEL.iter().find(|k| k.0 == f).unwrap();
    (0..usize::from(planes))
        .map(|p| {
            let (pw, ph) = if p == 0 {
                (w, h)
            } else {
                (w.div_ceil(hsub.into()), h.div_ceil(vsub.into()))
            };
            (u64::from(pw) * u64::from(cpp[p]), u64::from(ph))
        })
        .collect()
}

#[test]
fn tight_layouts_use_the_kernel_minimum_pitches() {
    for &(f, ..) in KERNEL {
        for (w, h) in [(1920, 1080), (1280, 720), (641, 479), (1, 1)] {
            let l = Layout::new(f, w, h, Alignment::TIGHT).unwrap();
            let k = kernel_planes(f, w, h);
            assert_eq!(l.planes.len(), k.len(), "{f}");
            let mut end = 0;
            for (p, (plane, (pitch, rows))) in l.planes.iter().zip(&k).enumerate() {
                assert_eq!(
                    u64::from(plane.stride),
                    *pitch,
                    "{f} {w}x{h} plane {p} pitch"
                );
                assert_eq!(plane.size, pitch * rows, "{f} {w}x{h} plane {p} size");
                assert_eq!(u64::from(plane.offset), end, "{f} {w}x{h} plane {p} offset");
                end += plane.size;
            }
            assert_eq!(l.size, end);
        }
    }
}

#[test]
fn aligned_layouts_honour_pitch_and_offset_alignment() {
    let a = Alignment {
        pitch: 256,
        offset: 65536,
    };
    for &(f, ..) in KERNEL {
        let l = Layout::new(f, 641, 479, a).unwrap();
        for (plane, (pitch, rows)) in l.planes.iter().zip(kernel_planes(f, 641, 479)) {
            assert_eq!(plane.stride % 256, 0, "{f}");
            assert!(
                u64::from(plane.stride) >= pitch && u64::from(plane.stride) < pitch + 256,
                "{f}"
            );
            assert_eq!(plane.offset % 65536, 0, "{f}");
            assert_eq!(plane.size, u64::from(plane.stride) * rows);
        }
        assert_eq!(l.alloc_size() % 4096, 0);
        assert!(l.alloc_size() >= l.size);
    }
}

#[test]
fn known_default_layouts() {
    let nv12 = Layout::new(Fourcc::Nv12, 1280, 720, Alignment::default()).unwrap();
    assert_eq!(
        nv12.planes,
        [
            PlaneLayout {
                offset: 0,
                stride: 1280,
                size: 921_600
            },
            PlaneLayout {
                offset: 921_600,
                stride: 1280,
                size: 460_800
            },
        ]
    );
    assert_eq!(nv12.size, 1_382_400);
    let xrgb = Layout::new(Fourcc::Xrgb8888, 1920, 1080, Alignment::default()).unwrap();
    assert_eq!(
        xrgb.planes,
        [PlaneLayout {
            offset: 0,
            stride: 7680,
            size: 8_294_400
        }]
    );
    let yuv = Layout::new(Fourcc::Yuv420, 1920, 1080, Alignment::default()).unwrap();
    // Y 1920x1080, U and V 960x540 each (pitch 960 aligned to 64 = 960).
    assert_eq!(
        yuv.planes[1],
        PlaneLayout {
            offset: 2_076_672,
            stride: 960,
            size: 518_400
        }
    );
    assert_eq!(yuv.planes[2].offset, 2_596_864);
    let rgb565 = Layout::new(Fourcc::Rgb565, 1366, 768, Alignment::default()).unwrap();
    assert_eq!(rgb565.planes[0].stride, 2752); // 2732 rounded up to 64
}

#[test]
fn bad_sizes_and_formats_are_errors() {
    assert!(matches!(
        Layout::new(Fourcc::Nv12, 0, 720, Alignment::default()),
        Err(LayoutError::InvalidSize { .. })
    ));
    let err = Layout::new(Fourcc::Xrgb8888, u32::MAX, 2, Alignment::default()).unwrap_err();
    assert!(err.to_string().contains("32 bits"), "{err}");
    let err = Layout::new(Fourcc::C8, 64, 64, Alignment::default()).unwrap_err();
    assert!(matches!(err, LayoutError::UnsupportedFormat(Fourcc::C8)));
    assert!(err.to_string().contains("C8"), "{err}");
}
