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
        // sg::add_tests ran first: vgem, vkms and vivid.0 also gather scattered pages.
        Test {
            name: "discovery::links_follow_needs_with_sg_entries",
            run: || check_links(&boot_needs(true)),
        },
    ]
}

/// The links of the boot state (every served device as /init names it).
pub fn boot_links_tests() -> Vec<Test> {
    vec![Test {
        name: "discovery::links_follow_needs",
        run: || check_links(&boot_needs(false)),
    }]
}

/// 1920x1080 XRGB8888: what a display or camera heap must be able to hand out.
const FRAME_1080P: u64 = 1920 * 1080 * 4;

/// Checks one heap's properties for sanity; `served` is a device it must serve.
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
    // Named for the memory (kernel/ABI.md): "-contiguous" says contiguous, and nothing
    // else does.
    if n.ends_with("-contiguous") != h.contiguous {
        return Err(format!(
            "{n}: contiguous={} but named otherwise",
            h.contiguous
        ));
    }
    if !(24..=64).contains(&h.dma_mask_bits) {
        return Err(format!(
            "{n}: dma_mask_bits {} not in 24..=64",
            h.dma_mask_bits
        ));
    }
    if let Some(bits) = n
        .strip_prefix("system-")
        .and_then(|r| r.split_once("bit"))
        .and_then(|(b, _)| b.parse::<u32>().ok())
    {
        if bits != h.dma_mask_bits {
            return Err(format!("{n}: dma_mask_bits is {}", h.dma_mask_bits));
        }
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
    if !h.served.iter().any(|d| d == served) {
        return Err(format!(
            "{n}: served/ does not link {} (it links {:?})",
            served.display(),
            h.served
        ));
    }
    let dir_name = h.dir.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if dir_name != n {
        return Err(format!("{n}: sysfs directory is named {dir_name}"));
    }
    // The class entry must be the same directory, a virtual device: heaps are shared.
    let class = std::fs::canonicalize(Path::new(dma_heap::CLASS).join(n))
        .map_err(|e| format!("{}/{n}: {e}", dma_heap::CLASS))?;
    if class != h.dir {
        return Err(format!(
            "{n}: class entry {} != {}",
            class.display(),
            h.dir.display()
        ));
    }
    if !h.dir.starts_with(dma_heap::VIRTUAL_DIR) {
        return Err(format!(
            "{n}: {} is not under {}",
            h.dir.display(),
            dma_heap::VIRTUAL_DIR
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
        if h.served.is_empty() {
            return Err(format!("{} serves no device", h.name));
        }
        for d in &h.served {
            // Every device it links back to links to it.
            if !dma_heap::links(d)?.iter().any(|l| l.target == h.dir) {
                return Err(format!(
                    "{} links back to {}, whose dma_heaps/ does not link to it",
                    h.name,
                    d.display()
                ));
            }
            check_sane(&h, d, false)?;
        }
    }
    Ok(())
}

/// What a served device needs, known from its driver rather than from the module: the
/// oracle the links are checked against.
pub struct Needs {
    pub device: &'static str,
    /// Takes only physically contiguous buffers.
    pub contiguous: bool,
    /// The DMA mask its driver sets, in bits.
    pub mask_bits: u32,
}

/// The devices every boot serves, and their needs: vkms and vgem set 64-bit masks, vivid's
/// platform device keeps the platform bus's 32-bit default, no device is behind an IOMMU
/// (so all need contiguous memory, but where the harness serves vgem with ":sg", and on
/// x86 while sg::add_tests's entries are there: `gathering`).
pub fn boot_needs(gathering: bool) -> Vec<Needs> {
    if std::env::consts::ARCH == "arm" {
        return vec![
            Needs {
                device: "1c1f0000.clcd",
                contiguous: true,
                mask_bits: 32,
            },
            Needs {
                device: "vgem",
                contiguous: false,
                mask_bits: 64,
            },
            Needs {
                device: "vivid.0",
                contiguous: true,
                mask_bits: 32,
            },
        ];
    }
    vec![
        Needs {
            device: "vkms",
            contiguous: !gathering,
            mask_bits: 64,
        },
        Needs {
            device: "vgem",
            contiguous: !gathering,
            mask_bits: 64,
        },
        Needs {
            device: "vivid.0",
            contiguous: !gathering,
            mask_bits: 32,
        },
    ]
}

/// The last byte of RAM, from /proc/iomem's "System RAM" ranges.
pub fn ram_top() -> Result<u64, String> {
    let iomem = std::fs::read_to_string("/proc/iomem").map_err(|e| format!("/proc/iomem: {e}"))?;
    iomem
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(": System RAM"))
        .filter_map(|l| l.split('-').nth(1)?.split(' ').next())
        .filter_map(|end| u64::from_str_radix(end, 16).ok())
        .max()
        .ok_or_else(|| "no System RAM in /proc/iomem".into())
}

/// A heap as the link order sees it.
struct Candidate {
    name: String,
    contiguous: bool,
    /// Every page below 2^bits; the kernel's heaps cover all of RAM.
    bits: u32,
    ours: bool,
}

/// Every heap on the system, with what the order needs: the module's from their
/// attributes, the kernel's `system` (scattered, anywhere) and CMA heaps (contiguous,
/// anywhere) from /dev/dma_heap.
fn candidates(ram_bits: u32) -> Result<Vec<Candidate>, String> {
    let mut v: Vec<Candidate> = dma_heap::all_infos()?
        .into_iter()
        .map(|h| Candidate {
            name: h.name,
            contiguous: h.contiguous,
            bits: h.dma_mask_bits,
            ours: true,
        })
        .collect();
    let cma_default = ["default_cma_region", "reserved"]
        .into_iter()
        .find(|n| Path::new("/dev/dma_heap").join(n).exists() && !v.iter().any(|c| c.name == *n));
    for (name, contiguous) in [("system", false)]
        .into_iter()
        .chain(cma_default.map(|n| (n, true)))
    {
        if Path::new("/dev/dma_heap").join(name).exists() && !v.iter().any(|c| c.name == name) {
            v.push(Candidate {
                name: name.into(),
                contiguous,
                bits: ram_bits,
                ours: false,
            });
        }
    }
    Ok(v)
}

/// The links of every served device follow its needs: exactly the heaps whose memory it
/// can use (contiguous unless it gathers pages; every page below its reach), best first
/// (scattered before contiguous, wider before narrower, the module's before the kernel's),
/// derived here from the driver's known needs, not from the module's view of them.
pub fn check_links(needs: &[Needs]) -> Result<(), String> {
    let top = ram_top()?;
    let ram_bits = 64 - top.leading_zeros();
    let all = candidates(ram_bits)?;
    let mut errs = Vec::new();
    for n in needs {
        let dir = match dma_heap::device_dir(n.device) {
            Ok(d) => d,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        // A device reaching all of RAM is the same as one reaching exactly RAM's top.
        let reach = n.mask_bits.min(ram_bits);
        let mut want: Vec<&Candidate> = all
            .iter()
            .filter(|c| (c.contiguous || !n.contiguous) && c.bits <= reach)
            .collect();
        want.sort_by(|a, b| {
            a.contiguous
                .cmp(&b.contiguous)
                .then(b.bits.cmp(&a.bits))
                .then(b.ours.cmp(&a.ours))
        });
        let want: Vec<&str> = want.iter().map(|c| c.name.as_str()).collect();
        let got: Vec<String> = match dma_heap::links(&dir) {
            Ok(l) => l.into_iter().map(|l| l.name).collect(),
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        println!("INFO links: {} -> {}", n.device, got.join(", "));
        if got != want {
            errs.push(format!(
                "{} links {got:?}, its needs ask for {want:?}",
                n.device
            ));
        }
        // Its own memory: the heap named for exactly what it needs is in the links.
        let own = match (n.contiguous, reach >= ram_bits) {
            (true, true) => "system-contiguous".to_owned(),
            (true, false) => format!("system-{}bit-contiguous", n.mask_bits),
            (false, true) => "system".to_owned(),
            (false, false) => format!("system-{}bit", n.mask_bits),
        };
        if !got.contains(&own) {
            errs.push(format!("{} has no link to {own}", n.device));
        }
    }
    super::all_ok(errs)
}
