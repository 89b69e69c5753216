//! Whether a client could open a device node for reading itself, judged on
//! the very file heapland then hands out.
//!
//! heapland opens heaps with its own credentials and passes the fd on. A
//! heap that bounds nothing per user must not reach a client through
//! heapland that the client could not open itself: a root heapland would
//! otherwise lend root's heaps to any process on its socket. So before such
//! a grant the node's discretionary access is decided for the client's
//! credentials ([`Peer`]) as the kernel decides it in `generic_permission`
//! (`acl_permission_check`, `posix_acl_permission`): uid 0 may (as with
//! `CAP_DAC_OVERRIDE`); the owner gets the owner bits; with a POSIX access
//! ACL, a named user entry, else the owning group and named group entries,
//! each limited by the mask, else the other entry; without one, the mode's
//! group or other bits. The ids compared are the client's effective ids at
//! `connect()` (the kernel compares the fs ids at `open()`, the same unless
//! a process sets them apart).
//!
//! The node is opened once ([`open_for`]: `O_RDONLY | O_CLOEXEC |
//! O_NOFOLLOW`), and everything is judged on that open file: `fstat` says
//! it is the kind of node expected (a character device for a heap) and
//! gives its mode and owners, `fgetxattr` its ACL; the fd handed out is the
//! one judged. A node swapped for another between the check and the open
//! (a symbolic link, another device) cannot slip through.
//!
//! Nothing is cached: the node is opened and judged at every grant, so an
//! ACL logind removes from a `uaccess` node at a session switch stops the
//! next grant to that user at once (fds handed out before stay open, as fds
//! the client opened itself would).
//!
//! Ids heapland's user namespace cannot map read as the overflow ids
//! ([`OverflowIds`], 65534 unless the sysctls say otherwise), the client's
//! (`SO_PEERCRED`, `SO_PEERGROUPS`) as the node's and its ACL's, so two
//! different unmapped ids look equal. An overflow id therefore matches
//! nothing: an unmapped uid is neither the owner nor a named user, an
//! unmapped gid neither the owning nor a named group, and the decision
//! falls through to the next class (group, then other). Where that class
//! gives more than the one an unmapped id really matches (an owner or
//! group denied what others get, as in mode 0604) the answer is "may"
//! where the kernel says no; heap nodes are not set up that way.
//!
//! Not consulted: Linux security modules (SELinux, AppArmor, Smack), which
//! may refuse an open the mode and ACL allow; search permission on the
//! directories above the node (`/dev` and `/dev/dma_heap` are
//! world-searchable); and whether a uid-0 client really holds
//! `CAP_DAC_OVERRIDE` in heapland's user namespace. Each of these can only
//! deny more, so where one would stop the client's own `open(2)`, this
//! answer is "may" all the same: confinement of that kind is not carried
//! over to the heaps heapland hands out.

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use rustix::{
    fs::{FileType, Mode, OFlags},
    io::Errno,
};

use crate::peer::Peer;

/// The extended attribute holding a file's POSIX access ACL.
pub const ACL_XATTR: &str = "system.posix_acl_access";

/// What an ACL is read into first: room for 511 entries, more than any
/// node carries.
const ACL_FIRST_READ: usize = 4096;

/// The largest extended attribute value Linux stores (`XATTR_SIZE_MAX`):
/// what an ACL is read into where the first read was too small.
const XATTR_SIZE_MAX: usize = 65536;

/// `posix_acl_xattr_header.a_version`.
const ACL_VERSION: u32 = 2;

/// Permission bit: read (`ACL_READ`, `MAY_READ`).
const READ: u16 = 4;
/// Every permission bit an ACL entry may hold: read, write, execute.
const RWX: u16 = 7;

/// Entry tags of the xattr format (`<linux/posix_acl.h>`).
const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;

/// What `stat` says of a node: permission bits and owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOwnership {
    /// `st_mode` permission bits (`0o7777` of it).
    pub mode: u32,
    /// Owning user.
    pub uid: u32,
    /// Owning group.
    pub gid: u32,
}

/// The ids that stand for every id heapland's user namespace cannot map
/// (`/proc/sys/kernel/overflowuid`, `overflowgid`): they match nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowIds {
    pub uid: u32,
    pub gid: u32,
}

