//! A fake sysfs + /dev tree in a tempdir, shaped like what device_heap.ko
//! and the kernel create (kernel/ABI.md), for host tests.

#![allow(dead_code)]

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use heapland_allocator::{DeviceNumber, Discovery, SysRoots};

pub struct FakeTree {
    pub dir: tempfile::TempDir,
}

pub struct HeapSpec {
    pub contiguous: bool,
    pub coherent: bool,
    pub dma_mask_bits: u32,
    pub max_alloc_bytes: u64,
    pub alignment_bytes: u64,
}

impl HeapSpec {
    pub fn contig() -> Self {
        Self {
            contiguous: true,
            coherent: true,
            dma_mask_bits: 64,
            max_alloc_bytes: 64 << 20,
            alignment_bytes: 4096,
        }
    }
    pub fn sg() -> Self {
        Self {
            contiguous: false,
            ..Self::contig()
        }
    }
    pub fn mask(mut self, bits: u32) -> Self {
        self.dma_mask_bits = bits;
        self
    }
    pub fn max(mut self, bytes: u64) -> Self {
        self.max_alloc_bytes = bytes;
        self
    }
    pub fn noncoherent(mut self) -> Self {
        self.coherent = false;
        self
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A relative path from directory `from` to `to` (both under the root).
fn rel(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..from.len() {
        p.push("..");
    }
    for c in &to[common..] {
        p.push(c);
    }
    p
}

impl FakeTree {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys/devices/platform")).unwrap();
        fs::create_dir_all(dir.path().join("sys/dev/char")).unwrap();
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        Self { dir }
    }

    pub fn roots(&self) -> SysRoots {
        SysRoots::under(self.dir.path())
    }

    pub fn discover(&self) -> Discovery {
        Discovery::scan_roots(&self.roots())
    }

    pub fn sys(&self, rel_path: &str) -> PathBuf {
        self.dir.path().join("sys").join(rel_path)
    }

    /// A DMA device at `sys/devices/<device>` (e.g. `platform/vkms`).
    pub fn device(&self, device: &str) -> &Self {
        fs::create_dir_all(self.sys(&format!("devices/{device}"))).unwrap();
        self
    }

    /// A class node (e.g. `drm/card0`) under `device` with number `num`,
    /// linked from /sys/dev/char/MAJ:MIN, whose `device` link points at the
    /// DMA device.
    pub fn node(&self, device: &str, node: &str, num: DeviceNumber) -> &Self {
        let dev_dir = self.sys(&format!("devices/{device}"));
        let node_dir = dev_dir.join(node);
        fs::create_dir_all(&node_dir).unwrap();
        write(&node_dir.join("dev"), &format!("{num}\n"));
        symlink(rel(&node_dir, &dev_dir), node_dir.join("device")).unwrap();
        let link = self.sys(&format!("dev/char/{num}"));
        symlink(rel(link.parent().unwrap(), &node_dir), link).unwrap();
        self
    }

    /// A device heap `name` serving `device`, with its /dev node.
    pub fn heap(&self, device: &str, name: &str, spec: HeapSpec) -> &Self {
        let dev_dir = self.sys(&format!("devices/{device}"));
        let heap_dir = dev_dir.join("device_heap").join(name);
        fs::create_dir_all(&heap_dir).unwrap();
        let backing = if spec.contiguous { "contig" } else { "sg" };
        write(&heap_dir.join("name"), &format!("{name}\n"));
        write(&heap_dir.join("dev"), "10:120\n");
        write(&heap_dir.join("backing"), &format!("{backing}\n"));
        write(
            &heap_dir.join("contiguous"),
            &format!("{}\n", u8::from(spec.contiguous)),
        );
        write(
            &heap_dir.join("coherent"),
            &format!("{}\n", u8::from(spec.coherent)),
        );
        write(
            &heap_dir.join("dma_mask_bits"),
            &format!("{}\n", spec.dma_mask_bits),
        );
        write(
            &heap_dir.join("max_alloc_bytes"),
            &format!("{}\n", spec.max_alloc_bytes),
        );
        write(
            &heap_dir.join("alignment_bytes"),
            &format!("{}\n", spec.alignment_bytes),
        );
        symlink(rel(&heap_dir, &dev_dir), heap_dir.join("device")).unwrap();
        let class = self.sys("class/device_heap");
        fs::create_dir_all(&class).unwrap();
        symlink(rel(&class, &heap_dir), class.join(name)).unwrap();
        self.dev_node(&format!("dma_heap/{name}"));
        self
    }

    /// Overwrites one attribute of a heap (to break it).
    pub fn set_attr(&self, name: &str, attr: &str, value: &str) -> &Self {
        let heap_dir = fs::canonicalize(self.sys(&format!("class/device_heap/{name}"))).unwrap();
        write(&heap_dir.join(attr), value);
        self
    }

    pub fn dev_node(&self, rel_path: &str) -> &Self {
        write(&self.dir.path().join("dev").join(rel_path), "");
        self
    }

    pub fn system_heap(&self) -> &Self {
        self.dev_node("dma_heap/system")
    }

    pub fn udmabuf(&self) -> &Self {
        self.dev_node("udmabuf")
    }
}

pub const VKMS: DeviceNumber = DeviceNumber::new(226, 0);
pub const VGEM: DeviceNumber = DeviceNumber::new(226, 128);
pub const VIVID: DeviceNumber = DeviceNumber::new(81, 0);

/// The guest's shape: vkms (contig), vgem (sg), vivid.0 (contig), system,
/// udmabuf.
pub fn guest_like() -> FakeTree {
    let t = FakeTree::new();
    t.device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .heap("platform/vkms", "vkms-contig", HeapSpec::contig())
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .heap("platform/vgem", "vgem-sg", HeapSpec::sg())
        .device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .heap("platform/vivid.0", "vivid.0-contig", HeapSpec::contig())
        .system_heap()
        .udmabuf();
    t
}
