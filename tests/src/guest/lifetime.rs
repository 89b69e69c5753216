//! Buffers are given back: after 1000 allocations and frees the module's live-buffer
//! counters are back where they were and the guest's free memory has come back.

use std::os::fd::AsFd;

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "lifetime::thousand_buffers_all_given_back",
        run: thousand_buffers_all_given_back,
    }]
}

/// Free memory in KiB: MemFree after dropping clean caches, plus the pages parked in the
/// per-cpu free lists (/proc/zoneinfo `count:`), which MemFree leaves out. Freed 2 MiB
/// buffers (order 9) land on those lists, so without them a clean module looks like it
/// lost tens of MiB.
fn mem_free_kib() -> Result<u64, String> {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let s = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let mem_free: u64 = s
        .lines()
        .find(|l| l.starts_with("MemFree:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or("no MemFree in /proc/meminfo")?;
    let z =
        std::fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("/proc/zoneinfo: {e}"))?;
    let pcp_pages: u64 = z
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count:"))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum();
    Ok(mem_free + pcp_pages * 4)
}

/// Sizes cycled through: sub-page, page multiples, odd lengths, up to one 1080p XRGB frame
/// (8,294,400 bytes: above the buddy allocator's 4 MiB, so contiguous heaps take their
/// large-buffer path).
const SIZES: &[u64] = &[
    1,
    4096,
    5000,
    65536,
    3 * 4096 + 7,
    1 << 20,
    256 * 1024,
    2 << 20,
    12288,
    1920 * 1080 * 4,
];
/// Buffers alive at the same time.
const BATCH: usize = 25;
/// Allowed drift of free memory, KiB. Measured drift is ~20 KiB once the per-cpu lists
/// are counted; the smallest buffer that could go missing in a round is 4 KiB, the
/// largest 2 MiB.
const MARGIN_KIB: u64 = 1024;

fn round(heaps: &[Heap], n: usize) -> Result<u64, String> {
    let mut bytes = 0;
    let mut live = Vec::with_capacity(BATCH);
    for i in 0..n {
        let heap = &heaps[i % heaps.len()];
        let len = SIZES[i % SIZES.len()];
        let b = heap.alloc(len).map_err(|e| format!("buffer {i}: {e}"))?;
        let size = dma_buf::size(b.as_fd())?;
        // Touch the buffer so its pages are really in use.
        let mut m = Mapping::new(&b, size as usize)?;
        m.bytes_mut()[0] = 1;
        let last = m.len() - 1;
        m.bytes_mut()[last] = 2;
        drop(m);
        bytes += size;
        live.push(b);
        if live.len() == BATCH {
            live.clear();
        }
    }
    Ok(bytes)
}

fn thousand_buffers_all_given_back() -> Result<(), String> {
    let heaps: Vec<Heap> = dma_heap::device_heaps()?
        .iter()
        .map(|n| Heap::open(n))
        .collect::<Result<_, _>>()?;
    if heaps.is_empty() {
        return Err("no device heaps".into());
    }
    // Warm up slab caches, per-cpu page lists and allocator metadata with a full round
    // before taking the baseline: growth there is one-off, a leak grows every round.
    round(&heaps, 1000)?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    let bytes0 = dma_heap::debugfs_counter("live_bytes")?;
    let free0 = mem_free_kib()?;
    let total = round(&heaps, 1000)?;
    let live1 = dma_heap::debugfs_counter("live_buffers")?;
    let bytes1 = dma_heap::debugfs_counter("live_bytes")?;
    let free1 = mem_free_kib()?;
    // Two more rounds: a loss that grows with the number of buffers shows up here even
    // if it hid in the margin after one.
    let mut trend = vec![free0, free1];
    for _ in 0..2 {
        round(&heaps, 1000)?;
        trend.push(mem_free_kib()?);
    }
    let free3 = trend[3];
    println!(
        "INFO lifetime: 1000 buffers, {} MiB in all; live_buffers {live0}->{live1}, live_bytes {bytes0}->{bytes1}; free memory at baseline and after 1, 2, 3 rounds: {trend:?} KiB",
        total >> 20
    );
    if live1 != live0 || bytes1 != bytes0 {
        return Err(format!(
            "counters did not return: live_buffers {live0}->{live1}, live_bytes {bytes0}->{bytes1}"
        ));
    }
    if live1 != 0 {
        return Err(format!("live_buffers is {live1} with no buffer open"));
    }
    let lost = |from: u64, to: u64| from.saturating_sub(to);
    // KASAN holds freed slab objects in a quarantine before they go back: its kernel
    // gets more slack, still far below one round's buffers.
    let margin = if kasan()? { 8 * MARGIN_KIB } else { MARGIN_KIB };
    if lost(free0, free1) > margin || lost(free0, free3) > margin {
        return Err(format!(
            "free memory did not come back within {margin} KiB: {trend:?} KiB ({})",
            meminfo_summary()
        ));
    }
    Ok(())
}

/// Whether the kernel runs with KASAN (its runtime's symbols are in kallsyms).
fn kasan() -> Result<bool, String> {
    let syms = std::fs::read_to_string("/proc/kallsyms").map_err(|e| format!("kallsyms: {e}"))?;
    Ok(syms.lines().any(|l| l.ends_with(" __asan_load8")))
}

fn meminfo_summary() -> String {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .filter(|l| {
            ["Slab", "SUnreclaim", "PageTables", "Unevictable", "Shmem:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}
