//! Discovery: from a DRM or V4L2 dev_t to the heaps serving the device, and their properties.

use std::path::Path;

use super::dma_heap::{self, HeapInfo};
use super::drm_card;
use super::v4l2;
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "discovery::vgem_heaps_from_dev_t",
            run: vgem,
        },
        Test {
            name: "discovery::vkms_heaps_from_dev_t",
            run: vkms,
        },
        Test {
            name: "discovery::vivid_heaps_from_dev_t",
            run: vivid,
        },
        Test {
            name: "discovery::every_class_entry_is_consistent",
            run: every_class_entry_is_consistent,
        },
    ]
}

/// 1920x1080 XRGB8888: what a display or camera heap must be able to hand out.
const FRAME_1080P: u64 = 1920 * 1080 * 4;

/// Checks one heap's properties for sanity; `served` is the device it must serve.
pub fn check_sane(h: &HeapInfo, served: &Path, needs_1080p_contig: bool) -> Result<(), String> {
    let n = &h.name;
    match h.backing.as_str() {
        "contig" if h.contiguous => {}
        "sg" if !h.contiguous => {}
        b => {
            return Err(format!(
                "{n}: backing {b:?} but contiguous={}",
                h.contiguous
            ))
        }
    }
    let suffix = format!("-{}", h.backing);
    if !n.ends_with(&suffix) {
        return Err(format!("{n}: name does not end in {suffix}"));
    }
    if !(24..=64).contains(&h.dma_mask_bits) {
        return Err(format!(
            "{n}: dma_mask_bits {} not in 24..=64",
            h.dma_mask_bits
        ));
    }
    if h.alignment_bytes < 4096 || !h.alignment_bytes.is_power_of_two() {
        return Err(format!(
            "{n}: alignment_bytes {} is not a power of two >= 4096",
            h.alignment_bytes
        ));
    }
    if h.max_alloc_bytes < 4096 || h.max_alloc_bytes & 4095 != 0 {
        return Err(format!(
            "{n}: max_alloc_bytes {} is not a page multiple",
            h.max_alloc_bytes
        ));
    }
    if needs_1080p_contig && h.contiguous && h.max_alloc_bytes < FRAME_1080P {
        return Err(format!(
            "{n}: max_alloc_bytes {} < {FRAME_1080P} (one 1080p XRGB frame)",
            h.max_alloc_bytes
        ));
    }
    if h.device != served {
        return Err(format!(
            "{n}: device link is {}, expected {}",
            h.device.display(),
            served.display()
        ));
    }
    let dir_name = h.dir.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if dir_name != n {
        return Err(format!("{n}: sysfs directory is named {dir_name}"));
    }
    // The class entry must be the same directory.
    let class = std::fs::canonicalize(Path::new(dma_heap::CLASS).join(n))
        .map_err(|e| format!("{}/{n}: {e}", dma_heap::CLASS))?;
    if class != h.dir {
        return Err(format!(
            "{n}: class entry {} != {}",
            class.display(),
            h.dir.display()
        ));
    }
    if !h.dir.starts_with(served) {
        return Err(format!(
            "{n}: {} is not under the served device",
            h.dir.display()
        ));
    }
    Ok(())
}

fn from_node(node: &Path, dev_name: &str, needs_1080p_contig: bool) -> Result<(), String> {
    let dev = drm_card::sysfs_device_of(node)?;
    let base = dev.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if base != dev_name {
        return Err(format!(
            "{} belongs to {}, not {dev_name}",
            node.display(),
            dev.display()
        ));
    }
    let heaps = dma_heap::heaps_serving(&dev)?;
    let mut desc = Vec::new();
    for h in &heaps {
        check_sane(h, &dev, needs_1080p_contig)?;
        desc.push(format!(
            "{} backing={} coherent={} mask={} max={} align={}",
            h.name,
            h.backing,
            h.coherent as u8,
            h.dma_mask_bits,
            h.max_alloc_bytes,
            h.alignment_bytes
        ));
    }
    if needs_1080p_contig && !heaps.iter().any(|h| h.contiguous) {
        return Err(format!("{dev_name} has no contiguous heap"));
    }
    println!("INFO {} -> {}", node.display(), desc.join("; "));
    Ok(())
}

fn vgem() -> Result<(), String> {
    let card = drm_card::find("vgem", "card")?;
    from_node(&card.path, "vgem", false)?;
    // The render node leads to the same heaps.
    let render = drm_card::find("vgem", "renderD")?;
    from_node(&render.path, "vgem", false)
}

fn vkms() -> Result<(), String> {
    let card = drm_card::find("vkms", "card")?;
    from_node(&card.path, "vkms", true)
}

fn vivid() -> Result<(), String> {
    let (node, _) = v4l2::find_capture("vivid")?;
    from_node(&node, "vivid.0", true)
}

fn every_class_entry_is_consistent() -> Result<(), String> {
    for h in dma_heap::all_infos()? {
        // The served device's own device_heap/ lists it.
        let listed = h.device.join("device_heap").join(&h.name);
        if !listed.exists() {
            return Err(format!("{} is not listed in {}", h.name, listed.display()));
        }
        check_sane(&h, &h.device.clone(), false)?;
    }
    Ok(())
}
