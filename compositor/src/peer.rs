//! Who a client is: the credentials of the process that connected, captured
//! once, when the client is accepted.
//!
//! They decide which heaps the client may be handed (`heaps`): a heap that
//! bounds nothing per user goes only to a client whose own credentials would
//! let it open the heap's node (`node_access`), whatever user heapland runs
//! as. So they must be the client's, not heapland's.
//!
//! The uid, gid and pid are the kernel's `SO_PEERCRED` of the accepted
//! socket: the effective ids of the process at `connect()`, which it cannot
//! forge. The supplementary groups are not there: Linux has
//! `SO_PEERGROUPS`, but rustix does not wrap it, so they are read from
//! `/proc/<pid>/status` when the client is accepted, and kept only if its
//! effective uid (`Uid:`) is still the one `SO_PEERCRED` gave (else the
//! process is gone and its pid reused, or it changed its ids since it
//! connected). Without them the client is taken to be in no group but its
//! primary one: fewer groups can only withhold more. What this cannot see:
//! a client that exits at once and whose pid another process of the same
//! user takes before the accept would be credited with that process's
//! groups (`SO_PEERGROUPS` would close this).
//!
//! One assumption: the kernel gives pid 0 for a peer in a pid namespace
//! heapland cannot see, which rustix's `UCred` (a non-zero `Pid`) has no
//! room for. heapland is meant to run in its clients' pid namespace or an
//! ancestor of theirs (sandboxed clients' namespaces are children of the
//! session's), where every peer has a pid.

use std::{
    fs, io,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use rustix::net::sockopt;
use tracing::warn;

/// The credentials of a client's process, as it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Process id in heapland's pid namespace.
    pub pid: i32,
    /// Effective uid at `connect()`.
    pub uid: u32,
    /// Effective gid at `connect()`.
    pub gid: u32,
    /// Supplementary groups, from `/proc/<pid>/status` at accept time; empty
    /// where they could not be read safely (see the module documentation).
    pub groups: Vec<u32>,
}

/// Why a client's credentials are unknown.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("SO_PEERCRED on the client's socket: {0}")]
    PeerCred(#[source] rustix::io::Errno),
}

/// Why a client's supplementary groups are unknown.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} has no {field} line")]
    Missing { path: PathBuf, field: &'static str },
    #[error("{path}: malformed {field} line {line:?}")]
    Malformed {
        path: PathBuf,
        field: &'static str,
        line: String,
    },
    #[error(
        "{path} belongs to effective uid {found}, not to uid {connected} that connected: \
         the process is gone and its pid reused, or it changed its uid since"
    )]
    UidMismatch {
        path: PathBuf,
        found: u32,
        connected: u32,
    },
}

impl Peer {
    /// The credentials of the process at the other end of `stream`, a
    /// client's connection just accepted. Groups that cannot be read safely
    /// are left empty, with a log line saying why.
    pub fn of_stream(stream: &UnixStream) -> Result<Peer, PeerError> {
        let cred = sockopt::socket_peercred(stream).map_err(PeerError::PeerCred)?;
        let pid = cred.pid.as_raw_nonzero().get();
        let uid = cred.uid.as_raw();
        let gid = cred.gid.as_raw();
        let groups = match supplementary_groups(Path::new("/proc"), pid, uid) {
            Ok(groups) => groups,
            Err(err) => {
                warn!(
                    pid,
                    uid, "client's supplementary groups unknown, taken as none: {err}"
                );
                Vec::new()
            }
        };
        Ok(Peer {
            pid,
            uid,
            gid,
            groups,
        })
    }

    /// [`Peer::of_stream`] for a client just accepted: `None`, with a log
    /// line saying why, where its credentials cannot be read.
    pub fn accepted(stream: &UnixStream) -> Option<Peer> {
        match Self::of_stream(stream) {
            Ok(peer) => Some(peer),
            Err(err) => {
                warn!(
                    "client's credentials unknown, it gets only heaps that bound what one \
                     user pins: {err}"
                );
                None
            }
        }
    }

