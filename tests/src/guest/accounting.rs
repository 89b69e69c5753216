//! Who pays for heap memory: every heap says in sysfs (`accounting`) whether its buffers
//! are charged to the allocating process's memory cgroup (`memcg`: scatter-gather heaps)
//! or to nobody (`none`: contiguous heaps, whose CMA and migrated ranges the kernel gives
//! modules no way to charge), and these tests hold it to that with cgroup v2.
//!
//! A child process in a group of its own, with a limit, allocates on command while the
//! test reads the group's counter: the counter grows by each buffer's size, the
//! allocation past the limit fails with ENOMEM while the child lives on and nobody is
//! OOM-killed, and the charge drops when the buffers are freed, including a buffer the
//! test took from the child (pidfd_getfd) and freed only after the child had exited.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};

use super::dma_heap::{self, Heap, CLASS};
use super::{all_ok, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "accounting::every_heap_says_who_pays",
            run: every_heap_says_who_pays,
        },
        Test {
            name: "accounting::charged_heaps_charge_the_allocating_cgroup",
            run: charged_heaps_charge_the_allocating_cgroup,
        },
        Test {
            name: "accounting::uncharged_heaps_leave_memcg_alone",
            run: uncharged_heaps_leave_memcg_alone,
        },
        Test {
            name: "accounting::fragmented_buffer_metadata_is_charged",
            run: fragmented_buffer_metadata_is_charged,
        },
        Test {
            name: "accounting::udev_rule_grants_bounded_heaps_only",
            run: udev_rule_grants_bounded_heaps_only,
        },
    ]
}

/// Hidden subcommand: `--child-charge <heap> <bytes> [<uid>]`, commanded line by line on
/// stdin; with a uid, it opens the heap as root and then becomes that user (and its group),
/// without supplementary groups or capabilities, before its first allocation.
pub const CHILD_FLAG: &str = "--child-charge";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Size of each buffer the child allocates.
const CHUNK: u64 = 4 << 20;
/// The group's limit: room for a few chunks and the child's own memory.
const LIMIT: u64 = 40 << 20;
/// How far a counter may stray from the buffer sizes: the child's own pages, slab, and the
/// per-CPU stock memcg charges ahead and returns late (64 pages).
const SLACK: u64 = 1 << 20;

fn accounting_of(heap: &str) -> Result<String, String> {
    let p = Path::new(CLASS).join(heap).join("accounting");
    fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("read {}: {e}", p.display()))
}

/// The cgroup v2 root /init mounted, with the memory controller on for its children.
fn cgroup_root() -> Result<&'static Path, String> {
    let root = Path::new(CGROUP_ROOT);
    let controllers = read(&root.join("cgroup.controllers"))?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(format!(
            "no memory controller in {CGROUP_ROOT}: {controllers:?}"
        ));
    }
    write(&root.join("cgroup.subtree_control"), "+memory")?;
    Ok(root)
}

pub(super) fn read(p: &Path) -> Result<String, String> {
    fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))
}

pub(super) fn write(p: &Path, v: &str) -> Result<(), String> {
    fs::write(p, v).map_err(|e| format!("write {v:?} to {}: {e}", p.display()))
}

/// Reads `key value` from a flat-keyed file (memory.events, /proc/vmstat).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

pub(super) fn global_oom_kills() -> Result<u64, String> {
    keyed(&read(Path::new("/proc/vmstat"))?, "oom_kill")
        .ok_or_else(|| "no oom_kill in /proc/vmstat".into())
}

pub(super) fn memory_current(group: &Path) -> Result<u64, String> {
    let s = read(&group.join("memory.current"))?;
    s.trim()
        .parse()
        .map_err(|_| format!("memory.current: {s:?}"))
}

/// A cgroup of its own, removed when dropped (once nothing is charged to it).
pub(super) struct Group(pub(super) PathBuf);

