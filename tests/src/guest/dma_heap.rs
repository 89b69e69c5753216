//! The dma-heap uapi (`<linux/dma-heap.h>`) and the device_heap sysfs ABI (kernel/ABI.md),
//! as the tests need them: allocate from a heap, find heaps, read their properties.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

/// `struct dma_heap_allocation_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct AllocationData {
    pub len: u64,
    pub fd: u32,
    pub fd_flags: u32,
    pub heap_flags: u64,
}

const DMA_HEAP_IOCTL_ALLOC: Opcode = opcode::read_write::<AllocationData>(b'H', 0);

/// `O_RDWR | O_CLOEXEC`: the fd_flags every test allocation uses.
pub const FD_FLAGS: u32 = 0o2 | 0o2_000_000;

/// Root of the device heap class in sysfs.
pub const CLASS: &str = "/sys/class/device_heap";

/// What is left of the node of a removed heap: nothing where the module owns its nodes;
/// on heap-core kernels the node itself (the core cannot remove one), with allocations
/// through it failing with ENODEV.
pub fn check_removed_node(name: &str) -> Result<(), String> {
    let node = Path::new("/dev/dma_heap").join(name);
    if !kernel_has_heap_core()? {
        return match node.exists() {
            true => Err(format!(
                "{} still exists after the heap was removed",
                node.display()
            )),
            false => Ok(()),
        };
    }
    let fd = open(name).map_err(|e| format!("heap core node of a removed heap: {e}"))?;
    match alloc(fd.as_fd(), 4096) {
        Err(Errno::NODEV) => Ok(()),
        other => Err(format!(
            "allocation from the node of removed heap {name}: {other:?}, expected ENODEV"
        )),
    }
}

/// The heap core's class: every heap registered through `dma_heap_add()`.
pub const CORE_CLASS: &str = "/sys/class/dma_heap";

/// Whether this kernel exports the heap core to modules (`dma_heap_add`, 6.18 and
/// later), so that device heaps must register there: decided from the kernel's own
/// symbol table, not from anything the module says.
/// Read once per process: /proc/kallsyms is large and the answer cannot change.
pub fn kernel_has_heap_core() -> Result<bool, String> {
    static CORE: std::sync::OnceLock<Result<bool, String>> = std::sync::OnceLock::new();
    CORE.get_or_init(|| {
        let syms =
            fs::read_to_string("/proc/kallsyms").map_err(|e| format!("/proc/kallsyms: {e}"))?;
        Ok(syms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("__ksymtab_dma_heap_add")))
    })
    .clone()
}

/// Opens `/dev/dma_heap/<name>`.
pub fn open(name: &str) -> Result<OwnedFd, String> {
    let path = format!("/dev/dma_heap/{name}");
    rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {path}: {e}"))
}

/// Issues DMA_HEAP_IOCTL_ALLOC with exactly the given request; on success the kernel has
/// filled in `req.fd`, which the caller then owns.
pub fn alloc_raw(heap: BorrowedFd<'_>, req: &mut AllocationData) -> Result<(), Errno> {
    // SAFETY: AllocationData matches the kernel's struct dma_heap_allocation_data and the
    // opcode encodes its size and direction.
    unsafe {
        ioctl(
            heap,
            Updater::<DMA_HEAP_IOCTL_ALLOC, AllocationData>::new(req),
        )
    }
}

/// Allocates `len` bytes and returns the dma-buf fd.
pub fn alloc(heap: BorrowedFd<'_>, len: u64) -> Result<OwnedFd, Errno> {
    let mut req = AllocationData {
        len,
        fd_flags: FD_FLAGS,
        ..Default::default()
    };
    alloc_raw(heap, &mut req)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(req.fd as i32) })
}

/// A heap opened for allocation, with its name for messages.
pub struct Heap {
    pub name: String,
    pub fd: OwnedFd,
}

impl Heap {
    pub fn open(name: &str) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            fd: open(name)?,
        })
    }

    /// Allocates `len` bytes, with the heap's name in the error.
    pub fn alloc(&self, len: u64) -> Result<OwnedFd, String> {
        alloc(self.fd.as_fd(), len).map_err(|e| format!("alloc {len} from {}: {e}", self.name))
    }
}