    /// Whether the process is in group `gid`, as the kernel's `in_group_p`
    /// asks it: its gid or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The supplementary groups of process `pid` under `proc`, if its status
/// says it is (still) effective uid `uid`.
fn supplementary_groups(proc: &Path, pid: i32, uid: u32) -> Result<Vec<u32>, GroupsError> {
    let path = proc.join(pid.to_string()).join("status");
    let text = fs::read_to_string(&path).map_err(|source| GroupsError::Read {
        path: path.clone(),
        source,
    })?;
    groups_of_status(&path, &text, uid)
}

/// Parses a `/proc/<pid>/status` text: the `Groups:` line, once the `Uid:`
/// line's effective field (the second of real, effective, saved, fs) is
/// `uid`.
fn groups_of_status(path: &Path, text: &str, uid: u32) -> Result<Vec<u32>, GroupsError> {
    let field = |name: &'static str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| GroupsError::Missing {
                path: path.to_owned(),
                field: name,
            })
    };
    let malformed = |name: &'static str, line: &str| GroupsError::Malformed {
        path: path.to_owned(),
        field: name,
        line: line.trim().to_owned(),
    };
    let uids = field("Uid:")?;
    let effective: u32 = uids
        .split_whitespace()
        .nth(1)
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| malformed("Uid:", uids))?;
    if effective != uid {
        return Err(GroupsError::UidMismatch {
            path: path.to_owned(),
            found: effective,
            connected: uid,
        });
    }
    let groups = field("Groups:")?;
    groups
        .split_whitespace()
        .map(|g| g.parse().map_err(|_| malformed("Groups:", groups)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::{fs::MetadataExt, net::UnixStream};

    use super::*;

    const STATUS: &str = "Name:\tweston\nUmask:\t0022\nState:\tS (sleeping)\n\
        Tgid:\t4242\nPid:\t4242\nPPid:\t1\n\
        Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
        FDSize:\t64\nGroups:\t10 44 105 1000 \nNStgid:\t4242\n";

    fn status() -> &'static Path {
        Path::new("/proc/4242/status")
    }

    #[test]
    fn groups_are_read_when_the_effective_uid_matches() {
        assert_eq!(
            groups_of_status(status(), STATUS, 1000).unwrap(),
            [10, 44, 105, 1000]
        );
        let none = STATUS.replace("Groups:\t10 44 105 1000 ", "Groups:\t");
        assert_eq!(groups_of_status(status(), &none, 1000).unwrap(), []);
    }

    /// The effective uid is the second field: a setuid process (real 1000,
    /// effective 0) is not uid 1000 for this.
    #[test]
    fn another_effective_uid_gives_no_groups() {
        let setuid = STATUS.replace("Uid:\t1000\t1000", "Uid:\t1000\t0");
        match groups_of_status(status(), &setuid, 1000) {
            Err(GroupsError::UidMismatch {
                found: 0,
                connected: 1000,
                ..
            }) => {}
            other => panic!("expected UidMismatch, got {other:?}"),
        }
        assert!(matches!(
            groups_of_status(status(), STATUS, 1001),
            Err(GroupsError::UidMismatch { .. })
        ));
    }

    #[test]
    fn malformed_status_is_an_error_not_a_panic() {
        for (text, want) in [
            ("Name:\tx\n", "no Uid: line"),
            ("Uid:\t1000\n", "malformed Uid:"),
            ("Uid:\tx y\n", "malformed Uid:"),
            ("Uid:\t1000\t1000\t1000\t1000\n", "no Groups: line"),
            (
                "Uid:\t1000\t1000\t1000\t1000\nGroups:\t10 wheel\n",
                "malformed Groups:",
            ),
            (
                "Uid:\t1000\t1000\t1000\t1000\nGroups:\t-1\n",
                "malformed Groups:",
            ),
        ] {
            let err = groups_of_status(status(), text, 1000).unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_process_gone_has_no_groups() {
        let dir = std::env::temp_dir().join(format!("heapland-peer-{}", std::process::id()));
        assert!(matches!(
            supplementary_groups(&dir, 1, 0),
            Err(GroupsError::Read { .. })
        ));
    }

    /// Both ends of a socket pair are this process: its own credentials.
    #[test]
    fn peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = Peer::of_stream(&a).unwrap();
        assert_eq!(u32::try_from(peer.pid), Ok(std::process::id()));
        // /proc/self belongs to the process's effective ids.
        let me = fs::metadata("/proc/self").unwrap();
        assert_eq!(peer.uid, me.uid());
        assert_eq!(peer.gid, me.gid());
        assert!(peer.in_group(peer.gid));
        // Our own status names our groups.
        let mine = supplementary_groups(Path::new("/proc"), peer.pid, peer.uid).unwrap();
        assert_eq!(peer.groups, mine);
    }
}
