//! A fake sysfs + /dev tree in a tempdir, shaped like what device_heap.ko
//! and the kernel create (kernel/ABI.md), for host tests: heaps under
//! `sys/devices/virtual/device_heap/<name>` with their attributes, class
//! links and `served/` links; per device `dma_heaps/<rank>` links.

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
    /// The `accounting` attribute; `None`: absent, as with older modules.
    pub accounting: Option<&'static str>,
    /// The `contig_source` attribute; `None`: absent.
    pub contig_source: Option<&'static str>,
    /// The `max_user_bytes` attribute; `None`: absent, as with older modules.
    pub max_user_bytes: Option<u64>,
}

impl HeapSpec {
    pub fn contig() -> Self {
        Self {
            contiguous: true,
            coherent: true,
            dma_mask_bits: 64,
            max_alloc_bytes: 64 << 20,
            alignment_bytes: 4096,
            accounting: None,
            contig_source: Some("buddy migrate"),
            max_user_bytes: None,
        }
    }
    pub fn sg() -> Self {
        Self {
            contiguous: false,
            contig_source: Some("buddy"),
            ..Self::contig()
        }
    }
    pub fn accounting(mut self, word: &'static str) -> Self {
        self.accounting = Some(word);
        self
    }
    pub fn max_user(mut self, bytes: u64) -> Self {
        self.max_user_bytes = Some(bytes);
        self
    }
    pub fn source(mut self, source: &'static str) -> Self {
        self.contig_source = Some(source);
        self
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

/// The bus of a device path under `sys/devices`, as `served/` names it:
/// `platform/vkms` is on `platform`, `pci0000:00/0000:00:02.0` on `pci`.
fn bus_of(device: &str) -> &str {
    let first = device.split('/').next().unwrap();
    if first.starts_with("pci") {
        "pci"
    } else {
        first
    }
}

/// `dev_name()` of a device path: its last component.
fn dev_name(device: &str) -> &str {
    device.rsplit('/').next().unwrap()
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
    /// DMA device; its `uevent` names it under /dev as devtmpfs would
    /// (`drm/card0` is `dri/card0`, `video4linux/video0` is `video0`), and
    /// the /dev file exists (a regular file: not a real node).
    pub fn node(&self, device: &str, node: &str, num: DeviceNumber) -> &Self {
        let dev_dir = self.sys(&format!("devices/{device}"));
        let node_dir = dev_dir.join(node);
        fs::create_dir_all(&node_dir).unwrap();
        write(&node_dir.join("dev"), &format!("{num}\n"));
        let devname = match node.strip_prefix("drm/") {
            Some(rest) => format!("dri/{rest}"),
            None => node.rsplit('/').next().unwrap().to_owned(),
        };
        write(
            &node_dir.join("uevent"),
            &format!(
                "MAJOR={}\nMINOR={}\nDEVNAME={devname}\n",
                num.major, num.minor
            ),
        );
        self.dev_node(&devname);
        symlink(rel(&node_dir, &dev_dir), node_dir.join("device")).unwrap();
        let link = self.sys(&format!("dev/char/{num}"));
        symlink(rel(link.parent().unwrap(), &node_dir), link).unwrap();
        self
    }

    /// A heap of the module, `name`, at `sys/devices/virtual/device_heap/`,
    /// with its class link and /dev node; no device links to it yet (see
    /// [`FakeTree::links`]).
    pub fn heap(&self, name: &str, spec: HeapSpec) -> &Self {
        let heap_dir = self.sys(&format!("devices/virtual/device_heap/{name}"));
        fs::create_dir_all(heap_dir.join("served")).unwrap();
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
        if let Some(word) = spec.accounting {
            write(&heap_dir.join("accounting"), &format!("{word}\n"));
        }
        if let Some(source) = spec.contig_source {
            write(&heap_dir.join("contig_source"), &format!("{source}\n"));
        }
        if let Some(bytes) = spec.max_user_bytes {
            write(&heap_dir.join("max_user_bytes"), &format!("{bytes}\n"));
        }
        let class = self.sys("class/device_heap");
        fs::create_dir_all(&class).unwrap();
        symlink(rel(&class, &heap_dir), class.join(name)).unwrap();
        self.dev_node(&format!("dma_heap/{name}"));
        self
    }

    /// `device` (e.g. `platform/vkms`) links to `heaps`, best first:
    /// `dma_heaps/0`, `1`, ... point at the module's heap of that name
    /// (`virtual/device_heap/<name>`, which then links back from its
    /// `served/<bus>:<device>`), else at the kernel's
    /// (`virtual/dma_heap/<name>`, made if missing). Replaces any links the
    /// device had, as the module remakes them.
    pub fn links(&self, device: &str, heaps: &[&str]) -> &Self {
        let dev_dir = self.sys(&format!("devices/{device}"));
        let links = dev_dir.join("dma_heaps");
        let back = format!("{}:{}", bus_of(device), dev_name(device));
        if links.exists() {
            fs::remove_dir_all(&links).unwrap();
            if let Ok(entries) = fs::read_dir(self.sys("devices/virtual/device_heap")) {
                for e in entries.filter_map(|e| e.ok()) {
                    let _ = fs::remove_file(e.path().join("served").join(&back));
                }
            }
        }
        fs::create_dir_all(&links).unwrap();
        for (rank, name) in heaps.iter().enumerate() {
            let module = self.sys(&format!("devices/virtual/device_heap/{name}"));
            let target = if module.exists() {
                let served = module.join("served").join(&back);
                symlink(rel(served.parent().unwrap(), &dev_dir), served).unwrap();
                module
            } else {
                let kernel = self.sys(&format!("devices/virtual/dma_heap/{name}"));
                fs::create_dir_all(&kernel).unwrap();
                kernel
            };
            symlink(rel(&links, &target), links.join(rank.to_string())).unwrap();
        }
        self
    }

    /// A raw entry in `device`'s `dma_heaps/`: a link named `link` to
    /// `target` (relative to `sys/`), which need not exist.
    pub fn raw_link(&self, device: &str, link: &str, target: &str) -> &Self {
        let links = self.sys(&format!("devices/{device}/dma_heaps"));
        fs::create_dir_all(&links).unwrap();
        symlink(rel(&links, &self.sys(target)), links.join(link)).unwrap();
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

    /// The heap core's `mem_accounting` parameter (7.x), `Y` or `N`.
    pub fn mem_accounting(&self, on: bool) -> &Self {
        write(
            &self.sys("module/dma_heap/parameters/mem_accounting"),
            if on { "Y\n" } else { "N\n" },
        );
        self
    }

    /// `device`'s bound driver: `<device>/driver` links to
    /// `bus/platform/drivers/<driver>`.
    pub fn driver(&self, device: &str, driver: &str) -> &Self {
        let drv = self.sys(&format!("bus/platform/drivers/{driver}"));
        fs::create_dir_all(&drv).unwrap();
        let dev_dir = self.sys(&format!("devices/{device}"));
        symlink(rel(&dev_dir, &drv), dev_dir.join("driver")).unwrap();
        self
    }

    /// A CMA area as /sys/kernel/mm/cma/<area>/ shows it.
    pub fn cma_area(&self, area: &str, total_pages: u64) -> &Self {
        write(
            &self.sys(&format!("kernel/mm/cma/{area}/total_pages")),
            &format!("{total_pages}\n"),
        );
        self
    }

    /// A heap of the heap core (`/sys/class/dma_heap/<name>` and its node),
    /// as 7.x kernels list every heap, CMA heaps and device heaps included.
    pub fn core_heap(&self, name: &str) -> &Self {
        write(
            &self.sys(&format!("devices/virtual/dma_heap/{name}/dev")),
            "253:1\n",
        );
        let class = self.sys("class/dma_heap");
        fs::create_dir_all(&class).unwrap();
        let target = self.sys(&format!("devices/virtual/dma_heap/{name}"));
        if !class.join(name).exists() {
            symlink(rel(&class, &target), class.join(name)).unwrap();
        }
        self.dev_node(&format!("dma_heap/{name}"))
    }

    /// A heap-core kernel with `device_heap` loaded: every device heap is
    /// listed by the core too.
    pub fn on_heap_core(&self) -> &Self {
        fs::create_dir_all(self.sys("module/device_heap")).unwrap();
        if let Ok(entries) = fs::read_dir(self.sys("class/device_heap")) {
            for e in entries.filter_map(|e| e.ok()) {
                self.core_heap(&e.file_name().to_string_lossy());
            }
        }
        self
    }

    pub fn udmabuf(&self) -> &Self {
        self.dev_node("udmabuf")
    }
}

pub const VKMS: DeviceNumber = DeviceNumber::new(226, 0);
pub const VGEM: DeviceNumber = DeviceNumber::new(226, 128);
pub const VIVID: DeviceNumber = DeviceNumber::new(81, 0);

/// The contiguous heap for devices reaching all of RAM: `dma_mask_bits` is
/// capped at RAM's last byte (here below 8 GiB).
pub fn system_contiguous() -> HeapSpec {
    HeapSpec::contig().mask(33)
}

/// The contiguous heap for devices reaching 4 GiB.
pub fn system_32bit_contiguous() -> HeapSpec {
    HeapSpec::contig().mask(32)
}

/// The guest's shape: vkms (contiguous, reaching all of RAM), vivid.0
/// (contiguous, 32-bit), vgem (scatter-gather, all of RAM), served by two
/// heaps of the module and the kernel's system heap; udmabuf.
///
/// ```text
/// vkms     0 system-contiguous  1 system-32bit-contiguous
/// vivid.0  0 system-32bit-contiguous
/// vgem     0 system  1 system-contiguous  2 system-32bit-contiguous
/// ```
pub fn guest_like() -> FakeTree {
    let t = FakeTree::new();
    t.heap("system-contiguous", system_contiguous())
        .heap("system-32bit-contiguous", system_32bit_contiguous())
        .system_heap()
        .udmabuf()
        .device("platform/vkms")
        .node("platform/vkms", "drm/card0", VKMS)
        .links(
            "platform/vkms",
            &["system-contiguous", "system-32bit-contiguous"],
        )
        .device("platform/vgem")
        .node("platform/vgem", "drm/renderD128", VGEM)
        .links(
            "platform/vgem",
            &["system", "system-contiguous", "system-32bit-contiguous"],
        )
        .device("platform/vivid.0")
        .node("platform/vivid.0", "video4linux/video0", VIVID)
        .links("platform/vivid.0", &["system-32bit-contiguous"]);
    t
}
