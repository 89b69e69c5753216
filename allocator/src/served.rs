//! The devices a heap serves, described for people: their driver, where
//! they sit in sysfs, the /dev nodes through which programs reach them, and
//! every heap each links to.
//!
//! A heap's `served/` links name devices by bus and `dev_name()`, which is
//! not what a person types: they know `/dev/dri/card0` or `/dev/video0`. The
//! nodes are found from sysfs, below the served device: every class device
//! under it with a `dev` attribute (`drm/card0`, `video4linux/video0`),
//! mapped to /dev by the `DEVNAME` of its `uevent`, which is the name
//! devtmpfs gives the node.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    device::{self, DeviceNumber},
    discovery::{HeapInfo, ServedLink, SysRoots},
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

/// A device a heap serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedDevice {
    /// Its bus, as `add` takes it: `platform`, `pci`, `faux`, `amba`.
    pub bus: String,
    /// `dev_name()` of the device, e.g. `vkms`, `vivid.0`, `0000:00:02.0`.
    pub name: String,
    /// The name of its bound driver, if any (the `driver` link).
    pub driver: Option<String>,
    /// Its canonical sysfs path: the bus path, e.g.
    /// `/sys/devices/platform/vivid.0`.
    pub sysfs_path: PathBuf,
    /// Every heap the device links to, best first (its `dma_heaps/`).
    pub heap_names: Vec<String>,
    /// Character device nodes of the device and the devices below it, by
    /// sysfs path.
    pub nodes: Vec<DeviceNode>,
}

impl ServedDevice {
    /// The device a heap's `served/` link names.
    pub fn describe(roots: &SysRoots, link: &ServedLink) -> Self {
        let sysfs_path = link.sysfs_path.clone();
        let driver = fs::read_link(sysfs_path.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let mut nodes = Vec::new();
        collect_nodes(roots, &sysfs_path, 0, &mut nodes);
        nodes.sort_by(|a, b| a.sysfs_path.cmp(&b.sysfs_path));
        Self {
            bus: link.bus.clone(),
            name: link.name.clone(),
            driver,
            heap_names: device::heap_links(&sysfs_path).unwrap_or_default(),
            sysfs_path,
            nodes,
        }
    }

    /// Every device `heap` serves ([`HeapInfo::served`]), by bus and name;
    /// none for udmabuf and for heaps no served device links to.
    pub fn all(roots: &SysRoots, heap: &HeapInfo) -> Vec<Self> {
        heap.served
            .iter()
            .map(|link| Self::describe(roots, link))
            .collect()
    }

    /// The rank of `heap` among the device's links (0 is the best).
    pub fn rank_of(&self, heap: &str) -> Option<usize> {
        self.heap_names.iter().position(|n| n == heap)
    }
}

/// Adds the node of `dir` (if it has a `dev` attribute) and those below it.
/// Symbolic links are not followed (`subsystem`, `driver`, `device`,
/// `power` and the heap links of `dma_heaps/` would lead elsewhere).
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
        .filter(|e| e.file_name() != "dma_heaps")
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
