//! vgem (the stand-in GPU) importing heap buffers through PRIME.
//!
//! vgem in 6.12 cannot give userspace a CPU mapping of an *imported* object:
//! DRM_IOCTL_MODE_MAP_DUMB ends in drm_gem_dumb_map_offset(), which refuses imported
//! objects with EINVAL. What vgem does with an import is attach it (our map_dma_buf runs
//! at import), hand the same dma-buf back on export, and put its fences on the dma-buf's
//! reservation object. The tests check exactly that: same buffer, same bytes, shared fences.

use std::os::fd::{AsFd, BorrowedFd};

use drm::control::Device as _;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};

use super::dma_buf;
use super::dma_heap::{self, Heap};
use super::drm_card::{self, Card};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "vgem::prime_import_same_buffer_same_bytes",
            run: prime_import_same_buffer_same_bytes,
        },
        Test {
            name: "vgem::fence_on_imported_buffer_blocks_cpu",
            run: fence_on_imported_buffer_blocks_cpu,
        },
    ]
}

#[repr(C)]
#[derive(Debug, Default)]
struct FenceAttach {
    handle: u32,
    flags: u32,
    out_fence: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Debug, Default)]
struct FenceSignal {
    fence: u32,
    flags: u32,
}

const VGEM_FENCE_WRITE: u32 = 1;
const DRM_IOCTL_VGEM_FENCE_ATTACH: Opcode = opcode::read_write::<FenceAttach>(b'd', 0x41);
const DRM_IOCTL_VGEM_FENCE_SIGNAL: Opcode = opcode::write::<FenceSignal>(b'd', 0x42);

/// Every heap serving vgem.
fn vgem_heaps() -> Result<Vec<Heap>, String> {
    let card = drm_card::find("vgem", "card")?;
    dma_heap::heaps_serving(&card.sysfs_device()?)?
        .iter()
        .map(|h| Heap::open(&h.name))
        .collect()
}

/// Runs `f` on every vgem heap, collecting failures.
fn each_vgem_heap(f: fn(&Heap) -> Result<(), String>) -> Result<(), String> {
    let errs: Vec<String> = vgem_heaps()?
        .iter()
        .filter_map(|h| f(h).err().map(|e| format!("[{}] {e}", h.name)))
        .collect();
    super::all_ok(errs)
}

fn render() -> Result<Card, String> {
    drm_card::find("vgem", "renderD")
}

fn prime_import_same_buffer_same_bytes() -> Result<(), String> {
    each_vgem_heap(prime_import_same_bytes)
}

fn prime_import_same_bytes(heap: &Heap) -> Result<(), String> {
    const LEN: usize = 256 * 1024;
    let buf = heap.alloc(LEN as u64)?;
    dma_buf::fill(buf.as_fd(), LEN, 0xbeef)?;
    let card = render()?;
    let handle = card
        .prime_fd_to_buffer(buf.as_fd())
        .map_err(|e| format!("PRIME_FD_TO_HANDLE on {}: {e}", card.path.display()))?;
    // Importing the same dma-buf again must give the same GEM object.
    let again = card
        .prime_fd_to_buffer(buf.as_fd())
        .map_err(|e| format!("second PRIME_FD_TO_HANDLE: {e}"))?;
    if again != handle {
        return Err(format!(
            "re-import gave handle {again:?}, first was {handle:?}"
        ));
    }
    let back = card
        .buffer_to_prime_fd(handle, 0o2 | 0o2_000_000)
        .map_err(|e| format!("PRIME_HANDLE_TO_FD: {e}"))?;
    let (a, b) = (dma_buf::inode(buf.as_fd())?, dma_buf::inode(back.as_fd())?);
    if a != b {
        return Err(format!(
            "vgem exported a different dma-buf (inode {b}, ours {a})"
        ));
    }
    dma_buf::check(back.as_fd(), LEN, 0xbeef).map_err(|e| format!("through vgem's fd: {e}"))?;
    // Write through vgem's fd, read through ours.
    dma_buf::fill(back.as_fd(), LEN, 0xcafe)?;
    dma_buf::check(buf.as_fd(), LEN, 0xcafe).map_err(|e| format!("after writing via vgem: {e}"))?;
    // Document what vgem 6.12 does with MAP_DUMB on an import.
    match drm_ffi::mode::dumbbuffer::map(card.as_fd(), handle.into(), 0, 0) {
        Ok(_) => println!("INFO vgem: MAP_DUMB on an imported object succeeded"),
        Err(e) => println!("INFO vgem: MAP_DUMB on an imported object: {e} (drm_gem_dumb_map_offset refuses imports)"),
    }
    card.close_buffer(handle)
        .map_err(|e| format!("GEM_CLOSE: {e}"))?;
    Ok(())
}

fn readable_now(fd: BorrowedFd<'_>) -> Result<bool, String> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    Ok(poll(&mut fds, Some(&zero)).map_err(|e| format!("poll: {e}"))? == 1)
}

fn fence_on_imported_buffer_blocks_cpu() -> Result<(), String> {
    each_vgem_heap(fence_blocks_cpu)
}

fn fence_blocks_cpu(heap: &Heap) -> Result<(), String> {
    let buf = heap.alloc(65536)?;
    let card = render()?;
    let handle = card
        .prime_fd_to_buffer(buf.as_fd())
        .map_err(|e| format!("PRIME_FD_TO_HANDLE: {e}"))?;
    if !readable_now(buf.as_fd())? {
        return Err("fresh buffer is not ready for CPU reads".into());
    }
    let mut att = FenceAttach {
        handle: handle.into(),
        flags: VGEM_FENCE_WRITE,
        ..Default::default()
    };
    // SAFETY: FenceAttach matches struct drm_vgem_fence_attach.
    unsafe {
        ioctl(
            card.as_fd(),
            Updater::<DRM_IOCTL_VGEM_FENCE_ATTACH, FenceAttach>::new(&mut att),
        )
    }
    .map_err(|e| format!("VGEM_FENCE_ATTACH: {e}"))?;
    let blocked = !readable_now(buf.as_fd())?;
    // SAFETY: FenceSignal matches struct drm_vgem_fence_signal.
    unsafe {
        ioctl(
            card.as_fd(),
            Setter::<DRM_IOCTL_VGEM_FENCE_SIGNAL, FenceSignal>::new(FenceSignal {
                fence: att.out_fence,
                flags: 0,
            }),
        )
    }
    .map_err(|e| format!("VGEM_FENCE_SIGNAL: {e}"))?;
    if !blocked {
        return Err("vgem's write fence on the imported buffer did not block a CPU poll".into());
    }
    if !readable_now(buf.as_fd())? {
        return Err("buffer still busy after vgem signalled its fence".into());
    }
    card.close_buffer(handle)
        .map_err(|e| format!("GEM_CLOSE: {e}"))?;
    Ok(())
}
