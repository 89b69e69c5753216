//! Many processes allocating and freeing at once from every device heap.

use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use super::dma_buf;
use super::dma_heap::{self, Heap};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "concurrency::processes_allocate_at_once",
            run: processes_allocate_at_once,
        },
        Test {
            name: "concurrency::threads_share_one_heap_fd",
            run: threads_share_one_heap_fd,
        },
    ]
}

/// Hidden subcommand run by each child: `--child-alloc <heap> <iterations> <seed>`.
pub const CHILD_FLAG: &str = "--child-alloc";

const CHILDREN: usize = 8;
const ITERATIONS: u32 = 100;

fn processes_allocate_at_once() -> Result<(), String> {
    let heaps = dma_heap::device_heaps()?;
    if heaps.is_empty() {
        return Err("no device heaps".into());
    }
    let before = dma_heap::debugfs_counter("live_buffers")?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            let heap = &heaps[i % heaps.len()];
            Command::new(&exe)
                .args([CHILD_FLAG, heap, &ITERATIONS.to_string(), &i.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map(|c| (heap.clone(), c))
                .map_err(|e| format!("spawn child {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut errs = Vec::new();
    for (i, (heap, c)) in children.into_iter().enumerate() {
        let out = c
            .wait_with_output()
            .map_err(|e| format!("wait child {i}: {e}"))?;
        if !out.status.success() {
            errs.push(format!(
                "child {i} on {heap}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    let after = dma_heap::debugfs_counter("live_buffers")?;
    if after != before {
        return Err(format!(
            "live_buffers {before} before, {after} after all children exited"
        ));
    }
    println!(
        "INFO concurrency: {CHILDREN} processes x {ITERATIONS} allocations over {} heaps",
        heaps.len()
    );
    Ok(())
}

/// Body of one child: allocate, write, verify and free `iterations` buffers of varying size,
/// keeping a few alive at a time.
pub fn child_main(heap: &str, iterations: u32, seed: u32) -> Result<(), String> {
    let heap = Heap::open(heap)?;
    let mut live = Vec::new();
    for i in 0..iterations {
        let len = 4096 * (1 + ((i * 7 + seed * 3) % 16)) as usize;
        let b = heap
            .alloc(len as u64)
            .map_err(|e| format!("iteration {i}: {e}"))?;
        let s = seed << 16 | i;
        dma_buf::fill(b.as_fd(), len, s)?;
        live.push((b, len, s));
        if live.len() > 4 {
            let (b, len, s) = live.remove(0);
            dma_buf::check(b.as_fd(), len, s).map_err(|e| format!("iteration {i}: {e}"))?;
        }
    }
    for (b, len, s) in live {
        dma_buf::check(b.as_fd(), len, s)?;
    }
    Ok(())
}

/// Threads of one process allocating through the same heap file descriptor.
fn threads_share_one_heap_fd() -> Result<(), String> {
    let names = dma_heap::device_heaps()?;
    let before = dma_heap::debugfs_counter("live_buffers")?;
    for name in &names {
        let heap = Heap::open(name)?;
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CHILDREN as u32)
                .map(|t| {
                    let heap = &heap;
                    s.spawn(move || -> Result<(), String> {
                        for i in 0..ITERATIONS {
                            let len = 4096 * (1 + ((i + t) % 8)) as usize;
                            let b = heap.alloc(len as u64)?;
                            dma_buf::fill(b.as_fd(), len, t << 16 | i)?;
                            dma_buf::check(b.as_fd(), len, t << 16 | i)
                                .map_err(|e| format!("thread {t} iteration {i}: {e}"))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        let errs: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if !errs.is_empty() {
            return Err(format!("[{name}] {}", errs.join("; ")));
        }
    }
    let after = dma_heap::debugfs_counter("live_buffers")?;
    if after != before {
        return Err(format!("live_buffers {before} before, {after} after"));
    }
    Ok(())
}