impl OverflowIds {
    /// The kernel's default for both.
    pub const DEFAULT: OverflowIds = OverflowIds {
        uid: 65534,
        gid: 65534,
    };

    /// This system's, read once (the default where a sysctl cannot be read).
    pub fn of_system() -> OverflowIds {
        static IDS: OnceLock<OverflowIds> = OnceLock::new();
        *IDS.get_or_init(|| {
            let read = |name: &str, default: u32| {
                std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(default)
            };
            OverflowIds {
                uid: read("overflowuid", Self::DEFAULT.uid),
                gid: read("overflowgid", Self::DEFAULT.gid),
            }
        })
    }

    /// Whether the client's uid `uid` is the owner or a named user `owner`:
    /// never where it is the overflow uid.
    fn same_user(self, uid: u32, owner: u32) -> bool {
        uid == owner && uid != self.uid
    }

    /// Whether `peer` is in group `gid` (primary or supplementary): never
    /// where it is the overflow gid.
    fn in_group(self, peer: &Peer, gid: u32) -> bool {
        gid != self.gid && peer.in_group(gid)
    }
}

/// Whom an ACL entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTag {
    /// The owner (`user::`).
    UserObj,
    /// A named user (`user:ID:`).
    User(u32),
    /// The owning group (`group::`).
    GroupObj,
    /// A named group (`group:ID:`).
    Group(u32),
    /// The most any named user or group entry grants (`mask::`).
    Mask,
    /// Everyone else (`other::`).
    Other,
}

/// One ACL entry: whom it names and the permission bits (rwx = 4, 2, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: AclTag,
    pub perm: u16,
}

/// A POSIX access ACL, valid as the kernel's `posix_acl_valid` requires:
/// `user::`, named users, `group::`, named groups, `mask::` (required when
/// there are named entries), `other::`, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<AclEntry>,
}

/// Why an ACL xattr is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("{0} bytes: not a 4-byte version followed by whole 8-byte entries")]
    Length(usize),
    #[error("version {0}, expected {ACL_VERSION}")]
    Version(u32),
    #[error("entry {index}: unknown tag {tag:#x}")]
    Tag { index: usize, tag: u16 },
    #[error("entry {index}: permission bits {perm:#o} beyond rwx")]
    Perm { index: usize, perm: u16 },
    #[error(
        "entry {index} ({tag:?}) out of order: entries go user::, user:ID..., group::, \
         group:ID..., mask:: (required with named entries), other::"
    )]
    Order { index: usize, tag: AclTag },
    #[error("incomplete: ends before its other:: entry (or a mask:: that named entries need)")]
    Incomplete,
}

/// Why access to a node could not be decided (and so is refused).
#[derive(Debug, thiserror::Error)]
pub enum NodeAccessError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{path} is a {}, not a {}", kind(*.found), kind(*.wanted))]
    NodeType {
        path: PathBuf,
        found: FileType,
        wanted: FileType,
    },
    #[error("cannot read the POSIX ACL of {path}: {source}")]
    ReadAcl {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("malformed POSIX ACL on {path}: {source}")]
    MalformedAcl {
        path: PathBuf,
        #[source]
        source: AclError,
    },
}

/// A file type in words, for messages.
fn kind(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// Opens `path` (`O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY`, with
/// heapland's credentials) and judges that open file: it must be a
/// `node_type` (a character device for a heap node), and `peer` must be
/// allowed to read it by the mode, owners and POSIX access ACL it has now
/// (see the module documentation). `Some(fd)`: it may, and `fd` is the file
/// judged, the one to hand out; `None`: it may not. An error means it could
/// not be told: callers refuse then.
pub fn open_for(
    path: &Path,
    peer: &Peer,
    node_type: FileType,
) -> Result<Option<OwnedFd>, NodeAccessError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|source| NodeAccessError::Open {
        path: path.to_owned(),
        source,
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|source| NodeAccessError::Stat {
        path: path.to_owned(),
        source,
    })?;
    let found = FileType::from_raw_mode(stat.st_mode);
    if found != node_type {
        return Err(NodeAccessError::NodeType {
            path: path.to_owned(),
            found,
            wanted: node_type,
        });
    }
    let node = NodeOwnership {
        mode: stat.st_mode & 0o7777,
        uid: stat.st_uid,
        gid: stat.st_gid,
    };
    let acl = read_acl(fd.as_fd(), path, ACL_FIRST_READ)?;
    Ok(permits_read(&node, acl.as_ref(), peer).then_some(fd))
}