/// The properties a device heap publishes under /sys/class/device_heap/<name>/.
#[derive(Debug, Clone)]
pub struct HeapInfo {
    pub name: String,
    /// The canonical sysfs directory of the heap.
    pub dir: PathBuf,
    /// Canonical paths of the devices it serves (its `served/` links), sorted.
    pub served: Vec<PathBuf>,
    pub backing: String,
    pub contiguous: bool,
    pub coherent: bool,
    pub dma_mask_bits: u32,
    pub max_alloc_bytes: u64,
    pub alignment_bytes: u64,
    /// Where buffers come from, in order: `cma:<area> buddy`, `buddy`, `buddy migrate`.
    pub contig_source: String,
    /// MAJ:MIN of `/dev/dma_heap/<name>`: the heap's own `dev` attribute where the module
    /// registers the node, else the heap core's (`/sys/class/dma_heap/<name>/dev`).
    pub dev: String,
}

fn attr(dir: &Path, name: &str) -> Result<String, String> {
    let p = dir.join(name);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("read {}: {e}", p.display()))
}

fn attr_num<T: std::str::FromStr>(dir: &Path, name: &str) -> Result<T, String> {
    let s = attr(dir, name)?;
    s.parse()
        .map_err(|_| format!("{}/{name}: not a number: {s:?}", dir.display()))
}

fn attr_bool(dir: &Path, name: &str) -> Result<bool, String> {
    match attr(dir, name)?.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(format!(
            "{}/{name}: expected 0 or 1, got {other:?}",
            dir.display()
        )),
    }
}

impl HeapInfo {
    /// Reads every attribute of the heap whose sysfs directory is `dir`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let dir = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut served = Vec::new();
        if let Ok(rd) = fs::read_dir(dir.join("served")) {
            for e in rd.filter_map(|e| e.ok()) {
                served.push(
                    fs::canonicalize(e.path())
                        .map_err(|err| format!("{}: {err}", e.path().display()))?,
                );
            }
        }
        served.sort();
        Ok(Self {
            name: attr(&dir, "name")?,
            backing: attr(&dir, "backing")?,
            contiguous: attr_bool(&dir, "contiguous")?,
            coherent: attr_bool(&dir, "coherent")?,
            dma_mask_bits: attr_num(&dir, "dma_mask_bits")?,
            max_alloc_bytes: attr_num(&dir, "max_alloc_bytes")?,
            alignment_bytes: attr_num(&dir, "alignment_bytes")?,
            contig_source: attr(&dir, "contig_source")?,
            dev: match attr(&dir, "dev") {
                Ok(d) => d,
                Err(_) => attr(&Path::new(CORE_CLASS).join(attr(&dir, "name")?), "dev")?,
            },
            served,
            dir,
        })
    }

    /// Reads /sys/class/device_heap/<name>.
    pub fn by_name(name: &str) -> Result<Self, String> {
        Self::read(&Path::new(CLASS).join(name))
    }
}

/// Names of every device heap in /sys/class/device_heap (the add/remove control files are
/// not heaps).
pub fn device_heaps() -> Result<Vec<String>, String> {
    let rd = fs::read_dir(CLASS).map_err(|e| format!("{CLASS}: {e} (device_heap not loaded?)"))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("name").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Every device heap, with properties; fails if there is none.
pub fn all_infos() -> Result<Vec<HeapInfo>, String> {
    let names = device_heaps()?;
    if names.is_empty() {
        return Err(format!("no device heaps in {CLASS}"));
    }
    names.iter().map(|n| HeapInfo::by_name(n)).collect()
}

/// Where the module's heaps live in sysfs; the kernel's are under .../virtual/dma_heap.
pub const VIRTUAL_DIR: &str = "/sys/devices/virtual/device_heap";

/// One of a device's `dma_heaps/<rank>` links.
#[derive(Debug, Clone)]
pub struct Link {
    pub rank: usize,
    /// The heap's name: the target directory's name, /dev/dma_heap/<name>.
    pub name: String,
    /// Canonical target.
    pub target: PathBuf,
    /// A heap of the module (target under /sys/devices/virtual/device_heap).
    pub ours: bool,
}

/// The `dma_heaps/` links of the device at `device_dir` or of its nearest parent that has
/// them, in rank order; fails if the ranks are not 0..n or a link does not resolve.
pub fn links(device_dir: &Path) -> Result<Vec<Link>, String> {
    let mut dir = Some(device_dir);
    while let Some(d) = dir {
        if d == Path::new("/sys/devices") || d == Path::new("/sys") {
            break;
        }
        let hd = d.join("dma_heaps");
        if hd.is_dir() {
            let mut v = Vec::new();
            for e in fs::read_dir(&hd).map_err(|e| format!("{}: {e}", hd.display()))? {
                let e = e.map_err(|e| e.to_string())?;
                let name = e.file_name().to_string_lossy().into_owned();
                let rank: usize = name
                    .parse()
                    .map_err(|_| format!("{}: link {name:?} is not a rank", hd.display()))?;
                let target = fs::canonicalize(e.path())
                    .map_err(|err| format!("{}: {err}", e.path().display()))?;
                v.push(Link {
                    rank,
                    name: target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    ours: target.starts_with(VIRTUAL_DIR),
                    target,
                });
            }
            v.sort_by_key(|l| l.rank);
            for (i, l) in v.iter().enumerate() {
                if l.rank != i {
                    return Err(format!("{}: ranks are not 0..{}", hd.display(), v.len()));
                }
            }
            return Ok(v);
        }
        dir = d.parent();
    }
    Err(format!(
        "no dma_heaps/ directory in {} or its parents",
        device_dir.display()
    ))
}

/// The module's heaps serving the device at `device_dir`, in rank order (the kernel's
/// own heaps in its links are left out).
pub fn heaps_serving(device_dir: &Path) -> Result<Vec<HeapInfo>, String> {
    let v: Vec<HeapInfo> = links(device_dir)?
        .iter()
        .filter(|l| l.ours)
        .map(|l| HeapInfo::read(&l.target))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(format!(
            "no heap of the module serves {}",
            device_dir.display()
        ));
    }
    Ok(v)
}

