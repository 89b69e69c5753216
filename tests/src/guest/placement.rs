//! Where heap memory really is: the physical frames of a buffer (the module's debugfs
//! listing, by the dma-buf's inode; root only) against what the heap's sysfs
//! promises (contiguous, below `2^dma_mask_bits`) and against the zones the kernel reports
//! in `/proc/zoneinfo` (never ZONE_MOVABLE: pinned pages there break memory offline).
//!
//! The guest boots with DMA32, Normal and Movable zones (tests/vm/run), so each of these
//! checks can fail.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap, HeapInfo};
use super::Test;

/// First of the `heap` phase, before any test asks for a large contiguous buffer.
pub fn opt_in_tests() -> Vec<Test> {
    vec![Test {
        name: "placement::large_contiguous_needs_cma_or_the_opt_in",
        run: large_contiguous_needs_cma_or_the_opt_in,
    }]
}

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "placement::guest_has_dma32_normal_and_movable",
            run: guest_has_dma32_normal_and_movable,
        },
        Test {
            name: "placement::contiguous_heaps_are_contiguous_reachable_not_movable",
            run: contiguous_heaps_are_contiguous_reachable_not_movable,
        },
        Test {
            name: "placement::sg_heaps_reachable_not_movable",
            run: sg_heaps_reachable_not_movable,
        },
        Test {
            name: "placement::contig_source_matches_the_kernel",
            run: contig_source_matches_the_kernel,
        },
    ]
}

const PAGE: usize = 4096;

/// One zone of one node from /proc/zoneinfo: pfns `[start, start + spanned)`.
#[derive(Debug, Clone)]
pub struct Zone {
    pub node: u32,
    pub name: String,
    pub start: u64,
    pub spanned: u64,
}

impl Zone {
    fn holds(&self, pfn: u64) -> bool {
        pfn >= self.start && pfn < self.start + self.spanned
    }
}

/// Populated zones, from /proc/zoneinfo.
pub fn zones() -> Result<Vec<Zone>, String> {
    let text = fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("/proc/zoneinfo: {e}"))?;
    let mut zones = Vec::new();
    let mut cur: Option<Zone> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Node", node, "zone", name] => {
                zones.extend(cur.take());
                cur = Some(Zone {
                    node: node.trim_end_matches(',').parse().unwrap_or(0),
                    name: (*name).to_owned(),
                    start: 0,
                    spanned: 0,
                });
            }
            ["spanned", n] => {
                if let Some(z) = cur.as_mut() {
                    z.spanned = n.parse().map_err(|_| format!("zoneinfo: {line:?}"))?;
                }
            }
            ["start_pfn:", n] => {
                if let Some(z) = cur.as_mut() {
                    z.start = n.parse().map_err(|_| format!("zoneinfo: {line:?}"))?;
                }
            }
            _ => {}
        }
    }
    zones.extend(cur);
    Ok(zones.into_iter().filter(|z| z.spanned > 0).collect())
}

fn zone_of(zones: &[Zone], pfn: u64) -> Option<&Zone> {
    zones.iter().find(|z| z.holds(pfn))
}

/// The frames of a buffer of the module, from its debugfs listing
/// (/sys/kernel/debug/device_heap/buffers, found by the dma-buf's inode); `None` if the
/// buffer is not the module's.
pub fn heap_frames(buf: BorrowedFd<'_>) -> Result<Option<Vec<u64>>, String> {
    const LIST: &str = "/sys/kernel/debug/device_heap/buffers";
    let ino = rustix::fs::fstat(buf)
        .map_err(|e| format!("fstat: {e}"))?
        .st_ino
        .to_string();
    let list = fs::read_to_string(LIST).map_err(|e| format!("{LIST}: {e}"))?;
    for line in list.lines() {
        let mut words = line.split(' ');
        if words.next() != Some(ino.as_str()) {
            continue;
        }
        let mut frames = Vec::new();
        for run in words.skip(2) {
            let (first, count) = run
                .split_once('+')
                .ok_or_else(|| format!("{LIST}: bad run {run:?} in {line:?}"))?;
            let first = u64::from_str_radix(first, 16)
                .map_err(|_| format!("{LIST}: bad pfn in {line:?}"))?;
            let count: u64 = count
                .parse()
                .map_err(|_| format!("{LIST}: bad count in {line:?}"))?;
            frames.extend(first..first + count);
        }
        return Ok(Some(frames));
    }
    Ok(None)
}

/// The frames of any dma-buf: the module's listing for its own buffers, else
/// /proc/self/pagemap over a fresh mapping whose every page is touched first (some
/// exporters fill their mappings on fault).
pub fn frames(buf: BorrowedFd<'_>) -> Result<Vec<u64>, String> {
    if let Some(v) = heap_frames(buf)? {
        return Ok(v);
    }
    let len = dma_buf::size(buf)? as usize;
    let map = Mapping::new(buf, len)?;
    for b in map.bytes().iter().step_by(PAGE) {
        // SAFETY: a reference into the live mapping; volatile so that the read happens.
        unsafe { std::ptr::read_volatile(b) };
    }
    pfns(&map)
}

