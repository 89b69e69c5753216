//! How much one user may pin: the module's own count per user (kernel/heap_user_limit.c),
//! the bound that holds where no memory cgroup limit does.
//!
//! A child opens a heap as root, becomes an unprivileged user (no capabilities, no
//! supplementary groups) in a memory cgroup without `memory.max`, and allocates until
//! refused: the module's limit refuses it with ENOMEM at exactly the limit, the child lives
//! on, nobody is OOM-killed, and the count goes back to nothing when the buffers are freed
//! or the child exits. Root (CAP_IPC_LOCK) is counted but not limited. The limit is the module
//! parameter `max_user_bytes`, an eighth of RAM by default, which refuses anything but a
//! number of bytes no larger than RAM with EINVAL and keeps its value.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::accounting::{global_oom_kills, keyed, meminfo, read, write, Charger, Group};
use super::dma_heap::{self, Heap, CLASS};
use super::{all_ok, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "user_limit::default_is_an_eighth_of_ram",
            run: default_is_an_eighth_of_ram,
        },
        Test {
            name: "user_limit::bad_input_changes_nothing",
            run: bad_input_changes_nothing,
        },
        Test {
            name: "user_limit::user_stops_at_the_limit_without_memory_max",
            run: user_stops_at_the_limit,
        },
        Test {
            name: "user_limit::zero_leaves_users_nothing_and_root_everything",
            run: zero_leaves_users_nothing,
        },
        Test {
            name: "user_limit::system_heap_bounded_only_where_it_is_ours",
            run: system_heap_bounded_only_where_ours,
        },
    ]
}

const PARAM: &str = "/sys/module/device_heap/parameters/max_user_bytes";
const USERS: &str = "/sys/kernel/debug/device_heap/users";
/// The unprivileged user the children become (no passwd entry needed).
const TEST_UID: u32 = 4242;
const CHUNK: u64 = 2 << 20;
const LIMIT: u64 = 16 << 20;
const EINVAL: i32 = 22;

fn limit() -> Result<u64, String> {
    let s = read(Path::new(PARAM))?;
    s.trim().parse().map_err(|_| format!("{PARAM}: {s:?}"))
}

fn mem_total() -> Result<u64, String> {
    meminfo("MemTotal")
}

/// Sets the limit for the time of a test, and puts the old one back.
struct LimitGuard(u64);

impl LimitGuard {
    fn set(bytes: u64) -> Result<Self, String> {
        let old = limit()?;
        write(Path::new(PARAM), &bytes.to_string())?;
        Ok(Self(old))
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        if let Err(e) = write(Path::new(PARAM), &self.0.to_string()) {
            println!("INFO user_limit: could not restore max_user_bytes: {e}");
        }
    }
}

/// The debugfs count of one user: (bytes, buffers), or None when it has none.
fn pinned_by(uid: u32) -> Result<Option<(u64, u64)>, String> {
    for line in read(Path::new(USERS))?.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().map_err(|_| format!("{USERS}: {line:?}")))
            .collect::<Result<_, _>>()?;
        match f[..] {
            [u, bytes, buffers] if u == u64::from(uid) => return Ok(Some((bytes, buffers))),
            [_, _, _] => {}
            _ => return Err(format!("{USERS}: {line:?}")),
        }
    }
    Ok(None)
}

