//! The module's cache of freed contiguous blocks (kernel/heap_cache.c): a buffer
//! freed a moment ago gives its memory to the next buffer of its size from the same
//! heap, cleared; the cache gives memory back when told to (cache_mb=0), when it ages
//! (cache_ms), and under memory pressure (its shrinker, which drop_caches runs). Blocks
//! of a CMA area are never kept (other drivers allocate from the area too). With the
//! cache off, a fresh block is cleared too (every boot has init_on_alloc=0: by the module
//! itself, for the buffer's bytes only), whichever source it came from.
//!
//! How the tests know: the physical frames of the buffer (the module's debugfs listing)
//! and the module's debugfs counter `cached_bytes`.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap, HeapInfo};
use super::placement::frames;
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "block_cache::freed_block_reused_and_cleared",
            run: freed_block_reused_and_cleared,
        },
        Test {
            name: "block_cache::memory_given_back_off_aged_and_under_pressure",
            run: memory_given_back_off_aged_and_under_pressure,
        },
        Test {
            name: "block_cache::fresh_blocks_cleared_with_the_cache_off",
            run: fresh_blocks_cleared_with_the_cache_off,
        },
    ]
}

const PARAMS: &str = "/sys/module/device_heap/parameters";
/// Not a size any other test uses, so no other buffer takes the block.
const LEN: usize = 3 << 20;

fn cached() -> Result<u64, String> {
    dma_heap::debugfs_counter("cached_bytes")
}

fn param(name: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("{PARAMS}/{name}"))
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{PARAMS}/{name}: {e}"))
}

fn set_param(name: &str, value: &str) -> Result<(), String> {
    std::fs::write(format!("{PARAMS}/{name}"), value)
        .map_err(|e| format!("write {value} to {PARAMS}/{name}: {e}"))
}

/// Gives every cached block back through the shrinker.
fn drop_caches() -> Result<(), String> {
    std::fs::write("/proc/sys/vm/drop_caches", "2").map_err(|e| format!("drop_caches: {e}"))
}