/// The page frame numbers behind every page of `map`, from /proc/self/pagemap (for
/// other exporters' buffers: the module's mappings are VM_PFNMAP).
fn pfns(map: &Mapping) -> Result<Vec<u64>, String> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open("/proc/self/pagemap").map_err(|e| format!("pagemap: {e}"))?;
    let addr = map.bytes().as_ptr() as usize;
    let pages = map.bytes().len().div_ceil(PAGE);
    let mut raw = vec![0u8; pages * 8];
    f.read_exact_at(&mut raw, (addr / PAGE * 8) as u64)
        .map_err(|e| format!("read pagemap: {e}"))?;
    raw.chunks_exact(8)
        .enumerate()
        .map(|(i, c)| {
            let e = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            let pfn = e & ((1 << 55) - 1);
            if e >> 63 == 0 {
                Err(format!("page {i} of the mapping is not present"))
            } else if pfn == 0 {
                Err("pagemap shows pfn 0 (not root?)".into())
            } else {
                Ok(pfn)
            }
        })
        .collect()
}

/// Every page of `pfns` lies below what the heap promises and outside ZONE_MOVABLE.
fn check_pages(info: &HeapInfo, zones: &[Zone], pfns: &[u64]) -> Result<(), String> {
    let limit_pfn = if info.dma_mask_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << info.dma_mask_bits) / PAGE as u64
    };
    for (i, &pfn) in pfns.iter().enumerate() {
        if pfn >= limit_pfn {
            return Err(format!(
                "page {i} at pfn {pfn:#x} is above 2^{} (dma_mask_bits)",
                info.dma_mask_bits
            ));
        }
        match zone_of(zones, pfn) {
            Some(z) if z.name == "Movable" || z.name == "Device" => {
                return Err(format!(
                    "page {i} at pfn {pfn:#x} is in ZONE_{} of node {}",
                    z.name, z.node
                ))
            }
            Some(_) => {}
            None => return Err(format!("page {i} at pfn {pfn:#x} is in no zone")),
        }
    }
    Ok(())
}

/// Allocates `len` bytes, maps the buffer and returns its pfns and the zones they are in.
fn placed(heap: &Heap, zones: &[Zone], len: usize) -> Result<(Vec<u64>, String), String> {
    let buf = heap.alloc(len as u64)?;
    dma_buf::fill(buf.as_fd(), len, len as u32)?;
    let pfns = frames(buf.as_fd())?;
    let mut names: Vec<&str> = pfns
        .iter()
        .filter_map(|&p| zone_of(zones, p).map(|z| z.name.as_str()))
        .collect();
    names.dedup();
    Ok((pfns, names.join("+")))
}

fn guest_has_dma32_normal_and_movable() -> Result<(), String> {
    let zones = zones()?;
    let list: Vec<String> = zones
        .iter()
        .map(|z| format!("{} {:#x}+{:#x}", z.name, z.start, z.spanned))
        .collect();
    println!("INFO placement: zones {}", list.join(", "));
    for want in ["DMA32", "Normal", "Movable"] {
        if !zones.iter().any(|z| z.name == want) {
            return Err(format!(
                "no populated ZONE_{want}: the placement tests would prove nothing"
            ));
        }
    }
    Ok(())
}

/// Sizes that take every contiguous path: buddy (64 KiB, 1 MiB), a range above
/// MAX_PAGE_ORDER (one 1080p XRGB frame), and a 4K frame's worth.
const CONTIG_SIZES: [usize; 4] = [64 << 10, 1 << 20, 1920 * 1080 * 4, 3840 * 2160 * 4];

fn contiguous_heaps_are_contiguous_reachable_not_movable() -> Result<(), String> {
    let zones = zones()?;
    let infos: Vec<HeapInfo> = dma_heap::all_infos()?
        .into_iter()
        .filter(|i| i.contiguous)
        .collect();
    if infos.is_empty() {
        return Err("no contiguous device heap".into());
    }
    let mut errs = Vec::new();
    for info in &infos {
        let heap = Heap::open(&info.name)?;
        for len in CONTIG_SIZES {
            let len = len.div_ceil(PAGE) * PAGE;
            let r = placed(&heap, &zones, len).and_then(|(pfns, zone)| {
                if let Some(i) = pfns.windows(2).position(|w| w[1] != w[0] + 1) {
                    return Err(format!(
                        "not contiguous: page {} at {:#x} follows {:#x}",
                        i + 1,
                        pfns[i + 1],
                        pfns[i]
                    ));
                }
                check_pages(info, &zones, &pfns)?;
                println!(
                    "INFO placement: {} {len} B at pfn {:#x} in {zone}",
                    info.name, pfns[0]
                );
                Ok(())
            });
            if let Err(e) = r {
                errs.push(format!("[{} {len} B] {e}", info.name));
            }
        }
    }
    super::all_ok(errs)
}

