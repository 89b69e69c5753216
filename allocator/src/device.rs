//! Device numbers, their sysfs devices, and the heaps each device links to.
//!
//! linux-dmabuf feedback, DRM nodes and V4L2 nodes all name a device by its
//! `dev_t`. Heaps are not per device: one heap gives one kind of memory and
//! serves every device that can use it. So that a program need not know the
//! rules, `device_heap.ko` gives each device it serves a `dma_heaps/`
//! directory of symbolic links named by rank, `0` the best heap for the
//! device, pointing at the heaps' sysfs devices (kernel/ABI.md):
//!
//! ```text
//! /sys/devices/platform/vivid.0/dma_heaps/0 -> ../../../virtual/device_heap/system-32bit-contiguous
//! /sys/devices/faux/vgem/dma_heaps/0        -> ../../../virtual/dma_heap/system
//! ```
//!
//! The links include the kernel's own heaps and heaps made for other devices;
//! the name of the link's target is the heap's name under `/dev/dma_heap/`.
//! From a `dev_t`, `/sys/dev/char/MAJ:MIN/device` is the device, and the
//! first directory up its parents that has `dma_heaps/` gives the heaps. Up,
//! because a PCI GPU is served, not each of its DRM nodes; the first only,
//! because a served device's own links describe it, its parent's describe
//! the parent. The order is the kernel's and is kept: the allocator chooses
//! by it.

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

/// A device found in sysfs, with the heaps it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device number it was resolved from.
    pub number: DeviceNumber,
    /// The kernel's name of the device that does DMA (`dev_name()`, e.g.
    /// `vkms`, `vgem`, `vivid.0`): the last component of its sysfs path.
    pub name: String,
    /// Canonical sysfs path of the DMA device (the node's `device` link).
    pub sysfs_path: PathBuf,
    /// The directory whose `dma_heaps/` was read: [`Self::sysfs_path`] or
    /// the nearest parent with one; `None` if no heap serves the device.
    pub heaps_from: Option<PathBuf>,
    /// Names of the heaps the device links to, best first: `heap_names[r]`
    /// is the heap of rank `r`. Links that cannot be followed are left out.
    pub heap_names: Vec<String>,
}

impl DeviceInfo {
    /// The rank of `heap` among the device's links (0 is the best), or
    /// `None` if the device does not link to it.
    pub fn rank_of(&self, heap: &str) -> Option<usize> {
        self.heap_names.iter().position(|n| n == heap)
    }
}

/// Resolves `number` to its sysfs device and the heaps it links to.
///
/// `/sys/dev/char/MAJ:MIN` is the node's own device (e.g. `drm/card0`); its
/// `device` link is the device that does DMA. Nodes without a `device` link
/// (virtual class devices) are taken as their own DMA device. The heaps are
/// those of the first directory, from the DMA device up through its parents,
/// that has `dma_heaps/`.
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
    let sysfs = roots.sysfs_canonical();
    let mut heaps_from = None;
    let mut heap_names = Vec::new();
    let mut dir: Option<&Path> = Some(&device);
    while let Some(current) = dir {
        if Some(current) == stop.as_deref() || !current.starts_with(&sysfs) {
            break;
        }
        if let Some(names) = heap_links(current) {
            heaps_from = Some(current.to_owned());
            heap_names = names;
            break;
        }
        dir = current.parent();
    }

    Ok(DeviceInfo {
        number,
        name,
        sysfs_path: device,
        heaps_from,
        heap_names,
    })
}

/// The heaps `device_dir/dma_heaps/` links to, in rank order, or `None` if
/// the directory has no `dma_heaps/` (the device is not served).
///
/// Link names are ranks: decimal, sorted by value (`10` after `9`). A name
/// that is not one as the kernel writes them (`x`, `01`, `+1`), an entry
/// that is not a link, and a link whose heap is gone (the module remakes
/// the links while a device starts or stops being served) are left out with
/// a debug message: what remains is still in the kernel's order.
pub fn heap_links(device_dir: &Path) -> Option<Vec<String>> {
    let dir = device_dir.join("dma_heaps");
    let entries = fs::read_dir(&dir).ok()?;
    let mut ranked: Vec<(u32, String)> = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name();
        let link_name = file_name.to_string_lossy();
        let Some(rank) = parse_rank(&link_name) else {
            tracing::debug!(dir = %dir.display(), link = %link_name, "not a rank, ignored");
            continue;
        };
        let path = entry.path();
        // The target's own name is the heap's, whatever the path to it.
        let heap = fs::read_link(&path).ok().and_then(|t| {
            t.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty() && n != "..")
        });
        let Some(heap) = heap.filter(|_| path.exists()) else {
            tracing::debug!(link = %path.display(), "dangling or unreadable heap link, ignored");
            continue;
        };
        ranked.push((rank, heap));
    }
    // Canonical names make ranks unique: sorting by rank is the order.
    ranked.sort();
    Some(ranked.into_iter().map(|(_, heap)| heap).collect())
}

/// A link name that is a rank: decimal digits without a leading zero
/// (`0`, `1`, `10`), so that no two names give one rank.
fn parse_rank(name: &str) -> Option<u32> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    if canonical {
        name.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_canonical_decimal() {
        assert_eq!(parse_rank("0"), Some(0));
        assert_eq!(parse_rank("10"), Some(10));
        for bad in ["", "01", "+1", "-1", "1a", " 1", "x", "99999999999"] {
            assert_eq!(parse_rank(bad), None, "{bad:?}");
        }
    }
}
