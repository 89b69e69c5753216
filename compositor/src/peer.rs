//! Who a client is: the credentials of the process that connected, captured
//! once, when the client is accepted.
//!
//! They decide which heaps the client may be handed (`heaps`): a heap that
//! bounds nothing per user goes only to a client whose own credentials would
//! let it open the heap's node (`node_access`), whatever user heapland runs
//! as. So they must be the client's, not heapland's.
//!
//! All of them are the kernel's, taken from the accepted socket: the uid,
//! gid and pid from `SO_PEERCRED`, the supplementary groups from
//! `SO_PEERGROUPS`. Both describe the process as it called `connect()`
//! (the credentials the kernel stored with the socket then), which it
//! cannot forge and which do not change if it exits and its pid is reused.
//! Where the groups cannot be read (`SO_PEERGROUPS` came with Linux 4.13)
//! the client is taken to be in no group but its primary one: fewer groups
//! can only withhold more.
//!
//! The ids are as heapland's namespaces see them: a peer in a pid namespace
//! heapland cannot see has pid 0, kept here as no pid (`None`); ids
//! heapland's user namespace cannot map read as the overflow ids
//! (`/proc/sys/kernel/overflowuid`, `overflowgid`), which `node_access`
//! never takes to match anyone.
//!
//! The project's rule is rustix, not raw libc; these two socket options are
//! the exception. rustix's `socket_peercred` returns a `UCred` whose `pid`
//! is a non-zero `Pid`, which the kernel's pid 0 would violate (undefined
//! behaviour any process that reaches the socket could cause), and rustix
//! has no `SO_PEERGROUPS`. So both are read with `libc::getsockopt`.

use std::{
    io,
    mem::size_of,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::net::UnixStream,
    },
    ptr,
};

use tracing::debug;

/// How many supplementary groups are asked for first: enough for nearly
/// every user, else the kernel says how many there are (`ERANGE`).
const GROUPS_FIRST_ASK: usize = 64;

/// The credentials of a client's process, as it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Process id in heapland's pid namespace; `None` where the process is
    /// in a pid namespace heapland cannot see (the kernel says 0).
    pub pid: Option<i32>,
    /// Effective uid at `connect()`.
    pub uid: u32,
    /// Effective gid at `connect()`.
    pub gid: u32,
    /// Supplementary groups at `connect()` (`SO_PEERGROUPS`); empty where
    /// they could not be read.
    pub groups: Vec<u32>,
}

/// Why a client's credentials are unknown.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("SO_PEERCRED on the client's socket: {0}")]
    PeerCred(#[source] io::Error),
    #[error("SO_PEERCRED on the client's socket gave {0} bytes, not a struct ucred")]
    PeerCredLength(usize),
}

/// Why a client's supplementary groups are unknown.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("SO_PEERGROUPS on the client's socket: {0}")]
    PeerGroups(#[source] io::Error),
    #[error("SO_PEERGROUPS on the client's socket gave {len} bytes for a {room}-byte buffer")]
    Length { len: usize, room: usize },
    #[error("SO_PEERGROUPS on the client's socket still wants more room after it said how much")]
    StillTooSmall,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`, a
    /// client's connection just accepted. Groups that cannot be read are
    /// left empty, with a log line saying why.
    pub fn of_stream(stream: &UnixStream) -> Result<Peer, PeerError> {
        let cred = peer_cred(stream.as_fd())?;
        let pid = (cred.pid > 0).then_some(cred.pid);
        let (uid, gid) = (cred.uid, cred.gid);
        let groups = match peer_groups(stream.as_fd(), GROUPS_FIRST_ASK) {
            Ok(groups) => groups,
            Err(err) => {
                // Per connection and up to the client: not a warning.
                debug!(
                    ?pid,
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
                // Per connection and up to the client: not a warning.
                debug!(
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

/// `SO_PEERCRED` of the socket `fd`, with libc: the pid may be 0 (see the
/// module documentation).
fn peer_cred(fd: BorrowedFd<'_>) -> Result<libc::ucred, PeerError> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let room = size_of::<libc::ucred>();
    let mut len = room as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `cred` is valid for writes of
    // `len` bytes, its size, and `len` for a write of a `socklen_t`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(PeerError::PeerCred(io::Error::last_os_error()));
    }
    if len as usize != room {
        return Err(PeerError::PeerCredLength(len as usize));
    }
    Ok(cred)
}

/// `SO_PEERGROUPS` of the socket `fd`, with libc (rustix has no wrapper):
/// first with room for `first_ask` groups, then, where the kernel says that
/// is too little (`ERANGE`, with the size it needs in `optlen`), once with
/// that much.
fn peer_groups(fd: BorrowedFd<'_>, first_ask: usize) -> Result<Vec<u32>, GroupsError> {
    const GID: usize = size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; first_ask];
    for _ in 0..2 {
        let room = groups.len() * GID;
        let mut len =
            libc::socklen_t::try_from(room).map_err(|_| GroupsError::Length { len: room, room })?;
        // SAFETY: `fd` is open for the call; `groups` is valid for writes
        // of `len` bytes (its length in bytes; the kernel writes no more,
        // and nothing where `len` is 0), and `len` for a write of a
        // `socklen_t`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = len as usize;
        if rc == 0 {
            if len > room || !len.is_multiple_of(GID) {
                return Err(GroupsError::Length { len, room });
            }
            groups.truncate(len / GID);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(GroupsError::PeerGroups(err));
        }
        if len <= room {
            return Err(GroupsError::Length { len, room });
        }
        groups.resize(len.div_ceil(GID), 0);
    }
    Err(GroupsError::StillTooSmall)
}

#[cfg(test)]
mod tests {
    use std::os::unix::{fs::MetadataExt, net::UnixStream};

    use super::*;

    /// This process's supplementary groups, as its status says.
    fn my_groups() -> Vec<u32> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap();
        line.split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect()
    }

    /// Both ends of a socket pair are this process: its own credentials.
    #[test]
    fn peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = Peer::of_stream(&a).unwrap();
        assert_eq!(peer.pid.map(u32::try_from), Some(Ok(std::process::id())));
        // /proc/self belongs to the process's effective ids.
        let me = std::fs::metadata("/proc/self").unwrap();
        assert_eq!(peer.uid, me.uid());
        assert_eq!(peer.gid, me.gid());
        assert!(peer.in_group(peer.gid));
        assert_eq!(peer.groups, my_groups());
    }

    /// Too little room at first: the kernel says how much, and the second
    /// ask gets them all.
    #[test]
    fn groups_are_asked_again_with_the_room_the_kernel_names() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mine = my_groups();
        for first in [0, 1, mine.len(), GROUPS_FIRST_ASK] {
            assert_eq!(peer_groups(a.as_fd(), first).unwrap(), mine, "{first}");
        }
    }

    /// A socket nobody connected: the kernel says pid 0 (as for a peer in
    /// a pid namespace heapland cannot see) and has no groups to give. No
    /// pid, no groups; not undefined behaviour, not a panic.
    #[test]
    fn unconnected_socket_has_pid_0() {
        use rustix::net::{socket, AddressFamily, SocketType};

        let fd = socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        let cred = peer_cred(fd.as_fd()).unwrap();
        assert_eq!(cred.pid, 0);
        assert!(peer_groups(fd.as_fd(), 1).is_err());
        let peer = Peer::of_stream(&UnixStream::from(fd)).unwrap();
        assert_eq!(peer.pid, None);
        assert!(peer.groups.is_empty());
    }
}
