//! Everything at once, from several processes: allocations of 64 KiB and more from every
//! contiguous heap and the scattered one, while the block cache ages blocks every
//! millisecond (`cache_ms=1`), `drop_caches` runs its shrinker, and a device that alone
//! needs a heap stops and starts being served (the heap goes and comes back). Workers
//! must see every allocation succeed or fail with ENODEV/ENOMEM, every buffer they wrote
//! read back whole; afterwards nothing is left allocated. The debug boot's KASAN, KFENCE
//! and lockdep watch the module's locking and lifetimes all along (tests/vm/run fails the
//! boot on any report).

use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::dma_buf;
use super::dma_heap;
use super::kernel_log::Mark;
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "stress::allocate_drop_caches_age_and_remove_at_once",
        run: allocate_drop_caches_age_and_remove_at_once,
    }]
}

/// The runner's flag for a worker process: `--stress-worker <seconds> <seed> <heap>...`.
pub const CHILD_FLAG: &str = "--stress-worker";

const WORKERS: usize = 3;
const SECONDS: u64 = 20;
/// vivid.0 served as a scatter-gather device: the only entry needing `system-32bit`.
const SG_HEAP: &str = "system-32bit";
const PARAMS: &str = "/sys/module/device_heap/parameters";

fn allocate_drop_caches_age_and_remove_at_once() -> Result<(), String> {
    let entry = dma_heap::spec("vivid.0", Some("sg"))?;
    let old_ms = std::fs::read_to_string(format!("{PARAMS}/cache_ms"))
        .map_err(|e| format!("cache_ms: {e}"))?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    dma_heap::control("add", &entry)?;
    std::fs::write(format!("{PARAMS}/cache_ms"), "1").map_err(|e| format!("cache_ms: {e}"))?;
    let mut heaps: Vec<String> = dma_heap::all_infos()?
        .into_iter()
        .filter(|h| h.contiguous)
        .map(|h| h.name)
        .collect();
    heaps.push(SG_HEAP.into());
    let mark = Mark::new("stress");
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut children: Vec<Child> = Vec::new();
    let mut errs = Vec::new();
    for seed in 0..WORKERS {
        match Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg(SECONDS.to_string())
            .arg(seed.to_string())
            .args(&heaps)
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => errs.push(format!("spawning worker {seed}: {e}")),
        }
    }
    // Meanwhile: the shrinker, and the heap only vivid.0's sg entry needs, away and back.
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
            errs.push(format!("drop_caches: {e}"));
            break;
        }
        if let Err(e) = dma_heap::control("remove", &entry) {
            errs.push(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        if let Err(e) = dma_heap::control("add", &entry) {
            errs.push(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(350));
        rounds += 1;
    }
    for (i, mut c) in children.into_iter().enumerate() {
        match c.wait() {
            Ok(st) if st.success() => {}
            Ok(st) => errs.push(format!("worker {i} failed: {st}")),
            Err(e) => errs.push(format!("worker {i}: {e}")),
        }
    }
    let _ = std::fs::write(format!("{PARAMS}/cache_ms"), old_ms.trim());
    if let Err(e) = dma_heap::control("remove", &entry) {
        errs.push(format!("removing the sg entry at the end: {e}"));
    }
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    println!("INFO stress: {WORKERS} workers for {SECONDS} s against {rounds} rounds of remove/add and drop_caches over {heaps:?}");
    match dma_heap::debugfs_counter("live_buffers") {
        Ok(n) if n == live0 => {}
        Ok(n) => errs.push(format!(
            "live_buffers {live0} -> {n} after the workers exited"
        )),
        Err(e) => errs.push(e),
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// One worker: for `seconds`, allocates from the heaps in turn (sizes from 64 KiB to
/// 5 MiB), writes and checks each buffer, keeps a few alive and frees the rest. A heap
/// that is not there (removed: ENOENT at open, ENODEV at allocation) or out of memory
/// (ENOMEM) is skipped; anything else fails the worker.
pub fn child_main(seconds: u64, seed: u32, heaps: &[String]) -> Result<(), String> {
    const SIZES: &[usize] = &[64 << 10, 192 << 10, 1 << 20, 3 << 20, 5 << 20];
    let start = Instant::now();
    let mut kept = Vec::new();
    let mut i = seed as usize;
    let (mut ok, mut gone) = (0u32, 0u32);
    while start.elapsed() < Duration::from_secs(seconds) {
        let name = &heaps[i % heaps.len()];
        let len = SIZES[(i / heaps.len() + seed as usize) % SIZES.len()];
        i += 1;
        // The node comes and goes with the heap where the module owns it (6.12).
        let path = format!("/dev/dma_heap/{name}");
        let heap = match rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NODEV) | Err(Errno::NXIO) => {
                gone += 1;
                continue;
            }
            Err(e) => return Err(format!("open {path}: {e}")),
        };
        let buf = match dma_heap::alloc(heap.as_fd(), len as u64) {
            Ok(b) => b,
            Err(Errno::NODEV) | Err(Errno::NOMEM) => {
                gone += 1;
                continue;
            }
            Err(e) => return Err(format!("{name}: {len} bytes: {e}")),
        };
        let pat = seed.wrapping_mul(1000).wrapping_add(i as u32);
        dma_buf::fill(buf.as_fd(), len, pat)?;
        dma_buf::check(buf.as_fd(), len, pat).map_err(|e| format!("{name}: {e}"))?;
        ok += 1;
        kept.push((buf, len, pat));
        if kept.len() > 4 {
            let (b, l, p) = kept.remove(0);
            dma_buf::check(b.as_fd(), l, p).map_err(|e| format!("kept buffer: {e}"))?;
        }
    }
    println!("INFO stress worker {seed}: {ok} buffers, {gone} refused or gone");
    if ok == 0 {
        return Err(format!("worker {seed} allocated nothing"));
    }
    Ok(())
}