impl Group {
    pub(super) fn new(tag: &str) -> Result<Self, String> {
        let p = cgroup_root()?.join(format!("heapland-{tag}-{}", std::process::id()));
        fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// The child, allocating on command from inside a group.
pub(super) struct Charger {
    child: Child,
    /// Taken (closed) on exit.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Charger {
    fn spawn(heap: &str, group: &Path) -> Result<Self, String> {
        Self::spawn_as(heap, group, CHUNK, None)
    }

    /// A child allocating `chunk` bytes a time from `heap`, as `uid` if given.
    pub(super) fn spawn_as(
        heap: &str,
        group: &Path,
        chunk: u64,
        uid: Option<u32>,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args([CHILD_FLAG, heap, &chunk.to_string()]);
        if let Some(uid) = uid {
            cmd.arg(uid.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn charger: {e}"))?;
        // Into the group before its first allocation: it waits for commands.
        write(&group.join("cgroup.procs"), &child.id().to_string())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn ask(&mut self, cmd: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("charger told to exit")?;
        writeln!(stdin, "{cmd}").map_err(|e| format!("to charger: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("from charger: {e}"))?;
        if line.is_empty() {
            return Err(format!("charger gone after {cmd:?}"));
        }
        Ok(line.trim().to_owned())
    }

    /// `Ok(Some(fd))` for a buffer, `Ok(None)` for ENOMEM, `Err` for anything else.
    pub(super) fn alloc(&mut self) -> Result<Option<RawFd>, String> {
        let r = self.ask("alloc")?;
        match r.split_once(' ') {
            Some(("ok", fd)) => fd.parse().map(Some).map_err(|_| r.clone()),
            Some(("err", e)) if e == rustix::io::Errno::NOMEM.raw_os_error().to_string() => {
                Ok(None)
            }
            _ => Err(format!("alloc: {r}")),
        }
    }

    pub(super) fn exit(mut self) -> Result<(), String> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "exit");
        }
        let st = self
            .child
            .wait()
            .map_err(|e| format!("wait charger: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("charger exited with {st}"))
        }
    }
}

impl Drop for Charger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Body of the child: `alloc` (reply `ok <fd>` or `err <errno>`), `free` (close every
/// buffer), `exit`.
pub fn child_main(heap: &str, chunk: u64, uid: Option<u32>) -> Result<(), String> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let heap = Heap::open(heap)?;
    // Room for the thousands of buffers of `allocn` (root may raise it; others keep theirs).
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(16384),
            maximum: Some(16384),
        },
    );
    if let Some(uid) = uid {
        become_user(uid, &[])?;
    }
    let mut buffers: Vec<OwnedFd> = Vec::new();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let reply = match line.as_str() {
            "alloc" => match dma_heap::alloc(std::os::fd::AsFd::as_fd(&heap.fd), chunk) {
                Ok(fd) => {
                    let raw = fd.as_raw_fd();
                    buffers.push(fd);
                    format!("ok {raw}")
                }
                Err(e) => format!("err {}", e.raw_os_error()),
            },
            "free" => {
                buffers.clear();
                "ok".into()
            }
            cmd if cmd.starts_with("allocn ") => {
                let mut it = cmd.split_whitespace().skip(1).map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(n)), Some(Ok(len))) => {
                        let mut got = 0;
                        let mut err = None;
                        while got < n {
                            match dma_heap::alloc(std::os::fd::AsFd::as_fd(&heap.fd), len) {
                                Ok(fd) => buffers.push(fd),
                                Err(e) => {
                                    err = Some(e);
                                    break;
                                }
                            }
                            got += 1;
                        }
                        match err {
                            None => format!("ok {got}"),
                            Some(e) => format!("err {} after {got}", e.raw_os_error()),
                        }
                    }
                    _ => format!("err bad command {cmd:?}"),
                }
            }
            "ping" => "ok".into(),
            "exit" => return Ok(()),
            other => format!("err unknown command {other:?}"),
        };
        writeln!(out, "{reply}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether the guest was booted with `cgroup.memory=nokmem` (the `7` boot): the kernel then
/// charges no page allocated with `__GFP_ACCOUNT`, and no heap may say it charges.
pub fn nokmem() -> Result<bool, String> {
    Ok(read(Path::new("/proc/cmdline"))?
        .split_whitespace()
        .any(|w| w == "cgroup.memory=nokmem"))
}

/// Drops root for `uid` (its group the same number) with the supplementary `groups`; with
/// every id changed the kernel clears the capabilities, CAP_IPC_LOCK included. The thread
/// calls act for the process: the child has no other thread.
pub(super) fn become_user(uid: u32, groups: &[u32]) -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let (gid, uid) = (Gid::from_raw(uid), Uid::from_raw(uid));
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    set_thread_groups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    set_thread_res_gid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    set_thread_res_uid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))
}

