//! In-guest tests of `heapland-allocator` against the real heaps, vkms, vgem
//! and vivid: discovery and dev_t resolution on the real sysfs, allocation for
//! each device and for all three at once, Smithay's `Swapchain` over
//! `DmaHeapAllocator`, and the GBM-free framebuffer exporter on vkms.

use std::{fs, os::fd::AsFd, path::PathBuf};

use heapland_allocator::{
    allocator_for, choose, explain_choice, negotiate, resolve_devices,
    smithay::{
        backend::{
            allocator::{dmabuf::Dmabuf, Allocator, Buffer, Fourcc, Modifier, Swapchain},
            drm::{
                exporter::{ExportBuffer, ExportFramebuffer},
                DrmDeviceFd,
            },
        },
        reexports::drm::control::Device as _,
        utils::DeviceFd,
    },
    CpuAccess, DeviceInfo, DeviceNumber, Discovery, Feedback, FormatEntry, HeapFramebufferExporter,
    HeapKind, Request, Tranche, Usage,
};

use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "allocator::discovery_finds_real_heaps",
            run: discovery_finds_real_heaps,
        },
        Test {
            name: "allocator::resolves_real_dev_t",
            run: resolves_real_dev_t,
        },
        Test {
            name: "allocator::alloc_for_vkms",
            run: || alloc_for(&["vkms"]),
        },
        Test {
            name: "allocator::alloc_for_vgem",
            run: || alloc_for(&["vgem"]),
        },
        Test {
            name: "allocator::alloc_for_vivid",
            run: || alloc_for(&["vivid.0"]),
        },
        Test {
            name: "allocator::alloc_for_vkms_vgem_vivid",
            run: || alloc_for(&["vkms", "vgem", "vivid.0"]),
        },
        Test {
            name: "allocator::shared_buffer_imports_into_vgem_and_vkms",
            run: shared_buffer_imports,
        },
        Test {
            name: "allocator::system_heap_and_udmabuf_allocate",
            run: system_and_udmabuf,
        },
        Test {
            name: "allocator::negotiate_real_feedback",
            run: negotiate_real_feedback,
        },
        Test {
            name: "allocator::swapchain_reuses_heap_buffers",
            run: swapchain_reuses_buffers,
        },
        Test {
            name: "allocator::export_framebuffer_on_vkms",
            run: export_framebuffer_on_vkms,
        },
    ]
}

