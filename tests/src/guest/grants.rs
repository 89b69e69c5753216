//! Which heap fds a root heapland hands to clients of other users: only heaps the client
//! could open itself (the node's mode and ACL, as logind's uaccess sets them) or heaps
//! that bound what one user pins (`max_user_bytes`).
//!
//! vgem is served as a scatter-gather device for the time of the test, so the kernel's
//! `system` heap (root's alone, bounded by nothing) is the best heap of the headless
//! default feedback's tranche. Clients are child processes that become their user before
//! they connect (SO_PEERCRED is taken at connect): root gets `system`; an unprivileged
//! user gets the next heap in vgem's links that it may have, never `system`; each fd it
//! receives is checked by the client itself against the node (can it open the node named
//! by the fd's device number, or is the heap bounded). Then an ACL entry gives the user
//! read access to `system`, as logind does for the active session, and its next batch has
//! `system`; the entry is removed, as at a session switch, and the next batch has not.
//! Last, an entry for a group: a client in it as a supplementary group gets `system`, the
//! user outside it does not.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use heapland_allocator::feedback_client::{FeedbackCollector, FeedbackError, JoinedFeedback};
use heapland_protocols::client::{
    xx_dmabuf_heap_feedback_v1::{self, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1,
};
use wayland_client::{globals::registry_queue_init, Connection, Dispatch, EventQueue, QueueHandle};
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
    zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
};

use super::compositor::{Heapland, RUNTIME_DIR, SOCKET};
use super::{
    accounting::become_user,
    acl::{AclGrant, Named},
    all_ok, dma_heap, Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "grants::root_heapland_hands_users_only_what_they_may_open_or_is_bounded",
        run: root_heapland_grants,
    }]
}

/// Hidden subcommand: `--grant-client <uid> <socket> [<group>,...]`, commanded line by
/// line on stdin.
pub const CHILD_FLAG: &str = "--grant-client";
const TEST_UID: u32 = 4242;
/// A user in the supplementary group [`TEST_GROUP`], which an ACL entry names.
const GROUP_UID: u32 = 4243;
const TEST_GROUP: u32 = 4343;
const SYSTEM: &str = "/dev/dma_heap/system";

/// One tranche as a client saw it: the heap's name, whether the client could open the
/// heap's node itself, and whether the heap bounds what one user pins; or why none.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Heap {
        name: String,
        self_open: bool,
        bounded: bool,
    },
    NoHeap(String),
}

fn parse_batch(lines: &[String]) -> Result<Vec<Seen>, String> {
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            match f[..] {
                ["heap", name, open, bounded] => Ok(Seen::Heap {
                    name: name.into(),
                    self_open: open == "1",
                    bounded: bounded == "1",
                }),
                ["no_heap", ..] => Ok(Seen::NoHeap(l.clone())),
                _ => Err(format!("client said {l:?}")),
            }
        })
        .collect()
}

/// A client process of one user.
struct GrantClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    who: String,
}

impl GrantClient {
    fn spawn(uid: u32, groups: &[u32]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let socket = Path::new(RUNTIME_DIR).join(SOCKET);
        let mut cmd = Command::new(exe);
        cmd.arg(CHILD_FLAG).arg(uid.to_string()).arg(&socket);
        if !groups.is_empty() {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            cmd.arg(list.join(","));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn client: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            who: format!("uid {uid} groups {groups:?}"),
        })
    }

    /// A new default feedback object's first batch.
    fn batch(&mut self) -> Result<Vec<Seen>, String> {
        writeln!(self.stdin, "feedback").map_err(|e| format!("{}: {e}", self.who))?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.stdout
                .read_line(&mut line)
                .map_err(|e| format!("{}: {e}", self.who))?;
            let line = line.trim_end().to_owned();
            match line.as_str() {
                "" => return Err(format!("{}: client gone", self.who)),
                "done" => break,
                l if l.starts_with("error ") => return Err(format!("{}: {l}", self.who)),
                _ => lines.push(line),
            }
        }
        let seen = parse_batch(&lines)?;
        println!("INFO grants: {} got {seen:?}", self.who);
        Ok(seen)
    }
}

