//! POSIX ACL entries on device nodes, as logind's `uaccess` tag or an
//! administrator's `setfacl` would add them, undone when the test is over.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, path::PathBuf};

const ACL_XATTR: &str = "system.posix_acl_access";

/// Whom an ACL entry names.
#[derive(Clone, Copy)]
pub enum Named {
    User(u32),
    Group(u32),
}

/// `system.posix_acl_access` granting `who` the permission bits `perm`
/// besides the mode's owner, group and others.
fn acl_with(mode: u32, who: Named, perm: u32) -> Vec<u8> {
    const UNDEFINED: u32 = u32::MAX;
    let entry = |tag: u16, perm: u32, id: u32| {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&(perm as u16).to_le_bytes());
        e.extend_from_slice(&id.to_le_bytes());
        e
    };
    let mut acl = 2u32.to_le_bytes().to_vec();
    acl.extend(entry(0x01, (mode >> 6) & 7, UNDEFINED)); // ACL_USER_OBJ
    if let Named::User(uid) = who {
        acl.extend(entry(0x02, perm, uid)); // ACL_USER
    }
    acl.extend(entry(0x04, (mode >> 3) & 7, UNDEFINED)); // ACL_GROUP_OBJ
    if let Named::Group(gid) = who {
        acl.extend(entry(0x08, perm, gid)); // ACL_GROUP
    }
    acl.extend(entry(0x10, perm | ((mode >> 3) & 7), UNDEFINED)); // ACL_MASK
    acl.extend(entry(0x20, mode & 7, UNDEFINED)); // ACL_OTHER
    acl
}

/// An ACL entry for a user or group on a node, removed (and the mode put
/// back) on drop.
pub struct AclGrant {
    node: PathBuf,
    mode: u32,
}

impl AclGrant {
    pub const READ: u32 = 4;
    pub const READ_WRITE: u32 = 6;

    pub fn add(node: &Path, who: Named, perm: u32) -> Result<Self, String> {
        let mode = fs::metadata(node)
            .map_err(|e| format!("stat {}: {e}", node.display()))?
            .permissions()
            .mode()
            & 0o7777;
        rustix::fs::setxattr(
            node,
            ACL_XATTR,
            &acl_with(mode, who, perm),
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| format!("setxattr {ACL_XATTR} on {}: {e}", node.display()))?;
        Ok(Self {
            node: node.into(),
            mode,
        })
    }

    pub fn remove(&self) -> Result<(), String> {
        rustix::fs::removexattr(&self.node, ACL_XATTR)
            .map_err(|e| format!("removexattr on {}: {e}", self.node.display()))?;
        // Setting the ACL set the group bits to its mask.
        fs::set_permissions(&self.node, fs::Permissions::from_mode(self.mode))
            .map_err(|e| format!("chmod {}: {e}", self.node.display()))
    }
}

impl Drop for AclGrant {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