/// Scattered heaps charge memcg, contiguous ones nobody; under `cgroup.memory=nokmem` none
/// charges. Asked with a memory cgroup below the root in place: the kernel turns kernel memory
/// charging on with the first one, and before that nothing is charged anywhere.
fn every_heap_says_who_pays() -> Result<(), String> {
    let _group = Group::new("who-pays")?;
    let nokmem = nokmem()?;
    let mut errs = Vec::new();
    let heaps = dma_heap::all_infos()?;
    if heaps.is_empty() {
        return Err("no device heaps".into());
    }
    for h in &heaps {
        let got = accounting_of(&h.name)?;
        let want = if h.contiguous || nokmem {
            "none"
        } else {
            "memcg"
        };
        if got != want {
            errs.push(format!(
                "{}: accounting {got:?}, expected {want:?} (contiguous {}, nokmem {nokmem})",
                h.name, h.contiguous
            ));
        }
        println!("INFO accounting: {} charges {got}", h.name);
    }
    all_ok(errs)
}

/// Every heap in the guest and whether it says it charges memcg: the device heaps by their
/// `accounting`, the kernel's system heap by the heap core's `mem_accounting` (7.x).
fn heaps_by_charge() -> Result<Vec<(String, bool)>, String> {
    let mut heaps = Vec::new();
    for h in dma_heap::all_infos()? {
        let charged = accounting_of(&h.name)? == "memcg";
        heaps.push((h.name, charged));
    }
    if Path::new("/dev/dma_heap/system").exists() {
        let on = fs::read_to_string("/sys/module/dma_heap/parameters/mem_accounting")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        heaps.push(("system".into(), on));
    }
    Ok(heaps)
}

fn charged_heaps_charge_the_allocating_cgroup() -> Result<(), String> {
    let mut tried = 0;
    let mut errs = Vec::new();
    for (name, charged) in heaps_by_charge()? {
        if !charged {
            continue;
        }
        tried += 1;
        // The kernel's system heap charges with plain GFP_HIGHUSER | __GFP_ACCOUNT: at
        // memory.max its allocation OOM-kills inside the group (seen on 7.3) instead of
        // failing, so its cycle stays below the limit. Our heaps must refuse with ENOMEM.
        let at_limit = if name == "system" {
            AtLimit::NotTried
        } else {
            AtLimit::Refused
        };
        if let Err(e) = charge_cycle(&name, at_limit) {
            errs.push(format!("{name}: {e}"));
        }
    }
    if tried == 0 {
        if nokmem()? {
            println!("INFO accounting: cgroup.memory=nokmem: no heap charges, as each says");
            return Ok(());
        }
        return Err(
            "no heap charges anyone (the heap phase adds sg heaps, which charge memcg)".into(),
        );
    }
    all_ok(errs)
}

/// One heap through the whole cycle: charge, limit, hand-over, uncharge.
/// What a charge cycle expects at the group's limit.
#[derive(Clone, Copy, PartialEq)]
enum AtLimit {
    /// Allocate until refused: ENOMEM, the child alive, nobody OOM-killed.
    Refused,
    /// Stay below the limit (three buffers).
    NotTried,
}

