//! Scatter-gather heaps. The module picks contiguous backing for every device /init names
//! (none of vkms, vgem, vivid.0 sits behind an IOMMU), so the sg path is exercised by
//! serving vgem, vkms and vivid.0 with ":sg" too, through /sys/class/device_heap/add at
//! the start of the `heap` phase. vivid.0 reaches 32 bits: the module makes
//! `system-32bit` for it, which vkms and vgem (64 bits, gathering pages now) link to as
//! well, after the kernel's `system`. Every test of the `heap` and `drm` phases then runs
//! on it too (basics, bad input, discovery, concurrency, 1000 buffers, vgem PRIME, vkms
//! scanout and writeback through vmap of scattered pages). The end of the `drm` phase
//! removes the entries, so later phases see the boot state.

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

/// The module's scattered heap made for vivid.0's 32-bit reach.
const SG_HEAP: &str = "system-32bit";

/// Buffers outlive their heap even while a display uses them: import two `system-32bit`
/// buffers into vkms, stop serving vivid.0 with ":sg" (the heap's only reason), then scan
/// one out and write back into the other.
fn vkms_scans_out_buffers_of_a_removed_heap() -> Result<(), String> {
    use std::os::fd::AsFd;
    let heap = super::dma_heap::Heap::open(SG_HEAP)?;
    let size = (1024, 768);
    let len = 1024 * 768 * 4;
    let src = heap.alloc(len)?;
    let dst = heap.alloc(len)?;
    let card = super::vkms::open_card()?;
    let mark = super::kernel_log::Mark::new("vkms scanout after heap removal");
    super::vkms::scanout_buffers(&card, &src, &dst, size, &|| {
        dma_heap::control("remove", &dma_heap::spec("vivid.0", Some("sg"))?)?;
        if Path::new(dma_heap::CLASS).join(SG_HEAP).exists() {
            return Err(format!("{SG_HEAP} still listed after its only device went"));
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

const DEVICES: &[&str] = &["vgem", "vkms", "vivid.0"];

fn add_sg_heaps() -> Result<(), String> {
    let mut errs: Vec<String> = DEVICES
        .iter()
        .filter_map(|dev| add_sg_entry(dev).err())
        .collect();
    if errs.is_empty() {
        if let Err(e) = check_sg_heap() {
            errs.push(e);
        }
    }
    super::all_ok(errs)
}

fn add_sg_entry(dev: &str) -> Result<(), String> {
    match dma_heap::control_raw("add", &dma_heap::spec(dev, Some("sg"))?) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(17) => Ok(()), // EEXIST: served so already
        Err(e) => Err(format!("add {dev}:sg: {e}")),
    }
}

/// `system-32bit` exists, is scattered, and every device gathering pages links to it, after
/// the kernel's `system` heap where the kernel has one.
fn check_sg_heap() -> Result<(), String> {
    let info = HeapInfo::by_name(SG_HEAP)?;
    if info.backing != "sg" || info.contiguous || info.dma_mask_bits != 32 {
        return Err(format!(
            "{SG_HEAP}: backing {} contiguous {} below {} bits, expected sg/0/32",
            info.backing, info.contiguous as u8, info.dma_mask_bits
        ));
    }
    if !Path::new("/dev/dma_heap").join(SG_HEAP).exists() {
        return Err(format!("/dev/dma_heap/{SG_HEAP} missing"));
    }
    for dev in DEVICES {
        let served = dma_heap::device_dir(dev).map_err(|e| format!("{dev}: {e}"))?;
        check_sane(&info, &served, false)?;
        let links = dma_heap::links(&served)?;
        let first_sg = links.iter().position(|l| l.name == SG_HEAP);
        let system = links.iter().position(|l| l.name == "system");
        match (first_sg, system) {
            (None, _) => return Err(format!("{dev} does not link to {SG_HEAP}")),
            (Some(i), Some(j)) if j > i => {
                return Err(format!("{dev} ranks {SG_HEAP} ({i}) before system ({j})"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn remove_sg_heaps() -> Result<(), String> {
    let mut errs = Vec::new();
    for dev in DEVICES {
        let spec = match dma_heap::spec(dev, Some("sg")) {
            Ok(s) => s,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        match dma_heap::control_raw("remove", &spec) {
            // vivid.0's entry went in vkms_scans_out_buffers_of_a_removed_heap.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(2) && *dev == "vivid.0" => {}
            Err(e) => errs.push(format!("remove {spec}: {e}")),
        }
    }
    if Path::new(dma_heap::CLASS).join(SG_HEAP).exists() {
        errs.push(format!(
            "{SG_HEAP} still in {} after remove",
            dma_heap::CLASS
        ));
    }
    if let Err(e) = dma_heap::check_removed_node(SG_HEAP) {
        errs.push(e);
    }
    match dma_heap::debugfs_counter("live_buffers") {
        Ok(0) => {}
        Ok(n) => errs.push(format!("live_buffers {n} at the end of the drm phase")),
        Err(e) => errs.push(e),
    }
    super::all_ok(errs)
}
