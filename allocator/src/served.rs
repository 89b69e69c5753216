//! The device a device heap serves, described for people: its driver, where
//! it sits in sysfs, and the /dev nodes through which programs reach it.
//!
//! A heap names its device by `dev_name()`, which is not what a person
//! types: they know `/dev/dri/card0` or `/dev/video0`. The nodes are found
//! from sysfs, below the served device: every class device under it with a
//! `dev` attribute (`drm/card0`, `video4linux/video0`), mapped to /dev by
//! the `DEVNAME` of its `uevent`, which is the name devtmpfs gives the node.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    device::DeviceNumber,
    discovery::{HeapInfo, SysRoots},
};

/// How deep below the served device to look for nodes: enough for a USB
/// camera's interface (`1-1:1.0/video4linux/video0`), bounded so that a
/// large device tree is not walked whole.
const MAX_DEPTH: usize = 4;

/// One character device node of a served device or of a device below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// The node under /dev (`/dev/dri/card0`), where its `uevent` names it.
    pub path: Option<PathBuf>,
    /// Its device number.
    pub number: DeviceNumber,
    /// Its class device in sysfs (`.../vkms/drm/card0`).
    pub sysfs_path: PathBuf,
}

/// The device a heap serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedDevice {
    /// `dev_name()` of the device, e.g. `vkms`, `vivid.0`, `0000:00:02.0`.
    pub name: String,
    /// The name of its bound driver, if any (the `driver` link).
    pub driver: Option<String>,
    /// Its canonical sysfs path: the bus path, e.g.
    /// `/sys/devices/platform/vivid.0`.
    pub sysfs_path: PathBuf,
    /// Character device nodes of the device and the devices below it, by
    /// sysfs path.
    pub nodes: Vec<DeviceNode>,
}

impl ServedDevice {
    /// The device `heap` serves, or `None` for heaps that serve no device in
    /// particular (and device heaps whose device link could not be read).
    pub fn of(roots: &SysRoots, heap: &HeapInfo) -> Option<Self> {
        let sysfs_path = heap.served_sysfs_path.clone()?;
        let name = heap.served_device.clone().or_else(|| {
            sysfs_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })?;
        let driver = fs::read_link(sysfs_path.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let mut nodes = Vec::new();
        collect_nodes(roots, &sysfs_path, 0, &mut nodes);
        nodes.sort_by(|a, b| a.sysfs_path.cmp(&b.sysfs_path));
        Some(Self {
            name,
            driver,
            sysfs_path,
            nodes,
        })
    }
}

/// Adds the node of `dir` (if it has a `dev` attribute) and those below it.
/// Symbolic links are not followed (`subsystem`, `driver`, `device` and
/// `power` would lead elsewhere), nor `device_heap/` (the heaps' own nodes).
fn collect_nodes(roots: &SysRoots, dir: &Path, depth: usize, out: &mut Vec<DeviceNode>) {
    if let Some(number) = read_dev(dir) {
        out.push(DeviceNode {
            path: devname(dir).map(|n| roots.dev.join(n)),
            number,
            sysfs_path: dir.to_owned(),
        });
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name() != "device_heap")
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        collect_nodes(roots, &child, depth + 1, out);
    }
}

/// The `MAJ:MIN` of a class device's `dev` attribute.
fn read_dev(dir: &Path) -> Option<DeviceNumber> {
    let text = fs::read_to_string(dir.join("dev")).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some(DeviceNumber::new(major.parse().ok()?, minor.parse().ok()?))
}

/// `DEVNAME=` of a class device's `uevent`: its path below /dev.
fn devname(dir: &Path) -> Option<String> {
    let uevent = fs::read_to_string(dir.join("uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_owned)
        .filter(|n| !n.is_empty() && !n.split('/').any(|c| c == ".."))
}