fn charge_cycle(heap: &str, at_limit: AtLimit) -> Result<(), String> {
    let group = Group::new("charge")?;
    write(&group.0.join("memory.max"), &LIMIT.to_string())?;
    let ooms = global_oom_kills()?;
    let mut child = Charger::spawn(heap, &group.0)?;
    let base = memory_current(&group.0)?;

    // Every buffer shows up in the counter, at its size.
    let mut fds = Vec::new();
    let mut last = base;
    let refused = loop {
        if at_limit == AtLimit::NotTried && fds.len() == 3 {
            break last;
        }
        match child.alloc()? {
            Some(fd) => {
                let now = memory_current(&group.0)?;
                let grew = now.saturating_sub(last);
                if grew + SLACK < CHUNK || grew > CHUNK + SLACK {
                    return Err(format!(
                        "memory.current grew by {grew} for a {CHUNK}-byte buffer \
                         (from {last} to {now})"
                    ));
                }
                last = now;
                fds.push(fd);
                if fds.len() as u64 > LIMIT / CHUNK {
                    return Err(format!(
                        "{} buffers of {CHUNK} allowed under a limit of {LIMIT}",
                        fds.len()
                    ));
                }
            }
            None => break last,
        }
    };
    if at_limit == AtLimit::Refused && fds.len() < 2 {
        return Err(format!(
            "refused after {} buffers under a {LIMIT}-byte limit (counter at {refused})",
            fds.len()
        ));
    }
    // Refused, not killed: the child answers, nobody was OOM-killed.
    if child.ask("ping")? != "ok" {
        return Err("charger confused after ENOMEM".into());
    }
    let events = read(&group.0.join("memory.events"))?;
    if keyed(&events, "oom_kill") != Some(0) {
        return Err(format!("memory.events after the refusal: {events:?}"));
    }
    if global_oom_kills()? != ooms {
        return Err("the OOM killer ran during the refusal".into());
    }

    // A buffer handed to a process outside the group stays charged to the group.
    let pidfd = pidfd_open(
        Pid::from_raw(child.child.id() as i32).ok_or("child pid")?,
        PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open: {e}"))?;
    let taken = pidfd_getfd(&pidfd, fds[0], PidfdGetfdFlags::empty())
        .map_err(|e| format!("pidfd_getfd: {e}"))?;
    if child.ask("free")? != "ok" {
        return Err("free failed".into());
    }
    child.exit()?;
    let held = memory_current(&group.0)?;
    if held + SLACK < base + CHUNK || held > base + CHUNK + SLACK {
        return Err(format!(
            "with the child gone and one buffer held elsewhere, memory.current is {held} \
             (base {base})"
        ));
    }
    drop(taken);
    let after = memory_current(&group.0)?;
    if after + CHUNK > held + SLACK {
        return Err(format!(
            "memory.current {after} after the last buffer was freed (was {held} while held)"
        ));
    }
    let limit = match at_limit {
        AtLimit::Refused => format!(
            "refused (ENOMEM, no OOM kill) after {} under {LIMIT}",
            fds.len()
        ),
        AtLimit::NotTried => "limit not tried (it OOM-kills in the group)".into(),
    };
    println!(
        "INFO accounting: {heap}: memory.current charged per {CHUNK}-byte buffer, {limit}, \
         a handed-over buffer stayed charged until freed"
    );
    Ok(())
}

/// Heaps that say they do not charge charge nobody's memory cgroup: a group with a limit
/// of 8 MiB allocates three 4 MiB buffers past it without growing (so their heap fds must
/// not go to the untrusted).
fn uncharged_heaps_leave_memcg_alone() -> Result<(), String> {
    let mut errs = Vec::new();
    for (name, charged) in heaps_by_charge()? {
        if charged {
            continue;
        }
        let r = (|| {
            let group = Group::new("none")?;
            write(&group.0.join("memory.max"), &(2 * CHUNK).to_string())?;
            let mut child = Charger::spawn(&name, &group.0)?;
            let base = memory_current(&group.0)?;
            for _ in 0..3 {
                if child.alloc()?.is_none() {
                    return Err("ENOMEM: the limit held it back, so it charges".to_string());
                }
            }
            let now = memory_current(&group.0)?;
            if now > base + SLACK {
                return Err(format!(
                    "memory.current grew from {base} to {now}: it charges after all, \
                     sysfs should say so"
                ));
            }
            child.ask("free")?;
            child.exit()
        })();
        if let Err(e) = r {
            errs.push(format!("{name}: {e}"));
        }
    }
    all_ok(errs)
}

/// The rule the module ships (kernel/70-device-heap.rules, in the guest's
/// /etc/udev/rules.d): `udevadm test` on every heap node, ours and the heap core's, shows
/// the `uaccess` tag exactly on heaps that bound what one user pins (`max_user_bytes`, every
/// heap of the module), never on the kernel's own, whether or not they charge memcg (the
/// 7-cma boot has `dma_heap.mem_accounting=1`: its `system` heap charges, and at a limit
/// OOM-kills instead of failing).
fn udev_rule_grants_bounded_heaps_only() -> Result<(), String> {
    use super::dma_heap::CORE_CLASS;
    let rule = Path::new("/etc/udev/rules.d/70-device-heap.rules");
    if !rule.exists() {
        return Err(format!("{} is not in the guest", rule.display()));
    }
    // Every node: ours (6.12: class device_heap) or the heap core's (class dma_heap).
    let node_of = |name: &str| {
        let core = Path::new(CORE_CLASS).join(name);
        if core.exists() {
            core
        } else {
            Path::new(CLASS).join(name)
        }
    };
    let mut nodes: Vec<(String, PathBuf, bool)> = Vec::new();
    for h in dma_heap::all_infos()? {
        let bounded = Path::new(CLASS)
            .join(&h.name)
            .join("max_user_bytes")
            .exists();
        if !bounded {
            return Err(format!("{}: no max_user_bytes", h.name));
        }
        nodes.push((h.name.clone(), node_of(&h.name), true));
    }
    // The kernel's heaps (system, CMA) must stay root's.
    if let Ok(entries) = fs::read_dir(CORE_CLASS) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !nodes.iter().any(|(n, _, _)| *n == name) {
                nodes.push((name, e.path(), false));
            }
        }
    }
    let mut errs = Vec::new();
    for (name, node, bounded) in &nodes {
        let out = Command::new("/bin/udevadm")
            .args(["test", "--action=add"])
            .arg(node)
            .output()
            .map_err(|e| format!("run udevadm: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            errs.push(format!(
                "{name}: udevadm test failed ({}): {}",
                out.status,
                text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            ));
            continue;
        }
        // udevadm prints TAGS= only for a device that got a tag.
        let tags = text
            .lines()
            .find(|l| l.starts_with("TAGS="))
            .unwrap_or("TAGS= (none)");
        let granted = tags.contains(":uaccess:");
        if granted != *bounded {
            errs.push(format!(
                "{name} ({}): {tags}, but it {} what one user pins",
                node.display(),
                if *bounded { "bounds" } else { "does not bound" }
            ));
        }
        println!(
            "INFO accounting: udev rule on {name}: {}",
            if granted { "uaccess" } else { "root only" }
        );
    }
    // The rule is only shown to work if it granted one heap and refused another.
    if !nodes.iter().any(|n| n.2) || nodes.iter().all(|n| n.2) {
        errs.push(format!(
            "need both a bounded and an unbounded heap to judge the rule: {:?}",
            nodes.iter().map(|n| (&n.0, n.2)).collect::<Vec<_>>()
        ));
    }
    all_ok(errs)
}