/// The access ACL of the open file `fd` (at `path`, for messages), read
/// into `first` bytes (not 0: rustix reads nothing into an empty buffer),
/// and where that is too small (`ERANGE`) into as many as an xattr can
/// hold; `None` where it has none or its filesystem keeps none
/// (`ENODATA`, `EOPNOTSUPP`).
fn read_acl(fd: BorrowedFd<'_>, path: &Path, first: usize) -> Result<Option<Acl>, NodeAccessError> {
    let mut buf = vec![0u8; first];
    let read = match rustix::fs::fgetxattr(fd, ACL_XATTR, &mut buf[..]) {
        Err(Errno::RANGE) => {
            buf.resize(XATTR_SIZE_MAX, 0);
            rustix::fs::fgetxattr(fd, ACL_XATTR, &mut buf[..])
        }
        read => read,
    };
    match read {
        Ok(len) => Acl::parse(&buf[..len]).map_err(|source| NodeAccessError::MalformedAcl {
            path: path.to_owned(),
            source,
        }),
        Err(Errno::NODATA | Errno::OPNOTSUPP) => Ok(None),
        Err(source) => Err(NodeAccessError::ReadAcl {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The kernel's read permission decision for `peer` on a node owned as
/// `node`, with access ACL `acl` (`None`: none), with this system's
/// overflow ids ([`permits_read_with`]).
pub fn permits_read(node: &NodeOwnership, acl: Option<&Acl>, peer: &Peer) -> bool {
    permits_read_with(node, acl, peer, OverflowIds::of_system())
}

/// The kernel's read permission decision for `peer` on a node owned as
/// `node`, with access ACL `acl` (`None`: none), where the ids `overflow`
/// match no owner or named entry. Pure, for tests.
pub fn permits_read_with(
    node: &NodeOwnership,
    acl: Option<&Acl>,
    peer: &Peer,
    overflow: OverflowIds,
) -> bool {
    let want = u32::from(READ);
    if peer.uid == 0 {
        // CAP_DAC_OVERRIDE reads anything.
        return true;
    }
    // acl_permission_check: the owner gets the owner bits, ACL or not.
    if overflow.same_user(peer.uid, node.uid) {
        return (node.mode >> 6) & want == want;
    }
    // The ACL is consulted only while the group class bits (the mask, with
    // an ACL) grant something.
    if let Some(acl) = acl {
        if node.mode & 0o070 != 0 {
            return acl.permits(node, peer, READ, overflow);
        }
    }
    let bits = if overflow.in_group(peer, node.gid) {
        node.mode >> 3
    } else {
        node.mode
    };
    bits & want == want
}

impl Acl {
    /// Parses the xattr format: a little-endian u32 version (2), then
    /// entries of {u16 tag, u16 perm, u32 id}. A version word with no entry
    /// is no ACL (`Ok(None)`), as the kernel's `posix_acl_from_xattr` has
    /// it; anything `posix_acl_valid` would refuse is an error.
    pub fn parse(bytes: &[u8]) -> Result<Option<Acl>, AclError> {
        let (Some(version), Some(body)) = (bytes.get(..4), bytes.get(4..)) else {
            return Err(AclError::Length(bytes.len()));
        };
        if body.len() % 8 != 0 {
            return Err(AclError::Length(bytes.len()));
        }
        let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        if version != ACL_VERSION {
            return Err(AclError::Version(version));
        }
        if body.is_empty() {
            return Ok(None);
        }
        /// Where `posix_acl_valid`'s walk is: which tags may come next.
        #[derive(PartialEq)]
        enum State {
            UserObj,
            User,
            Group,
            Other,
            Done,
        }
        let mut state = State::UserObj;
        let mut needs_mask = false;
        let mut entries = Vec::with_capacity(body.len() / 8);
        for (index, raw) in body.chunks_exact(8).enumerate() {
            let tag = u16::from_le_bytes([raw[0], raw[1]]);
            let perm = u16::from_le_bytes([raw[2], raw[3]]);
            let id = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            if perm & !RWX != 0 {
                return Err(AclError::Perm { index, perm });
            }
            let tag = match tag {
                TAG_USER_OBJ => AclTag::UserObj,
                TAG_USER => AclTag::User(id),
                TAG_GROUP_OBJ => AclTag::GroupObj,
                TAG_GROUP => AclTag::Group(id),
                TAG_MASK => AclTag::Mask,
                TAG_OTHER => AclTag::Other,
                tag => return Err(AclError::Tag { index, tag }),
            };
            let next = match (&state, tag) {
                (State::UserObj, AclTag::UserObj) => State::User,
                (State::User, AclTag::User(_)) => {
                    needs_mask = true;
                    State::User
                }
                (State::User, AclTag::GroupObj) => State::Group,
                (State::Group, AclTag::Group(_)) => {
                    needs_mask = true;
                    State::Group
                }
                (State::Group, AclTag::Mask) => State::Other,
                (State::Other, AclTag::Other) => State::Done,
                (State::Group, AclTag::Other) if !needs_mask => State::Done,
                _ => return Err(AclError::Order { index, tag }),
            };
            state = next;
            entries.push(AclEntry { tag, perm });
        }
        if state != State::Done {
            return Err(AclError::Incomplete);
        }
        Ok(Some(Acl { entries }))
    }

    /// `posix_acl_permission`: whether `peer` gets `want` on a node owned
    /// as `node` under this ACL, where the ids `overflow` match no entry.
    fn permits(&self, node: &NodeOwnership, peer: &Peer, want: u16, overflow: OverflowIds) -> bool {
        let mask = self
            .entries
            .iter()
            .find(|e| e.tag == AclTag::Mask)
            .map_or(RWX, |e| e.perm);
        let grants = |perm: u16| perm & want == want;
        // Some group entry matched: then `other::` does not apply.
        let mut in_group_class = false;
        for entry in &self.entries {
            match entry.tag {
                AclTag::UserObj if overflow.same_user(peer.uid, node.uid) => {
                    return grants(entry.perm)
                }
                AclTag::User(uid) if overflow.same_user(peer.uid, uid) => {
                    return grants(entry.perm & mask)
                }
                AclTag::GroupObj | AclTag::Group(_) => {
                    let gid = match entry.tag {
                        AclTag::Group(gid) => gid,
                        _ => node.gid,
                    };
                    if overflow.in_group(peer, gid) {
                        in_group_class = true;
                        if grants(entry.perm) {
                            return grants(entry.perm & mask);
                        }
                    }
                }
                AclTag::Other => return !in_group_class && grants(entry.perm),
                AclTag::UserObj | AclTag::User(_) | AclTag::Mask => {}
            }
        }
        // A parsed ACL always ends with other::; the kernel says EIO here.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: u32 = 0;
    const VIDEO: u32 = 44;
    const RENDER: u32 = 105;
    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: Some(4242),
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    /// root:video with `mode`.
    fn node(mode: u32) -> NodeOwnership {
        NodeOwnership {
            mode,
            uid: OWNER,
            gid: VIDEO,
        }
    }

    /// The xattr bytes of `entries` (tag, perm, id).
    fn xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend(tag.to_le_bytes());
            v.extend(perm.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        v
    }

    const UNDEFINED: u32 = u32::MAX;

    /// What logind's uaccess leaves on a node of mode 0660 root:video for
    /// the active user: `user::rw- user:ALICE:rw- group::rw- mask::rw-
    /// other::---`, with the mask `mask`.
    fn uaccess(mask: u16) -> Acl {
        Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_USER, 6, ALICE),
            (TAG_GROUP_OBJ, 6, UNDEFINED),
            (TAG_MASK, mask, UNDEFINED),
            (TAG_OTHER, 0, UNDEFINED),
        ]))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn root_reads_anything() {
        assert!(permits_read(&node(0o000), None, &peer(0, 0, &[])));
        assert!(permits_read(
            &node(0o060),
            Some(&uaccess(0)),
            &peer(0, 0, &[])
        ));
    }

    #[test]
    fn classic_mode_bits() {
        let alice = peer(ALICE, ALICE, &[]);
        let in_video = peer(BOB, BOB, &[VIDEO]);
        let video_primary = peer(BOB, VIDEO, &[]);
        // Owner bits for the owner, whatever the others say.
        let mine = NodeOwnership {
            uid: ALICE,
            ..node(0o066)
        };
        assert!(!permits_read(&mine, None, &alice));
        assert!(permits_read(
            &NodeOwnership {
                mode: 0o400,
                ..mine
            },
            None,
            &alice
        ));
        // Group bits for the owning group, primary or supplementary.
        assert!(permits_read(&node(0o640), None, &in_video));
        assert!(permits_read(&node(0o640), None, &video_primary));
        assert!(!permits_read(&node(0o640), None, &alice));
        // A group member does not fall back to the other bits.
        assert!(!permits_read(&node(0o604), None, &in_video));
        assert!(permits_read(&node(0o604), None, &alice));
        assert!(!permits_read(&node(0o600), None, &alice));
    }

    #[test]
    fn named_user_entry_is_limited_by_the_mask() {
        let alice = peer(ALICE, ALICE, &[]);
        let bob = peer(BOB, BOB, &[]);
        // Group class bits of the mode are the mask's.
        assert!(permits_read(&node(0o660), Some(&uaccess(6)), &alice));
        assert!(!permits_read(&node(0o660), Some(&uaccess(6)), &bob));
        // A mask without read: the named entry gives nothing. Mode 0620.
        assert!(!permits_read(&node(0o620), Some(&uaccess(2)), &alice));
    }

    /// With the group class bits all clear the kernel does not look at the
    /// ACL: the other bits decide, even for a named user.
    #[test]
    fn empty_mask_leaves_the_mode_bits_to_decide() {
        let alice = peer(ALICE, ALICE, &[]);
        assert!(!permits_read(&node(0o600), Some(&uaccess(0)), &alice));
        assert!(permits_read(&node(0o604), Some(&uaccess(0)), &alice));
    }

    #[test]
    fn owning_and_named_groups() {
        // user::rw- group::--- group:RENDER:r-- mask::r-- other::---
        let acl = Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_GROUP_OBJ, 0, UNDEFINED),
            (TAG_GROUP, 4, RENDER),
            (TAG_MASK, 4, UNDEFINED),
            (TAG_OTHER, 4, UNDEFINED),
        ]))
        .unwrap()
        .unwrap();
        let n = node(0o644);
        // A named group grants though the owning group does not.
        assert!(permits_read(
            &n,
            Some(&acl),
            &peer(BOB, BOB, &[VIDEO, RENDER])
        ));
        assert!(permits_read(&n, Some(&acl), &peer(BOB, RENDER, &[])));
        // In a matching group that grants nothing: denied, though other:: reads.
        assert!(!permits_read(&n, Some(&acl), &peer(BOB, BOB, &[VIDEO])));
        // In no matching group: other::.
        assert!(permits_read(&n, Some(&acl), &peer(BOB, BOB, &[7])));
    }

    #[test]
    fn mask_denies_named_groups_too() {
        // user::rw- group::r-- group:RENDER:rw- mask::-w- other::r--
        let acl = Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_GROUP_OBJ, 4, UNDEFINED),
            (TAG_GROUP, 6, RENDER),
            (TAG_MASK, 2, UNDEFINED),
            (TAG_OTHER, 4, UNDEFINED),
        ]))
        .unwrap()
        .unwrap();
        let n = node(0o624);
        assert!(!permits_read(&n, Some(&acl), &peer(BOB, BOB, &[RENDER])));
        assert!(!permits_read(&n, Some(&acl), &peer(BOB, VIDEO, &[])));
        assert!(permits_read(&n, Some(&acl), &peer(BOB, BOB, &[])));
    }

    /// A minimal ACL (no mask) is the mode bits again.
    #[test]
    fn minimal_acl() {
        let acl = Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_GROUP_OBJ, 4, UNDEFINED),
            (TAG_OTHER, 0, UNDEFINED),
        ]))
        .unwrap()
        .unwrap();
        assert!(permits_read(
            &node(0o640),
            Some(&acl),
            &peer(BOB, VIDEO, &[])
        ));
        assert!(!permits_read(
            &node(0o640),
            Some(&acl),
            &peer(BOB, BOB, &[])
        ));
        assert_eq!(acl.entries.len(), 3);
    }

    #[test]
    fn malformed_acls_are_refused() {
        let u = UNDEFINED;
        let cases: Vec<(Vec<u8>, AclError)> = vec![
            (vec![2, 0, 0], AclError::Length(3)),
            (
                {
                    let mut v = xattr(&[(TAG_USER_OBJ, 6, u)]);
                    v.push(0);
                    v
                },
                AclError::Length(13),
            ),
            (
                {
                    let mut v = xattr(&[(TAG_USER_OBJ, 6, u)]);
                    v[0] = 1;
                    v
                },
                AclError::Version(1),
            ),
            (
                xattr(&[(0x40, 6, u)]),
                AclError::Tag {
                    index: 0,
                    tag: 0x40,
                },
            ),
            (
                xattr(&[(TAG_USER_OBJ, 8, u)]),
                AclError::Perm { index: 0, perm: 8 },
            ),
            // Named user without a mask.
            (
                xattr(&[
                    (TAG_USER_OBJ, 6, u),
                    (TAG_USER, 6, ALICE),
                    (TAG_GROUP_OBJ, 6, u),
                    (TAG_OTHER, 0, u),
                ]),
                AclError::Order {
                    index: 3,
                    tag: AclTag::Other,
                },
            ),
            // Group before user.
            (
                xattr(&[(TAG_GROUP_OBJ, 6, u), (TAG_USER_OBJ, 6, u)]),
                AclError::Order {
                    index: 0,
                    tag: AclTag::GroupObj,
                },
            ),
            // Two owners.
            (
                xattr(&[(TAG_USER_OBJ, 6, u), (TAG_USER_OBJ, 6, u)]),
                AclError::Order {
                    index: 1,
                    tag: AclTag::UserObj,
                },
            ),
            // Anything after other::.
            (
                xattr(&[
                    (TAG_USER_OBJ, 6, u),
                    (TAG_GROUP_OBJ, 6, u),
                    (TAG_OTHER, 0, u),
                    (TAG_OTHER, 4, u),
                ]),
                AclError::Order {
                    index: 3,
                    tag: AclTag::Other,
                },
            ),
            // No other::.
            (
                xattr(&[(TAG_USER_OBJ, 6, u), (TAG_GROUP_OBJ, 6, u)]),
                AclError::Incomplete,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Acl::parse(&bytes), Err(want.clone()), "{bytes:?}");
        }
        // The version word alone is no ACL, as in the kernel.
        assert_eq!(Acl::parse(&xattr(&[])), Ok(None));
    }

    /// An unmapped id (the overflow id) is nobody's: not the owner, not a
    /// named user, not in the owning or a named group.
    #[test]
    fn overflow_ids_match_no_one() {
        let ov = OverflowIds {
            uid: 4000,
            gid: 4001,
        };
        let reads = |node: &NodeOwnership, acl: Option<&Acl>, peer: &Peer| {
            permits_read_with(node, acl, peer, ov)
        };
        let unmapped = peer(ov.uid, ov.gid, &[ov.gid]);
        // Owned by an unmapped user, who is not the client's unmapped uid:
        // the other bits decide.
        let theirs = NodeOwnership {
            mode: 0o400,
            uid: ov.uid,
            gid: ov.gid,
        };
        assert!(!reads(&theirs, None, &unmapped));
        // A mapped owner is the owner.
        let alices = NodeOwnership {
            uid: ALICE,
            ..theirs
        };
        assert!(reads(&alices, None, &peer(ALICE, ALICE, &[])));
        // Not in an unmapped owning group, by primary or supplementary gid.
        let group = NodeOwnership {
            mode: 0o040,
            uid: OWNER,
            gid: ov.gid,
        };
        assert!(!reads(&group, None, &unmapped));
        assert!(!reads(&group, None, &peer(BOB, BOB, &[ov.gid])));
        // Not a named user or group of an ACL either; other:: decides.
        let acl = Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_USER, 4, ov.uid),
            (TAG_GROUP_OBJ, 0, UNDEFINED),
            (TAG_GROUP, 4, ov.gid),
            (TAG_MASK, 4, UNDEFINED),
            (TAG_OTHER, 0, UNDEFINED),
        ]))
        .unwrap()
        .unwrap();
        assert!(!reads(&node(0o640), Some(&acl), &unmapped));
        assert!(!reads(&node(0o640), Some(&acl), &peer(BOB, ov.gid, &[])));
        // Mapped ids still match the same entries.
        let named = Acl::parse(&xattr(&[
            (TAG_USER_OBJ, 6, UNDEFINED),
            (TAG_USER, 4, ALICE),
            (TAG_GROUP_OBJ, 0, UNDEFINED),
            (TAG_GROUP, 4, RENDER),
            (TAG_MASK, 4, UNDEFINED),
            (TAG_OTHER, 0, UNDEFINED),
        ]))
        .unwrap()
        .unwrap();
        assert!(reads(&node(0o640), Some(&named), &peer(ALICE, ALICE, &[])));
        assert!(reads(
            &node(0o640),
            Some(&named),
            &peer(BOB, BOB, &[RENDER])
        ));
        // Root stays root.
        assert!(reads(&theirs, None, &peer(0, 0, &[])));
    }

    /// The overflow ids are read from the sysctls once; the default
    /// configuration's (and the fallback) is 65534, which then matches
    /// nobody in `permits_read`.
    #[test]
    fn overflow_ids_of_this_system() {
        let ov = OverflowIds::of_system();
        assert_eq!(OverflowIds::of_system(), ov);
        for (name, id) in [("overflowuid", ov.uid), ("overflowgid", ov.gid)] {
            match std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name)) {
                Ok(s) => assert_eq!(s.trim().parse::<u32>().unwrap(), id, "{name}"),
                Err(_) => assert_eq!(id, 65534, "{name}"),
            }
        }
        let nobody = NodeOwnership {
            mode: 0o440,
            uid: ov.uid,
            gid: ov.gid,
        };
        assert!(!permits_read(&nobody, None, &peer(ov.uid, ov.gid, &[])));
        assert!(permits_read(
            &NodeOwnership {
                mode: 0o004,
                ..nobody
            },
            None,
            &peer(ov.uid, ov.gid, &[])
        ));
    }

    /// A private directory with one file, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("heapland-node-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("heap"), "").unwrap();
            Scratch(dir)
        }

        fn heap(&self) -> PathBuf {
            self.0.join("heap")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Whether `peer` may read the regular file `path`, judged on the file
    /// opened.
    fn may_read(path: &Path, peer: &Peer) -> Result<bool, NodeAccessError> {
        open_for(path, peer, FileType::RegularFile).map(|fd| fd.is_some())
    }

    /// Sets `acl` on `path`; false where its filesystem keeps no ACLs.
    fn set_acl(path: &Path, acl: &[u8]) -> bool {
        match rustix::fs::setxattr(path, ACL_XATTR, acl, rustix::fs::XattrFlags::empty()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{}: no POSIX ACLs here ({e}), not checked", path.display());
                false
            }
        }
    }

    /// The real thing on a temporary file: its mode, owner and ACL read
    /// through the system calls, from the file opened.
    #[test]
    fn open_for_reads_the_node() {
        use std::os::unix::fs::MetadataExt;

        let dir = Scratch::new("read");
        let path = dir.heap();
        let meta = std::fs::metadata(&path).unwrap();
        // Someone who is neither the file's owner nor in its group, nor root.
        let stranger = peer(
            meta.uid().wrapping_add(4242).max(1),
            meta.gid().wrapping_add(4242),
            &[],
        );
        let owner = peer(meta.uid().max(1), meta.gid(), &[]);
        for (mode, stranger_reads) in [(0o600, false), (0o604, true), (0o640, false)] {
            chmod(&path, mode);
            assert_eq!(
                may_read(&path, &stranger).unwrap(),
                stranger_reads,
                "{mode:o}"
            );
        }
        if meta.uid() != 0 {
            chmod(&path, 0o400);
            assert!(may_read(&path, &owner).unwrap());
        }
        assert!(matches!(
            may_read(&dir.0.join("gone"), &stranger),
            Err(NodeAccessError::Open { .. })
        ));

        // The fd handed out is the file judged.
        chmod(&path, 0o604);
        let fd = open_for(&path, &stranger, FileType::RegularFile)
            .unwrap()
            .unwrap();
        assert_eq!(rustix::fs::fstat(&fd).unwrap().st_ino, meta.ino());

        // An ACL entry for the stranger, as logind's uaccess adds one, read
        // back through fgetxattr; then taken away, as at a session switch.
        chmod(&path, 0o600);
        let u = UNDEFINED;
        let acl = xattr(&[
            (TAG_USER_OBJ, 6, u),
            (TAG_USER, 4, stranger.uid),
            (TAG_GROUP_OBJ, 0, u),
            (TAG_MASK, 4, u),
            (TAG_OTHER, 0, u),
        ]);
        if set_acl(&path, &acl) {
            assert!(may_read(&path, &stranger).unwrap(), "ACL entry ignored");
            assert!(!may_read(&path, &peer(stranger.uid + 1, stranger.gid, &[])).unwrap());
            rustix::fs::removexattr(&path, ACL_XATTR).unwrap();
            chmod(&path, 0o600);
            assert!(!may_read(&path, &stranger).unwrap(), "ACL still in force");
        }
    }

    /// An ACL larger than the first read is read again into more room
    /// (`ERANGE`), not refused.
    #[test]
    fn a_large_acl_is_read_again() {
        let dir = Scratch::new("large");
        let path = dir.heap();
        let u = UNDEFINED;
        let acl = xattr(&[
            (TAG_USER_OBJ, 6, u),
            (TAG_USER, 4, BOB),
            (TAG_GROUP_OBJ, 0, u),
            (TAG_MASK, 4, u),
            (TAG_OTHER, 0, u),
        ]);
        if !set_acl(&path, &acl) {
            return;
        }
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let want = Acl::parse(&acl).unwrap();
        assert!(want.is_some());
        for first in [1, 8, acl.len() - 1, acl.len(), ACL_FIRST_READ] {
            assert_eq!(
                read_acl(fd.as_fd(), &path, first).unwrap(),
                want,
                "first read of {first} bytes"
            );
        }
    }

    /// What is not a node of the kind asked for, or is a symbolic link to
    /// one, is refused before anything else is looked at.
    #[test]
    fn only_the_node_type_asked_for_and_no_symbolic_links() {
        let dir = Scratch::new("type");
        let path = dir.heap();
        chmod(&path, 0o644);
        let anyone = peer(ALICE, ALICE, &[]);
        match open_for(&path, &anyone, FileType::CharacterDevice) {
            Err(e @ NodeAccessError::NodeType { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "{} is a regular file, not a character device",
                    path.display()
                )
            ),
            other => panic!("expected NodeType, got {other:?}"),
        }
        assert!(matches!(
            open_for(&dir.0, &anyone, FileType::CharacterDevice),
            Err(NodeAccessError::NodeType {
                found: FileType::Directory,
                ..
            })
        ));
        // A link to a readable file, or to a character device, is not
        // followed.
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            open_for(&link, &anyone, FileType::RegularFile),
            Err(NodeAccessError::Open {
                source: Errno::LOOP,
                ..
            })
        ));
        let null = Path::new("/dev/null");
        if let Ok(meta) = std::fs::metadata(null) {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if meta.file_type().is_char_device() && meta.mode() & 0o004 != 0 {
                let dev_link = dir.0.join("null");
                std::os::unix::fs::symlink(null, &dev_link).unwrap();
                assert!(matches!(
                    open_for(&dev_link, &anyone, FileType::CharacterDevice),
                    Err(NodeAccessError::Open {
                        source: Errno::LOOP,
                        ..
                    })
                ));
                // The device itself: judged and handed out.
                assert!(open_for(null, &anyone, FileType::CharacterDevice)
                    .unwrap()
                    .is_some());
            }
        }
    }
}
