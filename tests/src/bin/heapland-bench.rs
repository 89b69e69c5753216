//! heapland-bench: allocation (+ mmap + first touch of every page) of one
//! 1920x1080 XRGB8888 and one 1280x720 NV12 buffer, run in the guest, side by
//! side from every memory source in one run:
//!
//! - each device heap of `device_heap.ko` (vkms, vgem, vivid.0);
//! - the kernel's `system` heap (the baseline of the ratios);
//! - udmabuf (memfd + `UDMABUF_CREATE`);
//! - DRM dumb buffers on vkms.
//!
//! Prints `BENCH` lines with the median and mean time per buffer and the
//! ratio of medians to the system heap. It asserts nothing about time; it
//! exits non-zero only if a source fails to allocate at all.

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use drm::control::Device as _;
use heapland_allocator::{
    drm_fourcc::DrmFourcc as Fourcc, Alignment, DeviceNumber, Discovery, Heap, HeapKind, Layout,
};

const WARMUP: usize = 3;
const ITERATIONS: usize = 25;
const PAGE: usize = 4096;

struct Card(OwnedFd);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for Card {}
impl drm::control::Device for Card {}

/// The /dev/dri/card* node whose DMA device is `name`.
fn card_of(d: &Discovery, name: &str) -> Option<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("card"))
        })
        .collect();
    paths.sort();
    paths.into_iter().find(|p| {
        DeviceNumber::of_path(p)
            .ok()
            .and_then(|n| d.resolve(n).ok())
            .is_some_and(|i| i.name == name)
    })
}

fn open_card(path: &Path) -> Result<Card, String> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map(Card)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// Writes one byte per page, so every page is really faulted in.
fn touch(bytes: &mut [u8]) {
    for i in (0..bytes.len()).step_by(PAGE) {
        bytes[i] = 1;
    }
}

/// One buffer from a heap: allocate, map, touch inside a sync bracket, free.
fn heap_once(heap: &Heap, len: u64) -> Result<(), String> {
    let buf = heap.allocate(len).map_err(|e| e.to_string())?;
    let mut map = buf.map().map_err(|e| e.to_string())?;
    touch(&mut map.write().map_err(|e| e.to_string())?);
    Ok(())
}

/// One dumb buffer: create, map, touch, destroy.
fn dumb_once(card: &Card, size: (u32, u32), bpp: u32) -> Result<(), String> {
    let mut db = card
        .create_dumb_buffer(size, Fourcc::Xrgb8888, bpp)
        .map_err(|e| format!("CREATE_DUMB: {e}"))?;
    {
        let mut map = card
            .map_dumb_buffer(&mut db)
            .map_err(|e| format!("MAP_DUMB: {e}"))?;
        touch(&mut map);
    }
    card.destroy_dumb_buffer(db)
        .map_err(|e| format!("DESTROY_DUMB: {e}"))
}

struct Stats {
    median: Duration,
    mean: Duration,
}

fn measure(mut once: impl FnMut() -> Result<(), String>) -> Result<Stats, String> {
    for _ in 0..WARMUP {
        once()?;
    }
    let mut times = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        once()?;
        times.push(t.elapsed());
    }
    times.sort();
    let total: Duration = times.iter().sum();
    Ok(Stats {
        median: times[times.len() / 2],
        mean: total / times.len() as u32,
    })
}

fn main() -> std::process::ExitCode {
    let d = Discovery::scan();
    if let Some(reason) = d.empty_reason() {
        println!("BENCH failed: {reason}");
        return std::process::ExitCode::FAILURE;
    }
    let card = card_of(&d, "vkms").map(|p| open_card(&p));
    let configs = [
        ("1920x1080 XRGB8888", Fourcc::Xrgb8888, 1920u32, 1080u32),
        ("1280x720 NV12", Fourcc::Nv12, 1280, 720),
    ];
    println!(
        "BENCH allocation + mmap + first touch of every page, median/mean of {ITERATIONS} after {WARMUP} warm-up; ratio = median / system heap median"
    );
    let mut failed = false;
    for (label, fourcc, w, h) in configs {
        let layout = match Layout::new(fourcc, w, h, Alignment::default()) {
            Ok(l) => l,
            Err(e) => {
                println!("BENCH {label}: {e}");
                failed = true;
                continue;
            }
        };
        let len = layout.alloc_size();
        let mut rows: Vec<(String, Result<Stats, String>)> = Vec::new();
        let mut heaps: Vec<_> = d.heaps().iter().collect();
        // The baseline first.
        heaps.sort_by_key(|h| h.kind != HeapKind::System);
        for info in heaps {
            let name = match info.kind {
                HeapKind::Device => format!("heap {}", info.name),
                HeapKind::System => "heap system (baseline)".to_owned(),
                HeapKind::Cma => format!("heap {} (CMA)", info.name),
                HeapKind::Udmabuf => "udmabuf".to_owned(),
                // Nothing is known of it; it may not even allocate.
                HeapKind::Other => continue,
            };
            let r = Heap::open(info)
                .map_err(|e| e.to_string())
                .and_then(|heap| measure(|| heap_once(&heap, len)));
            rows.push((name, r));
        }
        // Dumb buffers: XRGB8888 as 32 bpp; NV12 as an 8 bpp buffer of
        // height * 3 / 2 rows, the usual way to get a YUV dumb buffer.
        let (size, bpp) = match fourcc {
            Fourcc::Nv12 => ((w, h * 3 / 2), 8),
            _ => ((w, h), 32),
        };
        let r = match &card {
            Some(Ok(card)) => measure(|| dumb_once(card, size, bpp)),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no vkms card".to_owned()),
        };
        rows.push(("dumb on vkms".to_owned(), r));

        let base = rows
            .iter()
            .find(|(n, _)| n.starts_with("heap system"))
            .and_then(|(_, r)| r.as_ref().ok())
            .map(|s| s.median);
        println!("BENCH {label} ({len} bytes)");
        for (name, r) in rows {
            match r {
                Ok(s) => {
                    let ratio = base
                        .map(|b| {
                            format!("{:.2}x", s.median.as_secs_f64() / b.as_secs_f64().max(1e-9))
                        })
                        .unwrap_or_else(|| "n/a".into());
                    println!(
                        "BENCH   {name:<28} median {:>9.1} us  mean {:>9.1} us  ratio {ratio}",
                        s.median.as_secs_f64() * 1e6,
                        s.mean.as_secs_f64() * 1e6
                    );
                }
                Err(e) => {
                    failed = true;
                    println!("BENCH   {name:<28} FAILED: {e}");
                }
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
