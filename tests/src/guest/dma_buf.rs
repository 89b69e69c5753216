//! The dma-buf uapi (`<linux/dma-buf.h>`) and CPU mappings of dma-buf fds.

use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;

use rustix::fs::{fstat, seek, SeekFrom};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, IntegerSetter, Opcode, Setter};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// `struct dma_buf_sync`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SyncArg {
    pub flags: u64,
}

const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<SyncArg>(b'b', 0);

pub const SYNC_READ: u64 = 1;
pub const SYNC_WRITE: u64 = 2;
pub const SYNC_RW: u64 = 3;
pub const SYNC_START: u64 = 0;
pub const SYNC_END: u64 = 4;

/// DMA_BUF_IOCTL_SYNC with raw flags.
pub fn sync(fd: BorrowedFd<'_>, flags: u64) -> Result<(), Errno> {
    // SAFETY: SyncArg matches struct dma_buf_sync; the opcode encodes its size.
    unsafe {
        ioctl(
            fd,
            Setter::<DMA_BUF_IOCTL_SYNC, SyncArg>::new(SyncArg { flags }),
        )
    }
}

/// `DMA_BUF_SET_NAME_B`: the argument is the string's address itself.
const DMA_BUF_SET_NAME: Opcode = opcode::write::<u64>(b'b', 1);

/// Names a dma-buf, as bufinfo shows it (at most 31 bytes).
pub fn set_name(fd: BorrowedFd<'_>, name: &str) -> Result<(), String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("{name:?} contains NUL"))?;
    // SAFETY: the kernel reads a NUL-terminated string at the address given;
    // `c` outlives the call.
    unsafe {
        ioctl(
            fd,
            IntegerSetter::<DMA_BUF_SET_NAME>::new_pointer(c.as_ptr() as *mut _),
        )
    }
    .map_err(|e| format!("DMA_BUF_SET_NAME {name:?}: {e}"))
}

/// Size of a dma-buf as the kernel reports it (lseek to the end).
pub fn size(fd: BorrowedFd<'_>) -> Result<u64, String> {
    let end = seek(fd, SeekFrom::End(0)).map_err(|e| format!("lseek(SEEK_END): {e}"))?;
    seek(fd, SeekFrom::Start(0)).map_err(|e| format!("lseek(SEEK_SET): {e}"))?;
    Ok(end)
}

/// Inode number of the file behind `fd` (identifies a dma-buf across fds).
pub fn inode(fd: BorrowedFd<'_>) -> Result<u64, String> {
    fstat(fd)
        .map(|s| s.st_ino)
        .map_err(|e| format!("fstat: {e}"))
}

/// A shared read-write CPU mapping, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` at offset 0, read-write and shared.
    pub fn new(fd: impl AsFd, len: usize) -> Result<Self, String> {
        Self::with_offset(fd, len, 0)
    }

    /// Maps `len` bytes of `fd` at `offset`, read-write and shared.
    pub fn with_offset(fd: impl AsFd, len: usize, offset: u64) -> Result<Self, String> {
        // SAFETY: a fresh mapping chosen by the kernel aliases no Rust memory.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                offset,
            )
        }
        .map_err(|e| format!("mmap {len} bytes: {e}"))?;
        let ptr = NonNull::new(p.cast::<u8>()).ok_or("mmap returned NULL")?;
        Ok(Self { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is valid for len bytes while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The mapping as native-endian 32-bit words (len must be a multiple of 4).
    pub fn words(&self) -> &[u32] {
        // SAFETY: mmap returns page-aligned memory; len/4 words lie inside it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len / 4) }
    }

    pub fn words_mut(&mut self) -> &mut [u32] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len / 4) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from mmap and no slice outlives self.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Writes a pattern derived from `seed` into `fd` through a fresh mapping, bracketed by
/// DMA_BUF_IOCTL_SYNC, and returns nothing but errors.
pub fn fill(fd: BorrowedFd<'_>, len: usize, seed: u32) -> Result<(), String> {
    let mut m = Mapping::new(fd, len)?;
    sync(fd, SYNC_START | SYNC_WRITE).map_err(|e| format!("SYNC_START: {e}"))?;
    for (i, w) in m.words_mut().iter_mut().enumerate() {
        *w = pattern(seed, i);
    }
    sync(fd, SYNC_END | SYNC_WRITE).map_err(|e| format!("SYNC_END: {e}"))?;
    Ok(())
}

/// Checks through a fresh mapping that `fd` holds the pattern of `seed`.
pub fn check(fd: BorrowedFd<'_>, len: usize, seed: u32) -> Result<(), String> {
    let m = Mapping::new(fd, len)?;
    sync(fd, SYNC_START | SYNC_READ).map_err(|e| format!("SYNC_START: {e}"))?;
    let bad = m
        .words()
        .iter()
        .enumerate()
        .find(|(i, w)| **w != pattern(seed, *i));
    sync(fd, SYNC_END | SYNC_READ).map_err(|e| format!("SYNC_END: {e}"))?;
    match bad {
        None => Ok(()),
        Some((i, w)) => Err(format!(
            "word {i} is {w:#010x}, expected {:#010x}",
            pattern(seed, i)
        )),
    }
}

/// A word pattern that differs between neighbouring words, pages and seeds.
pub fn pattern(seed: u32, i: usize) -> u32 {
    let x = (i as u32).wrapping_mul(0x9e37_79b9) ^ seed.wrapping_mul(0x85eb_ca6b);
    x ^ (x >> 15)
}
