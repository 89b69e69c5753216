//! How heaps are registered on this kernel, and what that means for a user: through the
//! heap core where the kernel exports `dma_heap_add()` (7.x), through the module's own
//! character devices where it does not (6.12). Discovery must work the same on both.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::io::Errno;

use super::dma_buf;
use super::dma_heap::{self, Heap, CLASS, CORE_CLASS};
use super::kernel_log::Mark;
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "registration::heaps_registered_as_the_kernel_allows",
            run: heaps_registered_as_the_kernel_allows,
        },
        Test {
            name: "registration::rebound_device_gets_its_heap_back",
            run: rebound_device_gets_its_heap_back,
        },
        Test {
            name: "registration::unknown_ioctl_is_einval",
            run: unknown_ioctl_is_einval,
        },
    ]
}

const VIVID_DRV: &str = "/sys/bus/platform/drivers/vivid";

/// On heap-core kernels every device heap is listed in /sys/class/dma_heap beside
/// `system`, and its /dev node is the core's; elsewhere the heaps are the module's own
/// character devices and the core does not list them.
fn heaps_registered_as_the_kernel_allows() -> Result<(), String> {
    let core = dma_heap::kernel_has_heap_core()?;
    println!(
        "INFO registration: this kernel {} dma_heap_add()",
        if core { "exports" } else { "does not export" }
    );
    let mut errs = Vec::new();
    if !Path::new(CORE_CLASS).join("system").exists() {
        errs.push(format!("{CORE_CLASS}/system missing: no heap core?"));
    }
    for info in dma_heap::all_infos()? {
        let in_core = Path::new(CORE_CLASS).join(&info.name).exists();
        let own_dev = info.dir.join("dev").exists();
        match (core, in_core, own_dev) {
            (true, true, false) | (false, false, true) => {}
            _ => errs.push(format!(
                "[{}] heap core {core}: listed in {CORE_CLASS} {in_core}, own dev {own_dev}",
                info.name
            )),
        }
    }
    super::all_ok(errs)
}

/// Unbinding the served device's driver removes its heap; binding it again gives it
/// back under the same name, by itself. On heap-core kernels the /dev node stays
/// throughout (the core cannot remove it), fails with ENODEV while no heap is behind it,
/// and an fd opened before the unbind allocates again afterwards.
fn rebound_device_gets_its_heap_back() -> Result<(), String> {
    let core = dma_heap::kernel_has_heap_core()?;
    let info = dma_heap::heaps_of_device("vivid.0")?
        .into_iter()
        .find(|h| h.contiguous)
        .ok_or("vivid.0 has no contiguous heap")?;
    let node = Path::new("/dev/dma_heap").join(&info.name);
    let old = Heap::open(&info.name)?;
    let mark = Mark::new("unbind and rebind vivid.0");
    fs::write(format!("{VIVID_DRV}/unbind"), "vivid.0").map_err(|e| format!("unbind: {e}"))?;

    let mut errs = Vec::new();
    if Path::new(CLASS).join(&info.name).exists() {
        errs.push(format!("{} still in {CLASS} after unbind", info.name));
    }
    if node.exists() != core {
        errs.push(format!(
            "after unbind {} {} (heap core {core})",
            node.display(),
            if core { "is gone" } else { "still exists" }
        ));
    }
    match dma_heap::alloc(old.fd.as_fd(), 4096) {
        Err(Errno::NODEV) => {}
        other => errs.push(format!(
            "allocation after unbind: {other:?}, expected ENODEV"
        )),
    }
    // A heap for an unbound device is refused: its DMA mask is not the driver's yet.
    match dma_heap::control_raw("add", &dma_heap::spec("vivid.0", Some("contig"))?) {
        Err(e) if e.raw_os_error() == Some(19) => {}
        other => errs.push(format!(
            "add for the unbound vivid.0: {other:?}, expected ENODEV"
        )),
    }

    fs::write(format!("{VIVID_DRV}/bind"), "vivid.0").map_err(|e| format!("bind: {e}"))?;
    // The module keeps the devices it was asked to serve: the heap comes back with the
    // driver, under the same name, with nothing written to "add".
    if !Path::new(CLASS).join(&info.name).exists() {
        errs.push(format!(
            "{} did not come back when vivid.0 was bound again",
            info.name
        ));
        dma_heap::control("add", &dma_heap::spec("vivid.0", Some("contig"))?)?;
    }
    let fresh = Heap::open(&info.name)?;
    for (what, heap) in [("new fd", &fresh), ("fd from before the unbind", &old)] {
        let got = dma_heap::alloc(heap.fd.as_fd(), 65536);
        match (core, what, got) {
            (_, "new fd", Ok(b)) | (true, _, Ok(b)) => {
                if let Err(e) = dma_buf::fill(b.as_fd(), 65536, 5)
                    .and_then(|_| dma_buf::check(b.as_fd(), 65536, 5))
                {
                    errs.push(format!("{what}: {e}"));
                }
            }
            (false, _, Err(Errno::NODEV)) => {}
            (_, _, got) => errs.push(format!("{what} after rebind (heap core {core}): {got:?}")),
        }
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// The heap core answers any ioctl number but ALLOC's with EINVAL; the module's own nodes
/// must answer the same.
fn unknown_ioctl_is_einval() -> Result<(), String> {
    use rustix::ioctl::{ioctl, opcode, Opcode, Updater};
    const OTHER: Opcode = opcode::read_write::<dma_heap::AllocationData>(b'H', 1);
    let mut errs = Vec::new();
    for info in dma_heap::all_infos()? {
        let heap = Heap::open(&info.name)?;
        let mut req = dma_heap::AllocationData {
            len: 4096,
            fd_flags: dma_heap::FD_FLAGS,
            ..Default::default()
        };
        // SAFETY: the request is a valid AllocationData for the size the opcode encodes.
        let r = unsafe { ioctl(heap.fd.as_fd(), Updater::<OTHER, _>::new(&mut req)) };
        if r != Err(Errno::INVAL) {
            errs.push(format!(
                "[{}] ioctl nr 1: {r:?}, expected EINVAL",
                info.name
            ));
        }
    }
    super::all_ok(errs)
}