impl Drop for GrantClient {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn heap_names(batch: &[Seen]) -> Vec<&str> {
    batch
        .iter()
        .filter_map(|s| match s {
            Seen::Heap { name, .. } => Some(name.as_str()),
            Seen::NoHeap(_) => None,
        })
        .collect()
}

/// The batch handed the system heap, and the client could open its node itself.
fn has_system_it_may_open(batch: &[Seen]) -> bool {
    batch
        .iter()
        .any(|s| matches!(s, Seen::Heap { name, self_open: true, .. } if name == "system"))
}

/// Every heap a user's client received it may open itself or is bounded.
fn check_user_batch(label: &str, batch: &[Seen], errs: &mut Vec<String>) {
    if batch.is_empty() {
        errs.push(format!("{label}: no tranche"));
    }
    for s in batch {
        if let Seen::Heap {
            name,
            self_open,
            bounded,
        } = s
        {
            if !self_open && !bounded {
                errs.push(format!(
                    "{label}: handed {name}, which uid {TEST_UID} may not open and which \
                     bounds nothing"
                ));
            }
        }
    }
}

fn root_heapland_grants() -> Result<(), String> {
    if !Path::new(SYSTEM).exists() {
        return Err(format!(
            "{SYSTEM} missing: the kernel's system heap is the unbounded one"
        ));
    }
    let entry = dma_heap::spec("vgem", Some("sg"))?;
    dma_heap::control("add", &entry)?;
    let result = (|| {
        let mut comp = Heapland::start_with(&["--backend", "headless", "--output", "320x240@30"])?;
        let r = with_compositor();
        let alive = comp.alive();
        let stopped = comp.stop();
        r?;
        alive?;
        stopped
    })();
    let removed = dma_heap::control("remove", &entry);
    let restored = fs::set_permissions(RUNTIME_DIR, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {RUNTIME_DIR}: {e}"));
    result?;
    removed?;
    restored
}

fn with_compositor() -> Result<(), String> {
    // Let other users reach the socket, as a desktop's compositor of theirs would be.
    fs::set_permissions(RUNTIME_DIR, fs::Permissions::from_mode(0o711))
        .map_err(|e| format!("chmod {RUNTIME_DIR}: {e}"))?;
    let socket = Path::new(RUNTIME_DIR).join(SOCKET);
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("chmod {}: {e}", socket.display()))?;
    let mut errs = Vec::new();

    // The compositor's own user gets what it may open: the system heap.
    let root = GrantClient::spawn(0, &[])?.batch()?;
    if !heap_names(&root).contains(&"system") {
        return Err(format!(
            "root was not handed the system heap, vgem's best with {}: {root:?}",
            "vgem:sg"
        ));
    }

    let mut user = GrantClient::spawn(TEST_UID, &[])?;
    let mut member = GrantClient::spawn(GROUP_UID, &[TEST_GROUP])?;
    let before = user.batch()?;
    check_user_batch("without ACL", &before, &mut errs);
    if heap_names(&before).contains(&"system") {
        errs.push("without ACL: the user was handed the system heap".into());
    }
    if heap_names(&before).is_empty() {
        errs.push(format!(
            "without ACL: no heap at all, where vgem links to bounded heaps: {before:?}"
        ));
    }

    let acl = AclGrant::add(Path::new(SYSTEM), Named::User(TEST_UID), AclGrant::READ)?;
    let with_acl = user.batch()?;
    check_user_batch("with ACL", &with_acl, &mut errs);
    if !has_system_it_may_open(&with_acl) {
        errs.push(format!(
            "with an ACL entry for uid {TEST_UID} on {SYSTEM}: not handed it: {with_acl:?}"
        ));
    }

    acl.remove()?;
    drop(acl);
    let after = user.batch()?;
    check_user_batch("after the ACL went", &after, &mut errs);
    if heap_names(&after).contains(&"system") {
        errs.push("the ACL entry was removed, and the next batch still had system".into());
    }

    // A named group: its member (a supplementary group, as SO_PEERGROUPS reports it) may
    // have the heap, the user outside it may not.
    let acl = AclGrant::add(Path::new(SYSTEM), Named::Group(TEST_GROUP), AclGrant::READ)?;
    let in_group = member.batch()?;
    check_user_batch("group ACL, member", &in_group, &mut errs);
    if !has_system_it_may_open(&in_group) {
        errs.push(format!(
            "an ACL entry for group {TEST_GROUP} on {SYSTEM}: its member uid {GROUP_UID} \
             was not handed it: {in_group:?}"
        ));
    }
    let outside = user.batch()?;
    check_user_batch("group ACL, outsider", &outside, &mut errs);
    if heap_names(&outside).contains(&"system") {
        errs.push(format!(
            "uid {TEST_UID}, outside group {TEST_GROUP}, was handed system"
        ));
    }
    drop(acl);
    all_ok(errs)
}

/// Body of a client: becomes `uid`, connects, and answers `feedback` with one line per
/// tranche of new default feedback objects' first batch (linux-dmabuf's and the heap
/// protocol's, joined by the allocator library's collector), then `done`.
pub fn child_main(uid: u32, socket: &Path, groups: &[u32]) -> Result<(), String> {
    if uid != 0 {
        become_user(uid, groups)?;
    }
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect {socket:?}: {e}"))?;
    let conn = Connection::from_socket(stream).map_err(|e| e.to_string())?;
    let (globals, mut queue): (_, EventQueue<Batches>) =
        registry_queue_init(&conn).map_err(|e| format!("registry: {e}"))?;
    let qh = queue.handle();
    let dmabuf: ZwpLinuxDmabufV1 = globals
        .bind(&qh, 4..=4, ())
        .map_err(|e| format!("bind zwp_linux_dmabuf_v1 v4: {e}"))?;
    let manager: XxDmabufHeapManagerV1 = globals
        .bind(&qh, 1..=1, ())
        .map_err(|e| format!("bind heap manager: {e}"))?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        match line.as_str() {
            "feedback" => {
                let mut st = Batches {
                    collector: FeedbackCollector::new(),
                    joined: None,
                };
                let linux = dmabuf.get_default_feedback(&qh, ());
                let fb = manager.get_default_feedback(&qh, ());
                let deadline = Instant::now() + Duration::from_secs(30);
                while st.joined.is_none() {
                    queue.roundtrip(&mut st).map_err(|e| e.to_string())?;
                    if Instant::now() > deadline {
                        writeln!(out, "error no batch").map_err(|e| e.to_string())?;
                        break;
                    }
                }
                fb.destroy();
                linux.destroy();
                match st.joined.take() {
                    Some(Ok(joined)) => {
                        for t in joined.tranches {
                            let line = match t.heap {
                                Ok(heap) => describe_grant(&heap.fd, &heap.name),
                                Err(no) => format!(
                                    "no_heap {} {}",
                                    no.reason.map_or(u32::MAX, |r| r as u32),
                                    no.message
                                ),
                            };
                            writeln!(out, "{line}").map_err(|e| e.to_string())?;
                        }
                    }
                    Some(Err(e)) => writeln!(out, "error {e}").map_err(|e| e.to_string())?,
                    None => {}
                }
                writeln!(out, "done").map_err(|e| e.to_string())?;
            }
            "exit" => return Ok(()),
            other => writeln!(out, "error unknown command {other:?}").map_err(|e| e.to_string())?,
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How a client describes a heap it received: its name, whether it could open the node
/// whose device number the fd has, and whether the heap says it bounds each user.
fn describe_grant(fd: &OwnedFd, name: &str) -> String {
    let rdev = rustix::fs::fstat(fd.as_fd()).map(|st| st.st_rdev).ok();
    let node = fs::read_dir("/dev/dma_heap").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| rustix::fs::stat(p).is_ok_and(|st| Some(st.st_rdev) == rdev))
    });
    let Some(node) = node else {
        return format!("heap {name} 0 0 (no node with the fd's device number)");
    };
    let node_name = node.file_name().map(|n| n.to_string_lossy().into_owned());
    if node_name.as_deref() != Some(name) {
        return format!("heap {name} 0 0 (the fd is {})", node.display());
    }
    let self_open = fs::File::open(&node).is_ok();
    let bounded = Path::new(dma_heap::CLASS)
        .join(name)
        .join("max_user_bytes")
        .exists();
    format!("heap {name} {} {}", u8::from(self_open), u8::from(bounded))
}

/// A client's feedback scope, read by the allocator library's collector.
struct Batches {
    collector: FeedbackCollector,
    /// The first batch joined (or why it could not be).
    joined: Option<Result<JoinedFeedback, FeedbackError>>,
}

impl Batches {
    fn gather(&mut self, fed: Result<(), FeedbackError>) {
        if self.joined.is_some() {
            return;
        }
        self.joined = match fed {
            Err(e) => Some(Err(e)),
            Ok(()) => self.collector.take(),
        };
    }
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for Batches {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let fed = s.collector.dmabuf_event(e);
        s.gather(fed);
    }
}

impl Dispatch<XxDmabufHeapFeedbackV1, ()> for Batches {
    fn event(
        s: &mut Self,
        _: &XxDmabufHeapFeedbackV1,
        e: xx_dmabuf_heap_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let fed = s.collector.heap_event(e);
        s.gather(fed);
    }
}

heapland_test_client::registry_events!(Batches);
heapland_test_client::ignore_events!(Batches: ZwpLinuxDmabufV1, XxDmabufHeapManagerV1);