/// Character nodes of the guest's devices, by the DMA device's name.
fn nodes() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["/dev/dri", "/dev"] {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("card") || n.starts_with("renderD") || n.starts_with("video") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The first node (card before renderD, video0 first) whose DMA device is `name`.
fn node_of(d: &Discovery, name: &str) -> Result<(PathBuf, DeviceInfo), String> {
    for path in nodes() {
        let Ok(num) = DeviceNumber::of_path(&path) else {
            continue;
        };
        if let Ok(info) = d.resolve(num) {
            if info.name == name {
                return Ok((path, info));
            }
        }
    }
    Err(format!(
        "no /dev node whose device is {name} (nodes: {:?})",
        nodes()
    ))
}

fn discovery_finds_real_heaps() -> Result<(), String> {
    let d = Discovery::scan();
    if let Some(reason) = d.empty_reason() {
        return Err(reason);
    }
    let names: Vec<&str> = d.heaps().iter().map(|h| h.name.as_str()).collect();
    println!("INFO allocator: heaps {names:?}, skipped {:?}", d.skipped());
    for dev in ["vkms", "vgem", "vivid.0"] {
        let h = d
            .heaps()
            .iter()
            .find(|h| h.kind == HeapKind::Device && h.served.iter().any(|s| s.name == dev))
            .ok_or_else(|| format!("no device heap serving {dev} in {names:?}"))?;
        let p = &h.properties;
        if !matches!(p.dma_mask_bits, Some(1..=64))
            || p.max_alloc_bytes == 0
            || !p.alignment_bytes.is_power_of_two()
        {
            return Err(format!("implausible properties of {}: {p:?}", h.name));
        }
        if h.name.ends_with("-contiguous") != p.contiguous {
            return Err(format!(
                "{}: name and contiguous={} disagree",
                h.name, p.contiguous
            ));
        }
    }
    let system = d.heap("system").ok_or("no system heap found")?;
    if system.kind != HeapKind::System {
        return Err(format!("system heap misclassified: {system:?}"));
    }
    if d.heap("udmabuf").map(|h| h.kind) != Some(HeapKind::Udmabuf) {
        return Err("/dev/udmabuf not found (CONFIG_UDMABUF=y in the guest kernel)".into());
    }
    // On heap-core kernels a removed device heap leaves its node behind (the core cannot
    // remove one) with no properties: skipping it is right. Nothing else may be skipped.
    let core = super::dma_heap::kernel_has_heap_core()?;
    let unexpected: Vec<_> = d
        .skipped()
        .iter()
        .filter(|s| {
            let lingering = core
                && std::path::Path::new(super::dma_heap::CORE_CLASS)
                    .join(&s.name)
                    .exists()
                && !std::path::Path::new(super::dma_heap::CLASS)
                    .join(&s.name)
                    .exists();
            if lingering {
                println!(
                    "INFO allocator: skipped the node of removed heap {}",
                    s.name
                );
            }
            !lingering
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(format!("heaps skipped on the real system: {unexpected:?}"));
    }
    Ok(())
}

fn resolves_real_dev_t() -> Result<(), String> {
    let d = Discovery::scan();
    for dev in ["vkms", "vgem", "vivid.0"] {
        let (path, info) = node_of(&d, dev)?;
        let serving = d.heaps_serving(&info);
        if serving.is_empty() {
            return Err(format!(
                "{} ({dev}): no heap found through its dev_t",
                path.display()
            ));
        }
        // In the order of the device's own links, each heap listing it as served.
        let links: Vec<String> = super::dma_heap::links(&info.sysfs_path)?
            .into_iter()
            .map(|l| l.name)
            .collect();
        let names: Vec<String> = serving.iter().map(|h| h.name.clone()).collect();
        if names != links {
            return Err(format!(
                "{dev}: heaps {names:?}, its dma_heaps/ links {links:?}"
            ));
        }
        if let Some(h) = serving
            .iter()
            .find(|h| h.kind == HeapKind::Device && !h.served.iter().any(|s| s.name == dev))
        {
            return Err(format!("{dev}: {} does not list it as served", h.name));
        }
        println!(
            "INFO allocator: {} -> {} -> {:?}",
            path.display(),
            info.sysfs_path.display(),
            info.heap_names
        );
    }
    // vgem's render node resolves like its card.
    let (_, vgem) = node_of(&d, "vgem")?;
    let render = fs::read_dir("/dev/dri")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("renderD"))
        })
        .find_map(|p| {
            let info = d.resolve(DeviceNumber::of_path(&p).ok()?).ok()?;
            (info.name == "vgem").then_some(info)
        })
        .ok_or("no vgem render node")?;
    if render.heap_names != vgem.heap_names {
        return Err(format!(
            "renderD {:?} != card {:?}",
            render.heap_names, vgem.heap_names
        ));
    }
    Ok(())
}