/// Restores module parameters on drop, whatever the test did.
struct Restore(Vec<(&'static str, String)>);

impl Restore {
    fn save(names: &[&'static str]) -> Result<Restore, String> {
        names
            .iter()
            .map(|&n| Ok((n, param(n)?)))
            .collect::<Result<_, String>>()
            .map(Restore)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for (name, value) in &self.0 {
            let _ = set_param(name, value);
        }
    }
}

fn contiguous_heaps() -> Result<Vec<HeapInfo>, String> {
    let heaps: Vec<HeapInfo> = dma_heap::all_infos()?
        .into_iter()
        .filter(|h| h.contiguous)
        .collect();
    if heaps.is_empty() {
        return Err("no contiguous device heap".into());
    }
    Ok(heaps)
}

/// Allocates LEN bytes, fills them with `fill`, returns the buffer's first pfn.
fn fill(heap: &Heap, fill: u8) -> Result<(std::os::fd::OwnedFd, u64), String> {
    fill_len(heap, fill, LEN)
}

/// Allocates `len` bytes, fills them with `fill`, returns the buffer's first pfn.
fn fill_len(heap: &Heap, fill: u8, len: usize) -> Result<(std::os::fd::OwnedFd, u64), String> {
    let fd = heap.alloc(len as u64)?;
    let mut map = Mapping::new(fd.as_fd(), len)?;
    dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
        .map_err(|e| format!("sync: {e}"))?;
    map.bytes_mut().fill(fill);
    dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
        .map_err(|e| format!("sync: {e}"))?;
    let first = frames(fd.as_fd())?[0];
    drop(map);
    Ok((fd, first))
}

fn from_cma(info: &HeapInfo) -> bool {
    info.contig_source.starts_with("cma:")
}

/// Whether the buffer at `fd` reads as zeros; the offset of the first byte that
/// does not, if any.
fn first_dirty(fd: std::os::fd::BorrowedFd<'_>) -> Result<Option<usize>, String> {
    let map = Mapping::new(fd, dma_buf::size(fd)? as usize)?;
    dma_buf::sync(fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
        .map_err(|e| format!("sync: {e}"))?;
    let dirty = map.bytes().iter().position(|&b| b != 0);
    dma_buf::sync(fd, dma_buf::SYNC_END | dma_buf::SYNC_READ).map_err(|e| format!("sync: {e}"))?;
    Ok(dirty)
}

fn freed_block_reused_and_cleared() -> Result<(), String> {
    let _restore = Restore::save(&["cache_mb", "cache_ms"])?;
    set_param("cache_mb", "64")?;
    set_param("cache_ms", "60000")?;
    drop_caches()?;
    let mut errs = Vec::new();
    for info in contiguous_heaps()? {
        let heap = Heap::open(&info.name)?;
        let (fd, first) = fill(&heap, 0xa5)?;
        let before = cached()?;
        drop(fd);
        let after = cached()?;
        if from_cma(&info) {
            println!(
                "INFO block_cache: {} ({}): freed block not kept, cached_bytes {before} -> {after}",
                info.name, info.contig_source
            );
            if after > before {
                errs.push(format!(
                    "{}: a block of CMA area {} was kept (cached_bytes {before} -> {after})",
                    info.name, info.contig_source
                ));
            }
            continue;
        }
        if after < before + LEN as u64 {
            errs.push(format!(
                "{}: cached_bytes {before} -> {after} after freeing {LEN} bytes",
                info.name
            ));
            continue;
        }
        let again = heap.alloc(LEN as u64)?;
        let reused = frames(again.as_fd())?[0];
        let dirty = first_dirty(again.as_fd())?;
        println!(
            "INFO block_cache: {}: freed block at pfn {first:#x}, next buffer of its size at {reused:#x}",
            info.name
        );
        if reused != first {
            errs.push(format!(
                "{}: the next buffer of the same size is at pfn {reused:#x}, not the freed block's {first:#x}",
                info.name
            ));
        }
        if let Some(at) = dirty {
            errs.push(format!(
                "{}: the reused block holds the last buffer's data at byte {at}",
                info.name
            ));
        }
        if cached()? != before {
            errs.push(format!(
                "{}: cached_bytes {} after the block was taken back, {before} before",
                info.name,
                cached()?
            ));
        }
    }
    drop_caches()?;
    super::all_ok(errs)
}

/// Waits up to `secs` for cached_bytes to reach 0.
fn cache_empties(secs: u64) -> Result<bool, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while cached()? != 0 {
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}

fn memory_given_back_off_aged_and_under_pressure() -> Result<(), String> {
    let _restore = Restore::save(&["cache_mb", "cache_ms"])?;
    let heaps = contiguous_heaps()?;
    let Some(info) = heaps.iter().find(|h| !from_cma(h)) else {
        // Every contiguous heap takes CMA memory (the 7-cma boot): nothing is ever
        // cached, whatever the parameters; the other boots age and shrink.
        set_param("cache_mb", "64")?;
        set_param("cache_ms", "60000")?;
        let heap = Heap::open(&heaps[0].name)?;
        drop(fill(&heap, 1)?);
        println!(
            "INFO block_cache: every contiguous heap takes CMA memory: nothing to age or shrink"
        );
        return match cached()? {
            0 => Ok(()),
            n => Err(format!("{n} bytes cached with only CMA heaps")),
        };
    };
    let heap = Heap::open(&info.name)?;
    let mut errs = Vec::new();

    // Under pressure: the shrinker (drop_caches runs every shrinker).
    set_param("cache_mb", "64")?;
    set_param("cache_ms", "60000")?;
    drop(fill(&heap, 1)?);
    if cached()? < LEN as u64 {
        errs.push(format!("nothing cached after a free: {}", cached()?));
    }
    drop_caches()?;
    if !cache_empties(5)? {
        errs.push(format!("drop_caches left {} bytes cached", cached()?));
    }

    // Aged: a block unused for cache_ms goes back.
    set_param("cache_ms", "200")?;
    drop(fill(&heap, 2)?);
    if cached()? < LEN as u64 {
        errs.push(format!(
            "nothing cached after a free (cache_ms 200): {}",
            cached()?
        ));
    }
    if !cache_empties(10)? {
        errs.push(format!(
            "{} bytes still cached 10 s after the free, with cache_ms 200",
            cached()?
        ));
    }

    // Off: nothing is kept.
    set_param("cache_ms", "60000")?;
    set_param("cache_mb", "0")?;
    drop(fill(&heap, 3)?);
    if cached()? != 0 {
        errs.push(format!("cache_mb 0 kept {} bytes", cached()?));
    }
    // Smaller than the block: the block is not kept either.
    set_param("cache_mb", "1")?;
    drop(fill(&heap, 4)?);
    if cached()? != 0 {
        errs.push(format!("cache_mb 1 kept a {LEN}-byte block: {}", cached()?));
    }
    drop_caches()?;
    super::all_ok(errs)
}

/// Buffers per heap and size in the cache-off test: enough memory freed and taken again
/// that the new buffers land on frames the old ones dirtied.
const FRESH_BUFFERS: usize = 6;

/// With the cache off, every block is new: from the CMA area (fresh CMA blocks, which
/// only the module clears: every boot has init_on_alloc=0), from the page allocator, or
/// above its largest block (8 MiB: the CMA area or migration). Buffers of each size are
/// dirtied and freed, then taken again; every one must read as zero, and for every heap
/// at 8 MiB, and at 3 MiB where a CMA area serves it, some must land on frames the freed
/// ones had dirtied, or the clearing was not exercised and the test fails. Deleting the
/// module's clears turns it red.
fn fresh_blocks_cleared_with_the_cache_off() -> Result<(), String> {
    let _restore = Restore::save(&["cache_mb"])?;
    set_param("cache_mb", "0")?;
    drop_caches()?;
    let mut errs = Vec::new();
    let mut reused_total = 0;
    for info in contiguous_heaps()? {
        let heap = Heap::open(&info.name)?;
        for len in [LEN, 8 << 20] {
            let pages = (len / 4096) as u64;
            let mut dirtied = Vec::new();
            let mut old = Vec::new();
            for _ in 0..FRESH_BUFFERS {
                let (fd, first) = fill_len(&heap, 0x5a, len)?;
                dirtied.push(first);
                old.push(fd);
            }
            drop(old);
            // Freed pages sit on per-CPU lists until drained; compaction drains them and
            // merges them back into blocks the next buffers can take.
            let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
            let mut reused = 0;
            let mut kept = Vec::new();
            for i in 0..FRESH_BUFFERS {
                let again = heap.alloc(len as u64)?;
                let first = frames(again.as_fd())?[0];
                if dirtied
                    .iter()
                    .any(|&d| first < d + pages && d < first + pages)
                {
                    reused += 1;
                }
                if let Some(at) = first_dirty(again.as_fd())? {
                    errs.push(format!(
                        "{} ({}), buffer {i}: a fresh {len}-byte buffer holds old data at byte {at}",
                        info.name, info.contig_source
                    ));
                    break;
                }
                kept.push(again);
            }
            println!(
                "INFO block_cache: cache off, {} ({}), {len} bytes: {reused} of {FRESH_BUFFERS} fresh buffers on frames a freed buffer had dirtied, all read as zero",
                info.name, info.contig_source
            );
            // CMA hands out its lowest free range and migration searches from the bottom
            // of a zone, so their fresh blocks land on what was just freed; the page
            // allocator's 3 MiB blocks may come from anywhere (counted overall below).
            if reused == 0 && (len > 4 << 20 || from_cma(&info)) {
                errs.push(format!(
                    "{}: no fresh {len}-byte buffer landed on dirtied frames: the clearing was not exercised",
                    info.name
                ));
            }
            reused_total += reused;
        }
    }
    if reused_total == 0 {
        errs.push(
            "no fresh buffer landed on dirtied frames: the clearing was not exercised".into(),
        );
    }
    if cached()? != 0 {
        errs.push(format!("cache_mb 0 and {} bytes cached", cached()?));
    }
    super::all_ok(errs)
}
