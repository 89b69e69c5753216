//! DMA_HEAP_IOCTL_ALLOC with bad requests: clear errors, nothing allocated.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Instant;

use rustix::io::Errno;

use super::dma_buf;
use super::dma_heap::{self, AllocationData, FD_FLAGS};
use super::heap::for_each_heap;
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "bad_input::zero_len_is_einval",
            run: zero_len_is_einval,
        },
        Test {
            name: "bad_input::unaligned_len_rounds_up",
            run: unaligned_len_rounds_up,
        },
        Test {
            name: "bad_input::absurd_len_is_enomem",
            run: absurd_len_is_enomem,
        },
        Test {
            name: "bad_input::unknown_fd_flags_is_einval",
            run: unknown_fd_flags_is_einval,
        },
        Test {
            name: "bad_input::nonzero_heap_flags_is_einval",
            run: nonzero_heap_flags_is_einval,
        },
        Test {
            name: "bad_input::nonzero_fd_field_is_einval",
            run: nonzero_fd_field_is_einval,
        },
        Test {
            name: "bad_input::control_files_reject_bad_writes",
            run: control_files_reject_bad_writes,
        },
    ]
}

/// Sends `req` and expects `want`; on unexpected success closes the returned fd.
fn expect_err(heap: &dma_heap::Heap, mut req: AllocationData, want: Errno) -> Result<(), String> {
    let before = dma_heap::debugfs_counter("live_buffers").ok();
    let shown = req;
    match dma_heap::alloc_raw(heap.fd.as_fd(), &mut req) {
        Err(e) if e == want => {}
        Err(e) => return Err(format!("{shown:?}: expected {want}, got {e}")),
        Ok(()) => {
            // SAFETY: the kernel gave us this fd.
            drop(unsafe { OwnedFd::from_raw_fd(req.fd as i32) });
            return Err(format!("{shown:?}: expected {want}, but it succeeded"));
        }
    }
    let after = dma_heap::debugfs_counter("live_buffers").ok();
    if before != after {
        return Err(format!(
            "{shown:?} failed but live_buffers went {before:?} -> {after:?}"
        ));
    }
    Ok(())
}

fn req(len: u64) -> AllocationData {
    AllocationData {
        len,
        fd_flags: FD_FLAGS,
        ..Default::default()
    }
}

fn zero_len_is_einval() -> Result<(), String> {
    for_each_heap(|_, h| expect_err(h, req(0), Errno::INVAL))
}

fn unaligned_len_rounds_up() -> Result<(), String> {
    for_each_heap(|_, h| {
        for (len, want) in [(1u64, 4096u64), (4097, 8192), (3 * 4096 + 100, 4 * 4096)] {
            let b = h.alloc(len)?;
            let size = dma_buf::size(b.as_fd())?;
            if size != want {
                return Err(format!("len {len}: dma-buf size {size}, expected {want}"));
            }
            // The whole rounded-up size is usable.
            dma_buf::fill(b.as_fd(), want as usize, len as u32)?;
            dma_buf::check(b.as_fd(), want as usize, len as u32)?;
        }
        Ok(())
    })
}

fn absurd_len_is_enomem() -> Result<(), String> {
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .ok_or("no MemTotal in /proc/meminfo")?
        * 1024;
    for_each_heap(|_, h| {
        for len in [1u64 << 60, ram + (ram / 2), !4095u64] {
            let t = Instant::now();
            expect_err(h, req(len), Errno::NOMEM)?;
            println!(
                "INFO bad_input: [{}] len {len:#x} -> ENOMEM in {:?}",
                h.name,
                t.elapsed()
            );
        }
        Ok(())
    })
}

fn unknown_fd_flags_is_einval() -> Result<(), String> {
    for_each_heap(|_, h| {
        for flags in [FD_FLAGS | 0x4000_0000, 0x8000_0000] {
            let mut r = req(4096);
            r.fd_flags = flags;
            expect_err(h, r, Errno::INVAL)?;
        }
        Ok(())
    })
}

fn nonzero_heap_flags_is_einval() -> Result<(), String> {
    for_each_heap(|_, h| {
        for flags in [1u64, 1 << 63] {
            let mut r = req(4096);
            r.heap_flags = flags;
            expect_err(h, r, Errno::INVAL)?;
        }
        Ok(())
    })
}

fn nonzero_fd_field_is_einval() -> Result<(), String> {
    for_each_heap(|_, h| {
        let mut r = req(4096);
        r.fd = 3;
        expect_err(h, r, Errno::INVAL)
    })
}

/// /sys/class/device_heap/{add,remove} refuse what they cannot do, with the ABI's errors,
/// and change nothing.
fn control_files_reject_bad_writes() -> Result<(), String> {
    const ENODEV: i32 = 19;
    const ENOENT: i32 = 2;
    let before = dma_heap::device_heaps()?;
    let mut errs = Vec::new();
    let vgem = dma_heap::spec("vgem", None)?;
    let cases: &[(&str, String, Option<i32>)] = &[
        ("add", "platform/no-such-device".into(), Some(ENODEV)),
        ("add", "no-such-bus/vgem".into(), Some(ENODEV)),
        ("add", format!("{vgem}:bogus"), None),
        ("add", "\n".into(), None),
        ("add", format!("{vgem}:sg:contig"), None),
        ("remove", "no-such-heap".into(), None),
        ("remove", "\n".into(), None),
        // remove takes an entry as add does, never a heap's name.
        ("remove", "platform/no-such-device".into(), Some(ENOENT)),
        ("remove", "system-contiguous".into(), Some(ENOENT)),
    ];
    for (file, value, want) in cases {
        match dma_heap::control_raw(file, value) {
            Ok(()) => errs.push(format!("{file} {value:?} succeeded")),
            Err(e) => {
                if let Some(w) = want {
                    if e.raw_os_error() != Some(*w) {
                        errs.push(format!("{file} {value:?}: {e}, expected errno {w}"));
                    }
                }
            }
        }
    }
    let after = dma_heap::device_heaps()?;
    if after != before {
        errs.push(format!("heaps changed from {before:?} to {after:?}"));
    }
    super::all_ok(errs)
}