/// Allocates 1080p XRGB8888 and 720p NV12 for the named devices, checks the
/// heap fits them all, that memory is zeroed and survives a CPU write/read
/// through the sync guards, and that the buffer shows up named in debugfs.
fn alloc_for(devs: &[&str]) -> Result<(), String> {
    let d = Discovery::scan();
    let devices: Vec<DeviceInfo> = devs
        .iter()
        .map(|n| node_of(&d, n).map(|(_, i)| i))
        .collect::<Result<_, _>>()?;
    for (fourcc, w, h) in [(Fourcc::Xrgb8888, 1920, 1080), (Fourcc::Nv12, 1280, 720)] {
        let (info, layout, inter) =
            choose(&d, &devices, &[], fourcc, w, h).map_err(|e| e.to_string())?;
        if inter.contiguous && !info.properties.contiguous {
            return Err(format!(
                "{devs:?} need contiguous memory, got {}",
                info.name
            ));
        }
        if devices.len() == 1 && !info.serves(&devices[0]) {
            return Err(format!(
                "{} does not serve {} (system-wide heap chosen over the device's)",
                info.name, devs[0]
            ));
        }
        // The choice follows the kernel's order: the first heap in the first device's
        // links that every device links to (every heap they share fits these sizes).
        let first = super::dma_heap::links(&devices[0].sysfs_path)?;
        let others: Vec<Vec<String>> = devices[1..]
            .iter()
            .map(|d| {
                super::dma_heap::links(&d.sysfs_path)
                    .map(|l| l.into_iter().map(|l| l.name).collect())
            })
            .collect::<Result<_, _>>()?;
        let want = first
            .iter()
            .map(|l| &l.name)
            .find(|n| others.iter().all(|o| o.contains(n)));
        if want != Some(&info.name) {
            return Err(format!(
                "{devs:?} {fourcc} {w}x{h}: chose {}, the links put {want:?} first",
                info.name
            ));
        }
        println!(
            "INFO allocator: {devs:?} {fourcc} {w}x{h} -> {} ({} bytes, planes {:?})",
            info.name, layout.size, layout.planes
        );
        // The allocator of the chosen heap lays the buffer out as the choice did.
        let mut allocator = explain_choice(&d, &devices, &[], fourcc, w, h)
            .and_then(|e| e.allocator())
            .map_err(|e| e.to_string())?
            .with_label("heapland");
        if allocator.heap().name() != info.name {
            return Err(format!(
                "the allocator's heap {} is not the chosen {}",
                allocator.heap().name(),
                info.name
            ));
        }
        let buf = allocator
            .create_buffer(w, h, fourcc, &[Modifier::Linear])
            .map_err(|e| e.to_string())?;
        let planes: Vec<(u32, u32)> = buf.offsets().zip(buf.strides()).collect();
        let want: Vec<(u32, u32)> = layout.planes.iter().map(|p| (p.offset, p.stride)).collect();
        if planes != want {
            return Err(format!(
                "the Dmabuf's planes {planes:?}, the layout's {want:?}"
            ));
        }
        // Plane 0's mapping runs to the end of the dma-buf: the whole buffer.
        {
            // SAFETY: a fresh buffer no one else holds.
            let r = unsafe { CpuAccess::read(&buf, 0) }.map_err(|e| e.to_string())?;
            if r.bytes().len() as u64 != layout.alloc_size() {
                return Err(format!(
                    "mapped {} bytes, expected {}",
                    r.bytes().len(),
                    layout.alloc_size()
                ));
            }
            if let Some(i) = r.bytes().iter().position(|&b| b != 0) {
                return Err(format!("{}: fresh buffer not zeroed at {i}", info.name));
            }
        }
        {
            // SAFETY: as above; the read access ended.
            let mut wr = unsafe { CpuAccess::write(&buf, 0) }.map_err(|e| e.to_string())?;
            let bytes = wr.bytes_mut().ok_or("a write access without bytes")?;
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
        }
        // SAFETY: as above; the write access ended.
        let r = unsafe { CpuAccess::read(&buf, 0) }.map_err(|e| e.to_string())?;
        if let Some(i) = r
            .bytes()
            .iter()
            .enumerate()
            .position(|(i, &b)| b != (i % 251) as u8)
        {
            return Err(format!("{}: byte {i} differs after write", info.name));
        }
        drop(r);
        let bufinfo = fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo").unwrap_or_default();
        let name = format!("heapland {w}x{h} {fourcc}");
        if !bufinfo.is_empty() && !bufinfo.contains(&name) {
            return Err(format!("DMA_BUF_SET_NAME: {name:?} not in bufinfo"));
        }
    }
    Ok(())
}

fn shared_buffer_imports() -> Result<(), String> {
    let d = Discovery::scan();
    let (vkms_path, vkms) = node_of(&d, "vkms")?;
    let (vgem_path, vgem) = node_of(&d, "vgem")?;
    let (_, vivid) = node_of(&d, "vivid.0")?;
    let mut allocator = explain_choice(&d, &[vkms, vgem, vivid], &[], Fourcc::Xrgb8888, 1024, 768)
        .and_then(|e| e.allocator())
        .map_err(|e| e.to_string())?;
    let buf = allocator
        .create_buffer(1024, 768, Fourcc::Xrgb8888, &[Modifier::Linear])
        .map_err(|e| e.to_string())?;
    let name = allocator.heap().name();
    for path in [&vgem_path, &vkms_path] {
        let fd = open_drm(path)?;
        let plane = buf.handles().next().ok_or("no plane")?;
        let handle = fd
            .prime_fd_to_buffer(plane)
            .map_err(|e| format!("PRIME import of {name} into {}: {e}", path.display()))?;
        fd.close_buffer(handle)
            .map_err(|e| format!("GEM close: {e}"))?;
    }
    Ok(())
}

