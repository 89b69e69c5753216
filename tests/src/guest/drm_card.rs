//! DRM device nodes in the guest: find a driver's card, and use it through the `drm` crate.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// An open DRM node.
pub struct Card {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl drm::Device for Card {}
impl drm::control::Device for Card {}

impl Card {
    pub fn open(path: &Path) -> Result<Self, String> {
        let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The driver name DRM_IOCTL_VERSION reports.
    pub fn driver_name(&self) -> Result<String, String> {
        use drm::Device;
        let d = self
            .get_driver()
            .map_err(|e| format!("DRM_IOCTL_VERSION on {}: {e}", self.path.display()))?;
        Ok(d.name().to_string_lossy().into_owned())
    }

    /// Canonical sysfs directory of the device behind the node, from its dev_t.
    pub fn sysfs_device(&self) -> Result<PathBuf, String> {
        sysfs_device_of(&self.path)
    }
}

/// `/sys/dev/char/MAJ:MIN/device` of a character device node, canonicalised.
pub fn sysfs_device_of(node: &Path) -> Result<PathBuf, String> {
    let st = rustix::fs::stat(node).map_err(|e| format!("stat {}: {e}", node.display()))?;
    let p = format!(
        "/sys/dev/char/{}:{}/device",
        rustix::fs::major(st.st_rdev),
        rustix::fs::minor(st.st_rdev)
    );
    fs::canonicalize(&p).map_err(|e| format!("{p}: {e}"))
}

/// Opens the first `/dev/dri/<prefix>N` node whose driver is `driver`.
pub fn find(driver: &str, prefix: &str) -> Result<Card, String> {
    let mut seen = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir("/dev/dri")
        .map_err(|e| format!("/dev/dri: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    entries.sort();
    for p in entries {
        let card = Card::open(&p)?;
        let name = card.driver_name()?;
        if name == driver {
            return Ok(card);
        }
        seen.push(format!("{}={name}", p.display()));
    }
    Err(format!(
        "no /dev/dri/{prefix}* node of driver {driver} (found: {})",
        seen.join(" ")
    ))
}

/// `DRM_PLANE_TYPE_PRIMARY`, the value of a plane's `type` property.
const PLANE_TYPE_PRIMARY: u64 = 1;

impl Card {
    /// The plane whose framebuffer, in the KMS state now, is the dma-buf
    /// of inode `dmabuf_inode`, and whether it is the primary plane: each
    /// plane's framebuffer is read back (`GETFB2`, whose buffer handles
    /// root gets without being master), its first buffer exported
    /// (`PRIME_HANDLE_TO_FD`, which for an imported buffer gives the
    /// dma-buf it was imported from) and compared. `None` when no plane
    /// shows it.
    pub fn plane_showing(&self, dmabuf_inode: u64) -> Result<Option<(u32, bool)>, String> {
        use drm::{control::Device as _, ClientCapability, Device as _};
        self.set_client_capability(ClientCapability::UniversalPlanes, true)
            .map_err(|e| format!("universal planes on {}: {e}", self.path.display()))?;
        let planes = self
            .plane_handles()
            .map_err(|e| format!("planes of {}: {e}", self.path.display()))?;
        for plane in planes {
            let info = self
                .get_plane(plane)
                .map_err(|e| format!("GETPLANE {plane:?}: {e}"))?;
            let Some(fb) = info.framebuffer() else {
                continue;
            };
            // The framebuffer may go between the two calls (a page flip).
            let Ok(fb_info) = self.get_planar_framebuffer(fb) else {
                continue;
            };
            let Some(handle) = fb_info.buffers()[0] else {
                return Err(format!(
                    "GETFB2 of plane {plane:?} gave no buffer handle (not root?)"
                ));
            };
            let exported = self.buffer_to_prime_fd(handle, prime_cloexec());
            // The handle is this file's own; close it whatever came of the export.
            let _ = self.close_buffer(handle);
            let fd =
                exported.map_err(|e| format!("PRIME export of plane {plane:?}'s buffer: {e}"))?;
            let inode = rustix::fs::fstat(&fd)
                .map_err(|e| format!("fstat: {e}"))?
                .st_ino;
            if inode != dmabuf_inode {
                continue;
            }
            let props = self
                .get_properties(plane)
                .map_err(|e| format!("properties of plane {plane:?}: {e}"))?;
            let mut primary = false;
            for (prop, value) in props.iter() {
                let Ok(prop_info) = self.get_property(*prop) else {
                    continue;
                };
                if prop_info.name().to_bytes() == b"type" {
                    primary = *value == PLANE_TYPE_PRIMARY;
                }
            }
            return Ok(Some((u32::from(plane), primary)));
        }
        Ok(None)
    }
}

/// `DRM_CLOEXEC` (`O_CLOEXEC`), the flag PRIME_HANDLE_TO_FD takes.
fn prime_cloexec() -> u32 {
    rustix::fs::OFlags::CLOEXEC.bits()
}
