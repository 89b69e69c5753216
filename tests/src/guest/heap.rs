//! Basic behaviour of every device heap: allocation, CPU access, zeroing, sync, size.

use std::os::fd::AsFd;

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap, HeapInfo};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "heap::every_heap_has_a_node",
            run: every_heap_has_a_node,
        },
        Test {
            name: "heap::alloc_mmap_write_read_back",
            run: alloc_mmap_write_read_back,
        },
        Test {
            name: "heap::mmap_at_an_offset_and_out_of_range",
            run: mmap_at_an_offset_and_out_of_range,
        },
        Test {
            name: "heap::private_mappings_refused",
            run: private_mappings_refused,
        },
        Test {
            name: "heap::zeroed_on_allocation",
            run: zeroed_on_allocation,
        },
        Test {
            name: "heap::madvise_dontneed_keeps_contents",
            run: madvise_dontneed_keeps_contents,
        },
        Test {
            name: "heap::dma_buf_sync_start_end",
            run: dma_buf_sync_start_end,
        },
        Test {
            name: "heap::contiguous_heaps_give_1080p_xrgb",
            run: contiguous_heaps_give_1080p_xrgb,
        },
        Test {
            name: "heap::max_alloc_bytes_enforced",
            run: max_alloc_bytes_enforced,
        },
    ]
}

/// Runs `f` on every device heap, collecting every failure rather than stopping at one.
pub fn for_each_heap(f: impl Fn(&HeapInfo, &Heap) -> Result<(), String>) -> Result<(), String> {
    let infos = dma_heap::all_infos()?;
    let errs: Vec<String> = infos
        .iter()
        .filter_map(|i| {
            Heap::open(&i.name)
                .and_then(|h| f(i, &h))
                .err()
                .map(|e| format!("[{}] {e}", i.name))
        })
        .collect();
    super::all_ok(errs)
}

fn every_heap_has_a_node() -> Result<(), String> {
    let infos = dma_heap::all_infos()?;
    for i in &infos {
        let st = rustix::fs::stat(format!("/dev/dma_heap/{}", i.name).as_str())
            .map_err(|e| format!("/dev/dma_heap/{}: {e}", i.name))?;
        let dev = format!(
            "{}:{}",
            rustix::fs::major(st.st_rdev),
            rustix::fs::minor(st.st_rdev)
        );
        if dev != i.dev {
            return Err(format!(
                "/dev/dma_heap/{} is {dev} but sysfs dev says {}",
                i.name, i.dev
            ));
        }
    }
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    println!("INFO device heaps: {}", names.join(" "));
    Ok(())
}

fn alloc_mmap_write_read_back() -> Result<(), String> {
    for_each_heap(|_, heap| {
        for (k, len) in [4096usize, 3 * 4096, 1 << 20].into_iter().enumerate() {
            let buf = heap.alloc(len as u64)?;
            let seed = 0x1000 + k as u32;
            dma_buf::fill(buf.as_fd(), len, seed)?;
            // A second, independent mapping must see what the first wrote.
            dma_buf::check(buf.as_fd(), len, seed).map_err(|e| format!("len {len}: {e}"))?;
        }
        Ok(())
    })
}

/// A mapping at a page offset shows that part of the buffer; mappings past the end fail.
fn mmap_at_an_offset_and_out_of_range() -> Result<(), String> {
    for_each_heap(|_, heap| {
        const PAGES: usize = 8;
        let len = PAGES * 4096;
        let b = heap.alloc(len as u64)?;
        dma_buf::fill(b.as_fd(), len, 99)?;
        for (first, count) in [(1usize, 2usize), (5, 3), (7, 1)] {
            let m = Mapping::with_offset(&b, count * 4096, (first * 4096) as u64)?;
            let base = first * 1024;
            if let Some((i, w)) = m
                .words()
                .iter()
                .enumerate()
                .find(|(i, w)| **w != dma_buf::pattern(99, base + i))
            {
                return Err(format!(
                    "mapping of pages {first}..{}: word {i} is {w:#x}, expected {:#x}",
                    first + count,
                    dma_buf::pattern(99, base + i)
                ));
            }
        }
        for (first, count) in [(0usize, PAGES + 1), (PAGES, 1), (PAGES - 1, 2)] {
            if Mapping::with_offset(&b, count * 4096, (first * 4096) as u64).is_ok() {
                return Err(format!(
                    "mapping pages {first}..{} of an {PAGES}-page buffer succeeded",
                    first + count
                ));
            }
        }
        Ok(())
    })
}

/// A private mapping of a dma-buf would be a copy no device sees (and copy-on-write of
/// remapped pages works for one page at most): heaps refuse it, of any length.
fn private_mappings_refused() -> Result<(), String> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    for_each_heap(|_, heap| {
        let b = heap.alloc(4 * 4096)?;
        for pages in [1usize, 2, 4] {
            // SAFETY: a fresh mapping chosen by the kernel aliases no Rust memory; it is
            // unmapped at once if it was made.
            let r = unsafe {
                mmap(
                    std::ptr::null_mut(),
                    pages * 4096,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE,
                    b.as_fd(),
                    0,
                )
            };
            match r {
                Err(rustix::io::Errno::INVAL) => {}
                Ok(p) => {
                    // SAFETY: p is the mapping just made, of this length.
                    let _ = unsafe { munmap(p, pages * 4096) };
                    return Err(format!("MAP_PRIVATE of {pages} page(s) succeeded"));
                }
                Err(e) => {
                    return Err(format!(
                        "MAP_PRIVATE of {pages} page(s): {e}, expected EINVAL"
                    ))
                }
            }
        }
        // Shared mappings still work.
        dma_buf::fill(b.as_fd(), 4 * 4096, 3)?;
        dma_buf::check(b.as_fd(), 4 * 4096, 3)
    })
}