/// Waits (briefly: a dying process releases its files as it exits) until `uid` has nothing.
fn wait_unpinned(uid: u32) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match pinned_by(uid)? {
            None => return Ok(()),
            Some(p) if Instant::now() > deadline => {
                return Err(format!("uid {uid} still has {p:?} (bytes, buffers) pinned"))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One scattered and one contiguous heap of the module, where there are.
fn heaps_to_try() -> Result<Vec<String>, String> {
    let infos = dma_heap::all_infos()?;
    let mut picked = Vec::new();
    for contiguous in [false, true] {
        if let Some(h) = infos.iter().find(|h| h.contiguous == contiguous) {
            picked.push(h.name.clone());
        }
    }
    if picked.is_empty() {
        return Err("no device heaps".into());
    }
    Ok(picked)
}

fn default_is_an_eighth_of_ram() -> Result<(), String> {
    let want = mem_total()? / 8 / 4096 * 4096;
    let got = limit()?;
    let mut errs = Vec::new();
    if got != want {
        errs.push(format!(
            "max_user_bytes {got}, expected an eighth of RAM ({want})"
        ));
    }
    for h in dma_heap::device_heaps()? {
        let p = Path::new(CLASS).join(&h).join("max_user_bytes");
        let attr = read(&p)?;
        if attr.trim() != got.to_string() {
            errs.push(format!("{}: {attr:?}, the module says {got}", p.display()));
        }
    }
    println!("INFO user_limit: max_user_bytes {got} ({} MiB)", got >> 20);
    all_ok(errs)
}

fn bad_input_changes_nothing() -> Result<(), String> {
    let before = limit()?;
    let above_ram = (mem_total()? + 4096).to_string();
    let mut errs = Vec::new();
    for bad in [
        "\n",
        "abc",
        "-1",
        "12abc",
        "1 2",
        "0x",
        "1.5",
        "16M",
        "0x1000",
        above_ram.as_str(),
        "18446744073709551616",
    ] {
        match fs::write(PARAM, bad) {
            Ok(()) => errs.push(format!("{bad:?} accepted")),
            Err(e) if e.raw_os_error() == Some(EINVAL) => {}
            Err(e) => errs.push(format!("{bad:?}: {e}, expected EINVAL")),
        }
        let now = limit()?;
        if now != before {
            errs.push(format!(
                "{bad:?} changed max_user_bytes from {before} to {now}"
            ));
            // Put it back, so that one failure does not make the next ones.
            write(Path::new(PARAM), &before.to_string())?;
        }
    }
    // Read-only on the heaps: the limit is the module's, one for all heaps.
    for h in dma_heap::device_heaps()?.iter().take(1) {
        let p = Path::new(CLASS).join(h).join("max_user_bytes");
        if fs::write(&p, "1").is_ok() {
            errs.push(format!("{} is writable", p.display()));
        }
    }
    all_ok(errs)
}

/// The group must really be unbounded: no memory.max on it or any ancestor.
fn check_unbounded(group: &Path) -> Result<(), String> {
    let mut dir = group;
    while let Ok(max) = fs::read_to_string(dir.join("memory.max")) {
        if max.trim() != "max" {
            return Err(format!("{}/memory.max is {}", dir.display(), max.trim()));
        }
        dir = match dir.parent() {
            Some(p) => p,
            None => break,
        };
    }
    Ok(())
}

fn user_stops_at_the_limit() -> Result<(), String> {
    let _limit = LimitGuard::set(LIMIT)?;
    let mut errs = Vec::new();
    for heap in heaps_to_try()? {
        if let Err(e) = limit_cycle(&heap) {
            errs.push(format!("{heap}: {e}"));
        }
    }
    if let Err(e) = root_goes_past(&heaps_to_try()?[0]) {
        errs.push(e);
    }
    all_ok(errs)
}

/// One user, one heap: allocate to the limit, be refused, free, allocate again, exit.
fn limit_cycle(heap: &str) -> Result<(), String> {
    wait_unpinned(TEST_UID)?;
    let group = Group::new("user-limit")?;
    check_unbounded(&group.0)?;
    let ooms = global_oom_kills()?;
    let mut child = Charger::spawn_as(heap, &group.0, CHUNK, Some(TEST_UID))?;
    let fits = LIMIT / CHUNK;
    for round in ["first", "second"] {
        let mut n = 0;
        while child.alloc()?.is_some() {
            n += 1;
            if n > fits {
                return Err(format!(
                    "uid {TEST_UID} allocated {n} x {CHUNK} bytes, past the limit {LIMIT}"
                ));
            }
        }
        if n != fits {
            return Err(format!(
                "{round} round: refused after {n} buffers of {CHUNK} bytes, the limit \
                 {LIMIT} holds {fits}"
            ));
        }
        let pinned = pinned_by(TEST_UID)?;
        if pinned != Some((LIMIT, fits)) {
            return Err(format!(
                "{round} round: debugfs counts {pinned:?} (bytes, buffers) for uid \
                 {TEST_UID}, expected ({LIMIT}, {fits})"
            ));
        }
        if child.ask("ping")? != "ok" {
            return Err("the refused child does not answer".into());
        }
        if round == "first" {
            child.ask("free")?;
            wait_unpinned(TEST_UID)?;
        }
    }
    let events = read(&group.0.join("memory.events"))?;
    if keyed(&events, "oom_kill") != Some(0) {
        return Err(format!("memory.events of the group: {events:?}"));
    }
    let now = global_oom_kills()?;
    if now != ooms {
        return Err(format!(
            "oom_kill in /proc/vmstat went from {ooms} to {now}"
        ));
    }
    // Exiting with buffers held gives them back.
    let pid = child.pid();
    child.exit()?;
    wait_unpinned(TEST_UID)?;
    println!(
        "INFO user_limit: {heap}: uid {TEST_UID} (pid {pid}) refused at {fits} x {} MiB, \
         no memory.max, nobody OOM-killed",
        CHUNK >> 20
    );
    Ok(())
}

/// Root (CAP_IPC_LOCK) is counted but not limited: it allocates past the limit, and its
/// count shows it.
fn root_goes_past(heap: &str) -> Result<(), String> {
    let h = Heap::open(heap)?;
    let mut held = Vec::new();
    for _ in 0..=LIMIT / CHUNK {
        held.push(
            h.alloc(CHUNK)
                .map_err(|e| format!("root past the limit: {e}"))?,
        );
    }
    let want = (LIMIT / CHUNK + 1) * CHUNK;
    match pinned_by(0)? {
        Some((bytes, _)) if bytes >= want => Ok(()),
        other => Err(format!(
            "root holds {want} bytes of {heap}, and debugfs counts {other:?} for uid 0"
        )),
    }
}

/// A limit of 0: users may pin nothing at all, root still allocates.
fn zero_leaves_users_nothing() -> Result<(), String> {
    let _limit = LimitGuard::set(0)?;
    let heap = heaps_to_try()?.remove(0);
    let group = Group::new("user-zero")?;
    let mut child = Charger::spawn_as(&heap, &group.0, 4096, Some(TEST_UID))?;
    if let Some(fd) = child.alloc()? {
        return Err(format!(
            "uid {TEST_UID} got buffer {fd} with max_user_bytes 0"
        ));
    }
    child.exit()?;
    Heap::open(&heap)?.alloc(4096).map(drop)
}

/// Why the udev rule leaves the kernel's `system` heap to root: the same user, in the same
/// group without `memory.max`, allocates from it past the limit our heaps refuse at, with
/// nothing refusing (charging memcg or not: 7-cma has `dma_heap.mem_accounting=1`). Where
/// `system` is the module's own (armhf), it is bounded like the others.
fn system_heap_bounded_only_where_ours() -> Result<(), String> {
    if !Path::new("/dev/dma_heap/system").exists() {
        return Err("no system heap in this guest".into());
    }
    let ours = Path::new(CLASS).join("system").exists();
    let _limit = LimitGuard::set(LIMIT)?;
    wait_unpinned(TEST_UID)?;
    let group = Group::new("user-system")?;
    check_unbounded(&group.0)?;
    let mut child = Charger::spawn_as("system", &group.0, CHUNK, Some(TEST_UID))?;
    let past = LIMIT / CHUNK + 4;
    let mut got = 0;
    while got < past && child.alloc()?.is_some() {
        got += 1;
    }
    child.exit()?;
    println!(
        "INFO user_limit: system ({}): uid {TEST_UID} got {got} x {} MiB under a {} MiB limit",
        if ours { "the module's" } else { "the kernel's" },
        CHUNK >> 20,
        LIMIT >> 20
    );
    match (ours, got) {
        (true, n) if n == LIMIT / CHUNK => Ok(()),
        (false, n) if n == past => Ok(()),
        (true, n) => Err(format!(
            "the module's system heap let uid {TEST_UID} have {n} buffers, the limit holds {}",
            LIMIT / CHUNK
        )),
        (false, n) => Err(format!(
            "the kernel's system heap refused uid {TEST_UID} after {n} buffers: it has a \
             bound after all, and the udev rule could grant it"
        )),
    }
}
