//! Device numbers and their sysfs devices.
//!
//! linux-dmabuf feedback, DRM nodes and V4L2 nodes all name a device by its
//! `dev_t`. The kernel module hangs each heap under the device it serves, so
//! going from a `dev_t` to `/sys/dev/char/MAJ:MIN/device` and walking up the
//! parents finds every heap that serves it (kernel/ABI.md).

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use crate::{discovery::SysRoots, Error, Result};

/// A character device number (`dev_t`), split into major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceNumber {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DeviceNumber {
    /// A device number from its parts.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Splits a Linux `dev_t` (as `stat` or `DrmNode::dev_id` return it).
    pub fn from_dev_t(dev: u64) -> Self {
        Self {
            major: rustix::fs::major(dev),
            minor: rustix::fs::minor(dev),
        }
    }

    /// The Linux `dev_t` value.
    pub fn to_dev_t(self) -> u64 {
        rustix::fs::makedev(self.major, self.minor)
    }

    /// Decodes the `dev_t` array that linux-dmabuf feedback sends
    /// (`main_device`, `tranche_target_device`): native-endian, 8 bytes on
    /// Linux. Anything else is a malformed event.
    pub fn from_feedback_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 8] = bytes.try_into().map_err(|_| {
            Error::BadFeedback(format!("dev_t array of {} bytes, expected 8", bytes.len()))
        })?;
        Ok(Self::from_dev_t(u64::from_ne_bytes(array)))
    }

    /// The device number of the character device at `path` (e.g.
    /// `/dev/dri/card0`, `/dev/video0`).
    pub fn of_path(path: &Path) -> Result<Self> {
        let stat = rustix::fs::stat(path).map_err(|errno| Error::Read {
            path: path.to_owned(),
            source: errno.into(),
        })?;
        Ok(Self::from_dev_t(stat.st_rdev))
    }
}

/// From a Linux `dev_t`, e.g. Smithay's `DrmNode::dev_id()`.
impl From<u64> for DeviceNumber {
    fn from(dev: u64) -> Self {
        Self::from_dev_t(dev)
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A device found in sysfs, with the heaps that serve it or one of its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device number it was resolved from.
    pub number: DeviceNumber,
    /// The kernel's name of the device that does DMA (`dev_name()`, e.g.
    /// `vkms`, `vgem`, `vivid.0`): the last component of its sysfs path.
    pub name: String,
    /// Canonical sysfs path of the DMA device (the node's `device` link).
    pub sysfs_path: PathBuf,
    /// Names of the heaps found under the device and its parents, nearest
    /// first.
    pub heap_names: Vec<String>,
}

/// Resolves `number` to its sysfs device and the heaps serving it.
///
/// `/sys/dev/char/MAJ:MIN` is the node's own device (e.g. `drm/card0`); its
/// `device` link is the device that does DMA. Nodes without a `device` link
/// (virtual class devices) are taken as their own DMA device.
pub fn resolve(roots: &SysRoots, number: DeviceNumber) -> Result<DeviceInfo> {
    let node = roots.sysfs.join("dev/char").join(number.to_string());
    let node = fs::canonicalize(&node).map_err(|_| Error::UnknownDevice {
        device: number,
        path: node.clone(),
    })?;
    let device = fs::canonicalize(node.join("device")).unwrap_or(node);
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| number.to_string());

    let stop = fs::canonicalize(roots.sysfs.join("devices")).ok();
    let mut heap_names = Vec::new();
    let sysfs = roots.sysfs_canonical();
    let mut dir: Option<&Path> = Some(&device);
    while let Some(current) = dir {
        if Some(current) == stop.as_deref() || !current.starts_with(&sysfs) {
            break;
        }
        if let Ok(entries) = fs::read_dir(current.join("device_heap")) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            heap_names.extend(names);
        }
        dir = current.parent();
    }

    Ok(DeviceInfo {
        number,
        name,
        sysfs_path: device,
        heap_names,
    })
}