/// The best heap of the module for `dev_name` that is contiguous (or not): the first one
/// in its links.
pub fn best_heap(dev_name: &str, contiguous: bool) -> Result<HeapInfo, String> {
    heaps_of_device(dev_name)?
        .into_iter()
        .find(|h| h.contiguous == contiguous)
        .ok_or_else(|| {
            format!(
                "no {} heap of the module serves {dev_name}",
                if contiguous {
                    "contiguous"
                } else {
                    "scattered"
                }
            )
        })
}

/// Buses the module serves devices on (amba: PL111 on the arm board). vkms and vgem are platform devices up to 6.14
/// and faux devices from 6.15; vivid stays a platform device.
const BUSES: &[&str] = &["platform", "faux", "pci", "amba"];

/// The bus the device `dev_name` (e.g. "vkms") is on.
pub fn bus_of(dev_name: &str) -> Result<&'static str, String> {
    BUSES
        .iter()
        .copied()
        .find(|b| {
            Path::new("/sys/bus")
                .join(b)
                .join("devices")
                .join(dev_name)
                .exists()
        })
        .ok_or_else(|| format!("no device {dev_name} on any of the buses {BUSES:?}"))
}

/// `<bus>/<device>[:backing]`, what the module's `add` file takes.
pub fn spec(dev_name: &str, backing: Option<&str>) -> Result<String, String> {
    let bus = bus_of(dev_name)?;
    Ok(match backing {
        Some(b) => format!("{bus}/{dev_name}:{b}"),
        None => format!("{bus}/{dev_name}"),
    })
}

/// Canonical sysfs directory of the device `dev_name`.
pub fn device_dir(dev_name: &str) -> Result<PathBuf, String> {
    let d = Path::new("/sys/bus")
        .join(bus_of(dev_name)?)
        .join("devices")
        .join(dev_name);
    fs::canonicalize(&d).map_err(|e| format!("{}: {e}", d.display()))
}

/// The heaps of the device `dev_name` (e.g. "vivid.0").
pub fn heaps_of_device(dev_name: &str) -> Result<Vec<HeapInfo>, String> {
    heaps_serving(&device_dir(dev_name)?)
}

/// Reads a debugfs counter of the module (`live_buffers` or `live_bytes`).
pub fn debugfs_counter(name: &str) -> Result<u64, String> {
    let p = format!("/sys/kernel/debug/device_heap/{name}");
    let s = fs::read_to_string(&p).map_err(|e| format!("read {p}: {e}"))?;
    s.trim()
        .parse()
        .map_err(|_| format!("{p}: not a number: {s:?}"))
}

/// Writes a line to /sys/class/device_heap/{add,remove}.
pub fn control(file: &str, value: &str) -> Result<(), String> {
    let p = format!("{CLASS}/{file}");
    fs::write(&p, value).map_err(|e| format!("write {value:?} to {p}: {e}"))
}

/// Like `control`, keeping the errno for tests that expect a particular one.
pub fn control_raw(file: &str, value: &str) -> std::io::Result<()> {
    fs::write(format!("{CLASS}/{file}"), value)
}