fn zeroed_on_allocation() -> Result<(), String> {
    for_each_heap(|_, heap| {
        // 1 MiB and one 1080p frame (above 4 MiB: contiguous heaps' large-buffer path).
        for len in [1usize << 20, 1920 * 1080 * 4] {
            // Dirty buffers and free them, so the next allocations likely reuse the pages.
            for _ in 0..3 {
                let b = heap.alloc(len as u64)?;
                let mut m = Mapping::new(&b, len)?;
                m.bytes_mut().fill(0xa5);
            }
            for round in 0..3 {
                let b = heap.alloc(len as u64)?;
                let m = Mapping::new(&b, len)?;
                if let Some(pos) = m.bytes().iter().position(|&x| x != 0) {
                    return Err(format!(
                        "len {len} round {round}: byte {pos} of a new buffer is {:#x}, not 0",
                        m.bytes()[pos]
                    ));
                }
            }
        }
        Ok(())
    })
}

/// MADV_DONTNEED on a mapping of a buffer loses nothing: the kernel refuses it on the
/// module's VM_PFNMAP mappings (EINVAL), or drops the pages from the mapping and the next
/// touch maps the buffer's own pages again; either way the contents read back whole, also
/// through a second mapping.
fn madvise_dontneed_keeps_contents() -> Result<(), String> {
    use rustix::mm::{madvise, Advice};
    const LEN: usize = 256 * 1024;
    for_each_heap(|_, heap| {
        let b = heap.alloc(LEN as u64)?;
        dma_buf::fill(b.as_fd(), LEN, 77)?;
        let mut m = Mapping::new(&b, LEN)?;
        m.words_mut()[5] = 0x1234_5678;
        // SAFETY: the range is the live mapping `m`, which nothing else borrows now.
        let r = unsafe {
            madvise(
                m.bytes_mut().as_mut_ptr().cast(),
                LEN,
                Advice::LinuxDontNeed,
            )
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(format!("madvise(MADV_DONTNEED): {e}")),
        }
        if m.words()[5] != 0x1234_5678 {
            return Err(format!(
                "after MADV_DONTNEED ({r:?}) the mapping reads {:#x}, not what was written",
                m.words()[5]
            ));
        }
        m.words_mut()[5] = dma_buf::pattern(77, 5);
        drop(m);
        dma_buf::check(b.as_fd(), LEN, 77)
    })
}

fn dma_buf_sync_start_end() -> Result<(), String> {
    use dma_buf::{SYNC_END, SYNC_READ, SYNC_RW, SYNC_START, SYNC_WRITE};
    for_each_heap(|_, heap| {
        let b = heap.alloc(8192)?;
        let _m = Mapping::new(&b, 8192)?;
        for flags in [
            SYNC_START | SYNC_READ,
            SYNC_END | SYNC_READ,
            SYNC_START | SYNC_WRITE,
            SYNC_END | SYNC_WRITE,
            SYNC_START | SYNC_RW,
            SYNC_END | SYNC_RW,
        ] {
            dma_buf::sync(b.as_fd(), flags).map_err(|e| format!("SYNC {flags:#x}: {e}"))?;
        }
        // The dma-buf core rejects flags without a direction or with unknown bits.
        for bad in [SYNC_START, 0x10 | SYNC_READ] {
            match dma_buf::sync(b.as_fd(), bad) {
                Err(rustix::io::Errno::INVAL) => {}
                other => return Err(format!("SYNC {bad:#x}: expected EINVAL, got {other:?}")),
            }
        }
        Ok(())
    })
}

/// Contiguous heaps exist for devices that need 1080p scanout or capture in one piece.
fn contiguous_heaps_give_1080p_xrgb() -> Result<(), String> {
    let contig: Vec<HeapInfo> = dma_heap::all_infos()?
        .into_iter()
        .filter(|i| i.contiguous)
        .collect();
    if contig.is_empty() {
        return Err("no device heap is contiguous (vkms/vivid.0 need one)".into());
    }
    for i in contig {
        let heap = Heap::open(&i.name)?;
        const LEN: usize = 1920 * 1080 * 4;
        let b = heap
            .alloc(LEN as u64)
            .map_err(|e| format!("[{}] {e}", i.name))?;
        dma_buf::fill(b.as_fd(), LEN, 77)?;
        dma_buf::check(b.as_fd(), LEN, 77).map_err(|e| format!("[{}] {e}", i.name))?;
    }
    Ok(())
}

fn max_alloc_bytes_enforced() -> Result<(), String> {
    for_each_heap(|info, heap| {
        let over = info.max_alloc_bytes.saturating_add(4096);
        match dma_heap::alloc(heap.fd.as_fd(), over) {
            Err(rustix::io::Errno::NOMEM) => Ok(()),
            Ok(_) => Err(format!("alloc of max_alloc_bytes+4096 = {over} succeeded")),
            Err(e) => Err(format!(
                "alloc of {over} (> max_alloc_bytes): expected ENOMEM, got {e}"
            )),
        }
    })
}