/// A `/proc/meminfo` line's value in bytes (`MemTotal`, `MemFree`, ...).
pub(super) fn meminfo(key: &str) -> Result<u64, String> {
    read(Path::new("/proc/meminfo"))?
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb << 10)
        .ok_or_else(|| format!("no {key} in /proc/meminfo"))
}

/// Bytes of one scatterlist entry (x86-64).
const ENTRY: u64 = 32;

/// The group's memory.current once it stops falling: what earlier buffers left to free
/// after an RCU grace period (files, inodes, dentries) is gone.
fn settled(group: &Path) -> Result<u64, String> {
    let mut last = memory_current(group)?;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = memory_current(group)?;
        if now >= last {
            return Ok(now);
        }
        last = now;
    }
    Err(format!("memory.current still falling after 10 s: {last}"))
}

/// What memcg's per-CPU stock may hold charged ahead of use: 64 pages on each CPU.
fn memcg_stock() -> Result<u64, String> {
    let online = read(Path::new("/sys/devices/system/cpu/online"))?;
    let mut cpus = 0;
    for range in online.trim().split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b): (u64, u64) = (
            a.parse().map_err(|_| format!("cpu/online: {online:?}"))?,
            b.parse().map_err(|_| format!("cpu/online: {online:?}"))?,
        );
        cpus += b + 1 - a;
    }
    Ok(cpus * 64 * 4096)
}

/// The child allocates `n` buffers of `len` bytes at once; returns how much the group's
/// memory.current grew and the scatterlist entries of those buffers (debugfs), then has
/// them freed and waits until the group is back where it was.
fn batch_charge(
    child: &mut Charger,
    group: &Path,
    heap: &str,
    n: u64,
    len: u64,
) -> Result<(u64, u64), String> {
    let base = settled(group)?;
    let reply = child.ask(&format!("allocn {n} {len}"))?;
    if reply != format!("ok {n}") {
        return Err(format!("{n} buffers of {len} bytes: {reply}"));
    }
    let grown = memory_current(group)?.saturating_sub(base);
    let listing = read(Path::new("/sys/kernel/debug/device_heap/buffers"))?;
    let (mut buffers, mut entries) = (0, 0);
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 3 && f[1] == heap && f[2] == len.to_string() {
            buffers += 1;
            entries += f.len() as u64 - 3;
        }
    }
    if buffers != n {
        return Err(format!(
            "debugfs lists {buffers} buffers of {len} bytes, not {n}"
        ));
    }
    child.ask("free")?;
    // Files, inodes and dentries are freed after an RCU grace period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while memory_current(group)? > base + SLACK {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "memory.current stayed {} above {base} after the buffers were freed",
                memory_current(group)? - base
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok((grown, entries))
}

