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