fn system_and_udmabuf() -> Result<(), String> {
    let d = Discovery::scan();
    for name in ["system", "udmabuf"] {
        let info = d.heap(name).ok_or_else(|| format!("no {name}"))?;
        let heap = info.open().map_err(|e| e.to_string())?;
        let fd = heap.allocate(3 * 4096 + 1).map_err(|e| e.to_string())?;
        let len = super::dma_buf::size(fd.as_fd())?;
        if len != 4 * 4096 {
            return Err(format!(
                "{name}: 3 pages and a byte gave {len} bytes, not 4 pages"
            ));
        }
        super::dma_buf::fill(fd.as_fd(), len as usize, 0x5a)?;
        super::dma_buf::check(fd.as_fd(), len as usize, 0x5a)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn negotiate_real_feedback() -> Result<(), String> {
    let d = Discovery::scan();
    let (_, vkms) = node_of(&d, "vkms")?;
    let (_, vgem) = node_of(&d, "vgem")?;
    let xr24 = Fourcc::Xrgb8888 as u32;
    let fb = Feedback {
        main_device: vgem.number,
        tranches: vec![
            Tranche {
                target_device: vgem.number,
                formats: vec![FormatEntry {
                    format: xr24,
                    modifier: 0,
                }],
                scanout: false,
            },
            Tranche {
                target_device: vkms.number,
                formats: vec![FormatEntry {
                    format: xr24,
                    modifier: 0,
                }],
                scanout: true,
            },
        ],
    };
    let req = Request::new(
        1024,
        768,
        vec![Fourcc::Xrgb8888],
        Usage {
            scanout: true,
            ..Default::default()
        },
    );
    let n = negotiate(&d, &fb, &req).map_err(|e| e.to_string())?;
    if n.tranche != 1 || !n.heap.serves(&vkms) {
        return Err(format!(
            "expected the scanout tranche on a vkms heap, got tranche {} heap {}",
            n.tranche, n.heap.name
        ));
    }
    // The chosen heap really allocates.
    let heap = n.heap.open().map_err(|e| e.to_string())?;
    heap.allocate(n.layout.alloc_size())
        .map_err(|e| e.to_string())?;
    let _ = resolve_devices(&d, &[vkms.number]).map_err(|e| e.to_string())?;
    Ok(())
}

fn open_drm(path: &std::path::Path) -> Result<DrmDeviceFd, String> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    Ok(DrmDeviceFd::new(DeviceFd::from(fd)))
}

fn live_buffers() -> Option<u64> {
    fs::read_to_string("/sys/kernel/debug/device_heap/live_buffers")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn swapchain_reuses_buffers() -> Result<(), String> {
    let d = Discovery::scan();
    let (_, vkms) = node_of(&d, "vkms")?;
    let alloc = allocator_for(&d, &[vkms.number], Fourcc::Xrgb8888, 1024, 768)
        .map_err(|e| e.to_string())?;
    let before = live_buffers();
    let mut chain = Swapchain::new(alloc, 1024, 768, Fourcc::Xrgb8888, vec![Modifier::Linear]);
    let a = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if a.age() != 0 {
        return Err(format!("fresh buffer has age {}", a.age()));
    }
    let first: Dmabuf = (*a).clone();
    if first.size().w != 1024
        || first.format().code != Fourcc::Xrgb8888
        || first.format().modifier != Modifier::Linear
    {
        return Err(format!("buffer is {:?} {:?}", first.size(), first.format()));
    }
    chain.submitted(&a);
    drop(a);
    let b = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if *b != first || b.age() != 1 {
        return Err(format!(
            "expected the first buffer back with age 1, got same={} age={}",
            *b == first,
            b.age()
        ));
    }
    // Holding it, the next acquire needs a second buffer.
    let c = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if *c == first || c.age() != 0 {
        return Err("second slot reused the held buffer".into());
    }
    chain.submitted(&c);
    drop(c);
    chain.submitted(&b);
    drop(b);
    let e = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if *e != first || e.age() != 1 {
        return Err(format!(
            "after two submits the newest buffer should come back with age 1, got age {}",
            e.age()
        ));
    }
    let f = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if f.age() != 2 {
        return Err(format!("older buffer age {} != 2", f.age()));
    }
    if let (Some(b0), Some(now)) = (before, live_buffers()) {
        if now != b0 + 2 {
            return Err(format!(
                "live buffers {b0} -> {now}: the swapchain allocated {} buffers for two slots",
                now - b0
            ));
        }
    }
    drop((e, f));
    chain.reset_buffers();
    let g = chain
        .acquire()
        .map_err(|e| e.to_string())?
        .ok_or("no free slot")?;
    if *g == first || g.age() != 0 {
        return Err("reset_buffers kept the old buffer".into());
    }
    drop(g);
    drop(first);
    drop(chain);
    if let (Some(b0), Some(now)) = (before, live_buffers()) {
        if now != b0 {
            return Err(format!(
                "live buffers {b0} -> {now} after the swapchain was dropped"
            ));
        }
    }
    Ok(())
}

fn export_framebuffer_on_vkms() -> Result<(), String> {
    let d = Discovery::scan();
    let (path, vkms) = node_of(&d, "vkms")?;
    let drm = open_drm(&path)?;
    let mut alloc = allocator_for(&d, &[vkms.number], Fourcc::Xrgb8888, 1024, 768)
        .map_err(|e| e.to_string())?;
    let exporter = HeapFramebufferExporter::new(&drm, None);
    if exporter.own_file().is_none() {
        return Err("the exporter imports on the display's file: it could not open its own".into());
    }
    for (fourcc, opaque, expect) in [
        (Fourcc::Xrgb8888, false, Fourcc::Xrgb8888),
        (Fourcc::Argb8888, true, Fourcc::Xrgb8888),
    ] {
        let buf = alloc
            .create_buffer(1024, 768, fourcc, &[Modifier::Linear])
            .map_err(|e| e.to_string())?;
        if !exporter.can_add_framebuffer(&ExportBuffer::Allocator(&buf)) {
            return Err("exporter refuses an allocator buffer".into());
        }
        let fb = exporter
            .add_framebuffer(&drm, ExportBuffer::Allocator(&buf), opaque)
            .map_err(|e| e.to_string())?
            .ok_or("exporter returned no framebuffer")?;
        let handle = *fb.as_ref();
        let info = drm
            .get_planar_framebuffer(handle)
            .map_err(|e| format!("GETFB2: {e}"))?;
        if info.size() != (1024, 768) || info.pixel_format() != expect || info.pitches()[0] != 4096
        {
            return Err(format!(
                "framebuffer is {:?} {:?} pitch {}, expected 1024x768 {expect} pitch 4096",
                info.size(),
                info.pixel_format(),
                info.pitches()[0]
            ));
        }
        if info.modifier() != Some(Modifier::Linear) {
            return Err(format!("framebuffer modifier {:?}", info.modifier()));
        }
        drop(fb);
        if drm.get_framebuffer(handle).is_ok() {
            return Err("framebuffer still exists after drop".into());
        }
    }
    // The same buffer can be exported many times: GEM handles are closed,
    // nothing piles up.
    let buf = alloc
        .create_buffer(64, 64, Fourcc::Xrgb8888, &[])
        .map_err(|e| e.to_string())?;
    // A handle someone else (Mesa, here the test) holds on the display's
    // file for the same dma-buf survives them all: the exporter imports and
    // closes on its own file.
    let plane = buf.handles().next().ok_or("no plane")?;
    let theirs = drm
        .prime_fd_to_buffer(plane)
        .map_err(|e| format!("PRIME import on the display's file: {e}"))?;
    for _ in 0..64 {
        exporter
            .add_framebuffer(&drm, ExportBuffer::Allocator(&buf), false)
            .map_err(|e| e.to_string())?
            .ok_or("no framebuffer")?;
    }
    drm.buffer_to_prime_fd(theirs, 0).map_err(|e| {
        format!("the display file's own GEM handle is gone after the exporter's imports: {e}")
    })?;
    drm.close_buffer(theirs)
        .map_err(|e| format!("GEM close: {e}"))?;
    println!("INFO allocator: 64 exports on the exporter's own file left the display file's GEM handle alone");
    Ok(())
}