/// A buffer in many pieces has a scatterlist to match, and on a charging heap it is
/// charged with the pages. 6144 buffers of 60 KiB (fifteen single pages each: the
/// scattered heap takes 64 KiB chunks only for 64 KiB or more) are set against 6144 of
/// 64 KiB (one chunk each): everything else per buffer (the buffer, the dma-buf file,
/// inode and dentry) is the same, so memory.current must grow, beyond the pages, by the
/// difference of the scatterlists (15 entries against 1, 32 bytes each), less what
/// memcg's per-CPU stock may hold charged ahead on each of the two measures. Under
/// cgroup.memory=nokmem nothing is charged (the heap says `none`).
fn fragmented_buffer_metadata_is_charged() -> Result<(), String> {
    const N: u64 = 6144;
    const PIECES: u64 = 60 << 10;
    const WHOLE: u64 = 64 << 10;
    let stock = memcg_stock()?;
    let nokmem = nokmem()?;
    let heap = dma_heap::all_infos()?
        .into_iter()
        .find(|h| !h.contiguous)
        .ok_or("no scattered device heap (the heap phase adds them)")?;
    let charged = accounting_of(&heap.name)? == "memcg";
    if charged == nokmem {
        return Err(format!(
            "{} says it charges: {charged}, with nokmem {nokmem}",
            heap.name
        ));
    }
    // 64 KiB chunks are taken without reclaim or compaction: make them plentiful where
    // the kernel can (the debug kernel has no CONFIG_COMPACTION).
    let compact = Path::new("/proc/sys/vm/compact_memory");
    if compact.exists() {
        write(compact, "1")?;
    }
    let group = Group::new("meta")?;
    let mut child = Charger::spawn_as(&heap.name, &group.0, WHOLE, None)?;
    child.ask("ping")?;
    // The whole buffers first: the fd table the child grows on its first batch counts
    // for them, against the difference looked for.
    let (g_whole, e_whole) = batch_charge(&mut child, &group.0, &heap.name, N, WHOLE)?;
    let (g_pieces, e_pieces) = batch_charge(&mut child, &group.0, &heap.name, N, PIECES)?;
    child.exit()?;
    println!(
        "INFO accounting: {}: {N} x {} KiB in {e_pieces} pieces grew memory.current by \
         {} KiB; {N} x {} KiB in {e_whole} pieces by {} KiB",
        heap.name,
        PIECES >> 10,
        g_pieces >> 10,
        WHOLE >> 10,
        g_whole >> 10
    );
    if !charged {
        return if g_pieces.max(g_whole) < SLACK {
            Ok(())
        } else {
            Err(format!(
                "nothing should be charged, memory.current grew {g_pieces} and {g_whole}"
            ))
        };
    }
    if e_pieces < N * 15 || (e_pieces.saturating_sub(e_whole)) * ENTRY < 4 * stock {
        return Err(format!(
            "{e_pieces} pieces of 60 KiB buffers and {e_whole} of 64 KiB ones: too few more \
             of the first to tell their scatterlists from memcg's stock (inconclusive)"
        ));
    }
    let beyond = |grown: u64, len: u64| grown as i64 - (N * len) as i64;
    let (meta_pieces, meta_whole) = (beyond(g_pieces, PIECES), beyond(g_whole, WHOLE));
    let want = ((e_pieces - e_whole) * ENTRY) as i64 - 2 * stock as i64;
    if meta_pieces - meta_whole < want {
        return Err(format!(
            "beyond their pages, the 60 KiB buffers took {meta_pieces} bytes and the 64 KiB \
             ones {meta_whole}: their {} more scatterlist entries are not charged (want a \
             difference of at least {want})",
            e_pieces - e_whole
        ));
    }
    if g_pieces < N * PIECES {
        return Err(format!(
            "memory.current grew {g_pieces}, less than the pages"
        ));
    }
    Ok(())
}
