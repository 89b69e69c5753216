//! Scatter-gather heaps. The module picks contiguous backing for every device /init names
//! (none of vkms, vgem, vivid.0 sits behind an IOMMU), so the sg path is exercised by
//! adding `vgem-sg` and `vkms-sg` through /sys/class/device_heap/add at the start of the
//! `heap` phase: every test of the `heap` and `drm` phases then runs on them too (basics,
//! bad input, discovery, concurrency, 1000 buffers, vgem PRIME, vkms scanout and
//! writeback through vmap of scattered pages). The end of the `drm` phase removes them,
//! so later phases see the boot state.

use std::path::Path;

use super::discovery::check_sane;
use super::dma_heap::{self, HeapInfo};
use super::Test;

/// First test of the `heap` phase.
pub fn add_tests() -> Vec<Test> {
    vec![Test {
        name: "sg::add_sg_heaps_for_vgem_and_vkms",
        run: add_sg_heaps,
    }]
}

/// Last tests of the `drm` phase.
pub fn remove_tests() -> Vec<Test> {
    vec![
        Test {
            name: "sg::vkms_scans_out_buffers_of_a_removed_heap",
            run: vkms_scans_out_buffers_of_a_removed_heap,
        },
        Test {
            name: "sg::remove_sg_heaps",
            run: remove_sg_heaps,
        },
    ]
}

/// Buffers outlive their heap even while a display uses them: import two vkms-sg buffers
/// into vkms, remove the heap, then scan one out and write back into the other.
fn vkms_scans_out_buffers_of_a_removed_heap() -> Result<(), String> {
    use std::os::fd::AsFd;
    let heap = super::dma_heap::Heap::open("vkms-sg")?;
    let size = (1024, 768);
    let len = 1024 * 768 * 4;
    let src = heap.alloc(len)?;
    let dst = heap.alloc(len)?;
    let card = super::vkms::open_card()?;
    let mark = super::kernel_log::Mark::new("vkms scanout after heap removal");
    super::vkms::scanout_buffers(&card, &src, &dst, size, &|| {
        dma_heap::control("remove", "vkms-sg")?;
        if Path::new(dma_heap::CLASS).join("vkms-sg").exists() {
            return Err("vkms-sg still listed after remove".into());
        }
        match dma_heap::alloc(heap.fd.as_fd(), 4096) {
            Err(rustix::io::Errno::NODEV) => Ok(()),
            other => Err(format!(
                "allocation from the removed heap: {other:?}, expected ENODEV"
            )),
        }
    })?;
    drop((src, dst, card, heap));
    mark.check_clean()
}

const DEVICES: &[&str] = &["vgem", "vkms"];

fn add_sg_heaps() -> Result<(), String> {
    let errs: Vec<String> = DEVICES
        .iter()
        .filter_map(|dev| add_sg_heap(dev).err())
        .collect();
    super::all_ok(errs)
}

fn add_sg_heap(dev: &str) -> Result<(), String> {
    let name = format!("{dev}-sg");
    if !Path::new(dma_heap::CLASS).join(&name).exists() {
        dma_heap::control("add", &dma_heap::spec(dev, Some("sg"))?)?;
    }
    let served = dma_heap::device_dir(dev).map_err(|e| format!("{dev}: {e}"))?;
    let info = HeapInfo::by_name(&name)?;
    if info.backing != "sg" || info.contiguous {
        return Err(format!(
            "{name}: backing {} contiguous {}, expected sg/0",
            info.backing, info.contiguous as u8
        ));
    }
    check_sane(&info, &served, false)?;
    let listed = dma_heap::heaps_serving(&served)?;
    if !listed.iter().any(|h| h.name == name) {
        return Err(format!("{name} not under {}/device_heap", served.display()));
    }
    if !Path::new("/dev/dma_heap").join(&name).exists() {
        return Err(format!("/dev/dma_heap/{name} missing"));
    }
    Ok(())
}

fn remove_sg_heaps() -> Result<(), String> {
    let mut errs = Vec::new();
    for dev in DEVICES {
        let name = format!("{dev}-sg");
        if !Path::new(dma_heap::CLASS).join(&name).exists() {
            continue; // never added: add_sg_heaps_for_vgem_and_vkms said why
        }
        if let Err(e) = dma_heap::control("remove", &name) {
            errs.push(e);
            continue;
        }
        if Path::new(dma_heap::CLASS).join(&name).exists() {
            errs.push(format!("{name} still in {} after remove", dma_heap::CLASS));
        }
        if let Err(e) = dma_heap::check_removed_node(&name) {
            errs.push(e);
        }
    }
    match dma_heap::debugfs_counter("live_buffers") {
        Ok(0) => {}
        Ok(n) => errs.push(format!("live_buffers {n} at the end of the drm phase")),
        Err(e) => errs.push(e),
    }
    super::all_ok(errs)
}