fn sg_heaps_reachable_not_movable() -> Result<(), String> {
    let zones = zones()?;
    let infos: Vec<HeapInfo> = dma_heap::all_infos()?
        .into_iter()
        .filter(|i| !i.contiguous)
        .collect();
    if infos.is_empty() {
        return Err("no scatter-gather device heap (the heap phase adds them)".into());
    }
    let mut errs = Vec::new();
    for info in &infos {
        let heap = Heap::open(&info.name)?;
        if let Err(e) =
            placed(&heap, &zones, 8 << 20).and_then(|(p, _)| check_pages(info, &zones, &p))
        {
            errs.push(format!("[{}] {e}", info.name));
        }
    }
    super::all_ok(errs)
}

/// `contig_source` says CMA only when the kernel has a CMA area (`cma=` was given), and
/// then a contiguous buffer from such a heap is counted by the area's own statistics
/// (`/sys/kernel/mm/cma/<area>/alloc_pages_success`) page for page; a heap that says
/// `migrate` takes nothing from it.
/// CmaTotal of /proc/meminfo, in KiB.
fn cma_total_kib() -> Result<u64, String> {
    let meminfo = fs::read_to_string("/proc/meminfo").map_err(|e| format!("meminfo: {e}"))?;
    Ok(meminfo
        .lines()
        .find_map(|l| l.strip_prefix("CmaTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0))
}

/// The kernel's CMA areas, by the names /sys/kernel/mm/cma gives them (none without
/// CONFIG_CMA_SYSFS or a CMA area).
fn cma_areas() -> Vec<String> {
    fs::read_dir("/sys/kernel/mm/cma")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn contig_source_matches_the_kernel() -> Result<(), String> {
    let cma_kib = cma_total_kib()?;
    let areas = cma_areas();
    println!("INFO placement: CmaTotal {cma_kib} kB, CMA areas {areas:?}");
    let mut errs = Vec::new();
    let mut cma_heaps = 0;
    for info in dma_heap::all_infos()? {
        let src = info.contig_source.as_str();
        println!("INFO placement: {} contig_source {src}", info.name);
        // "cma:<area> buddy [migrate]", "buddy [migrate]", or "buddy" for scattered heaps.
        let words: Vec<&str> = src.split(' ').collect();
        let migrate = fs::read_to_string("/sys/module/device_heap/parameters/contig_migrate")
            .is_ok_and(|v| v.trim() == "Y");
        let tail_ok =
            |rest: &[&str]| rest == ["buddy"] || (migrate && rest == ["buddy", "migrate"]);
        let area = match (info.contiguous, words[0].strip_prefix("cma:")) {
            (false, _) if src == "buddy" => continue,
            (true, None) if tail_ok(&words) => None,
            (true, Some(a))
                if cma_kib > 0 && areas.iter().any(|x| x == a) && tail_ok(&words[1..]) =>
            {
                Some(a)
            }
            _ => {
                errs.push(format!(
                    "[{}] contig_source {src:?} with CmaTotal {cma_kib} kB, areas {areas:?}",
                    info.name
                ));
                continue;
            }
        };
        cma_heaps += area.is_some() as u32;
        // What every area handed out while one 1080p buffer of this heap was allocated,
        // with the module's cache of freed blocks emptied first (its shrinker): a block an
        // earlier test freed would otherwise serve the buffer without any source.
        let len = 1920 * 1080 * 4;
        fs::write("/proc/sys/vm/drop_caches", "2").map_err(|e| format!("drop_caches: {e}"))?;
        let before = cma_successes(&areas)?;
        let heap = Heap::open(&info.name)?;
        let buf = heap.alloc(len as u64)?;
        let after = cma_successes(&areas)?;
        drop(buf);
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            let taken = a - b;
            let want = if Some(name.as_str()) == area {
                (len / PAGE) as u64
            } else {
                0
            };
            if taken != want {
                errs.push(format!(
                    "[{}] ({src}) a {len} B buffer took {taken} pages of CMA area {name}, expected {want}",
                    info.name
                ));
            }
        }
    }
    if cma_kib > 0 && cma_heaps == 0 {
        errs.push("the kernel has a CMA area but no contiguous heap uses it".into());
    }
    super::all_ok(errs)
}

/// `alloc_pages_success` of every CMA area, in the order given.
fn cma_successes(areas: &[String]) -> Result<Vec<(String, u64)>, String> {
    areas
        .iter()
        .map(|a| {
            let p = format!("/sys/kernel/mm/cma/{a}/alloc_pages_success");
            let v = fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
            let n = v.trim().parse().map_err(|_| format!("{p}: {v:?}"))?;
            Ok((a.clone(), n))
        })
        .collect()
}

const MIGRATE_PARAM: &str = "/sys/module/device_heap/parameters/contig_migrate";

/// Contiguous buffers above the page allocator's largest block (4 MiB) come from a CMA
/// area within the heap's reach, or by migration only where contig_migrate opts in (off
/// at load). Every contiguous heap is asked for 8 MiB: where that fails it must be ENOMEM,
/// with a kernel log line naming the heap and the opt-in, and 4 MiB must still work.
/// With a CMA area (CmaTotal) the heap reaching all of RAM must succeed, from the area;
/// without one every heap must refuse. Then the opt-in is set as a user of such a kernel
/// would (at run time, and kept for the module's reloads), and every refused heap gives
/// its 8 MiB.
fn large_contiguous_needs_cma_or_the_opt_in() -> Result<(), String> {
    const BIG: u64 = 8 << 20;
    const BUDDY_MAX: u64 = 4 << 20;
    let contig: Vec<HeapInfo> = dma_heap::all_infos()?
        .into_iter()
        .filter(|h| h.contiguous)
        .collect();
    if contig.is_empty() {
        return Err("no contiguous heap".into());
    }
    let migrate = fs::read_to_string(MIGRATE_PARAM).map_err(|e| format!("{MIGRATE_PARAM}: {e}"))?;
    if migrate.trim() != "N" {
        return Err(format!(
            "contig_migrate is {} at load, not off",
            migrate.trim()
        ));
    }
    let areas = cma_areas();
    let has_cma = cma_total_kib()? > 0;
    let ram_bits = 64 - super::discovery::ram_top()?.leading_zeros();
    // Blocks the cache keeps would serve a request without any source.
    fs::write("/proc/sys/vm/drop_caches", "2").map_err(|e| format!("drop_caches: {e}"))?;
    let mut errs = Vec::new();
    let mut refused = Vec::new();
    for h in &contig {
        let heap = Heap::open(&h.name)?;
        let mark = super::kernel_log::Mark::new("large contiguous without opt-in");
        let before = cma_successes(&areas)?;
        let got = dma_heap::alloc(heap.fd.as_fd(), BIG);
        let from_cma: u64 = cma_successes(&areas)?
            .iter()
            .zip(&before)
            .map(|((_, a), (_, b))| a - b)
            .sum();
        let reaches_all = h.dma_mask_bits >= ram_bits;
        match got {
            Ok(_) if !has_cma => errs.push(format!(
                "{}: 8 MiB contiguous without a CMA area or contig_migrate",
                h.name
            )),
            Ok(_) if from_cma < BIG / PAGE as u64 => errs.push(format!(
                "{}: 8 MiB, but only {from_cma} pages from the CMA area",
                h.name
            )),
            Ok(_) => println!("INFO placement: {}: 8 MiB from the CMA area", h.name),
            Err(rustix::io::Errno::NOMEM) => {
                if has_cma && reaches_all {
                    errs.push(format!(
                        "{}: 8 MiB refused though a CMA area exists",
                        h.name
                    ));
                }
                let said = mark.tail(20);
                if !said.contains(&h.name) || !said.contains("contig_migrate") {
                    errs.push(format!(
                        "{}: refused, but the kernel log does not say why: {said}",
                        h.name
                    ));
                }
                if let Err(e) = heap.alloc(BUDDY_MAX) {
                    errs.push(format!("{}: 4 MiB, the largest block: {e}", h.name));
                }
                refused.push(h.name.clone());
            }
            Err(e) => errs.push(format!("{}: 8 MiB: {e}, expected ENOMEM", h.name)),
        }
    }
    if !refused.is_empty() {
        println!("INFO placement: without a CMA area in reach, 8 MiB refused by {refused:?} until contig_migrate=1");
        fs::write(MIGRATE_PARAM, "1").map_err(|e| format!("{MIGRATE_PARAM}: {e}"))?;
        super::modules::keep_param("device_heap", "contig_migrate=1")?;
        for name in &refused {
            let heap = Heap::open(name)?;
            match heap.alloc(BIG) {
                Ok(b) => dma_buf::fill(b.as_fd(), BIG as usize, 3)?,
                Err(e) => errs.push(format!("{name}: 8 MiB with contig_migrate=1: {e}")),
            }
            match HeapInfo::by_name(name) {
                Ok(i) if i.contig_source.ends_with(" migrate") => {}
                Ok(i) => errs.push(format!(
                    "{name}: contig_source {} with the opt-in",
                    i.contig_source
                )),
                Err(e) => errs.push(e),
            }
        }
    }
    super::all_ok(errs)
}
