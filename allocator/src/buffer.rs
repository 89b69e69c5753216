//! A dma-buf and CPU access to it.
//!
//! CPU access to a dma-buf must be bracketed with `DMA_BUF_IOCTL_SYNC`
//! (start, then end) so that non-coherent devices get their caches cleaned
//! and invalidated; [`ReadAccess`] and [`WriteAccess`] do it in their
//! constructor and `Drop`, so it cannot be forgotten.

use std::{
    ffi::CString,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    ptr::NonNull,
};

use drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier};
use rustix::{
    ioctl::{self, opcode, IntegerSetter, Opcode, Setter},
    mm::{MapFlags, ProtFlags},
};

use crate::{layout::Layout, Error, Result};

/// `struct dma_buf_sync` of `<linux/dma-buf.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DmaBufSync {
    flags: u64,
}

const DMA_BUF_SYNC_READ: u64 = 1;
const DMA_BUF_SYNC_WRITE: u64 = 2;
const DMA_BUF_SYNC_START: u64 = 0;
const DMA_BUF_SYNC_END: u64 = 4;
const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<DmaBufSync>(b'b', 0);
/// `DMA_BUF_SET_NAME_B`: `_IOW('b', 1, __u64)`, the argument is the string's
/// address itself.
const DMA_BUF_SET_NAME: Opcode = opcode::write::<u64>(b'b', 1);
/// `DMA_BUF_NAME_LEN`, including the terminating NUL.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// One dma-buf fd and its length.
#[derive(Debug)]
pub struct DmaBuf {
    fd: OwnedFd,
    len: u64,
    heap: String,
}

impl DmaBuf {
    /// Wraps a dma-buf fd of `len` bytes that came from `heap`.
    pub fn from_fd(fd: OwnedFd, len: u64, heap: String) -> Self {
        Self { fd, len, heap }
    }

    /// The length asked for at allocation.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty buffer (never produced by a heap).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The heap it came from.
    pub fn heap(&self) -> &str {
        &self.heap
    }

    /// The fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the wrapper and returns the fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Names the buffer so it shows in `/sys/kernel/debug/dma_buf/bufinfo`.
    /// Names are cut to 31 bytes; a NUL inside is an error.
    pub fn set_name(&self, name: &str) -> Result<()> {
        let mut bytes = name.as_bytes().to_vec();
        bytes.truncate(DMA_BUF_NAME_LEN - 1);
        let c = CString::new(bytes).map_err(|_| Error::Io {
            op: "DMA_BUF_SET_NAME",
            target: self.heap.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "name contains NUL"),
        })?;
        // SAFETY: DMA_BUF_SET_NAME reads a NUL-terminated string at the
        // address passed as the argument; `c` outlives the call.
        unsafe {
            ioctl::ioctl(
                &self.fd,
                IntegerSetter::<DMA_BUF_SET_NAME>::new_pointer(c.as_ptr() as *mut _),
            )
        }
        .map_err(|e| Error::io("DMA_BUF_SET_NAME", self.heap.clone(), e))
    }

    /// Maps the whole buffer shared and read-write.
    pub fn map(&self) -> Result<Mapping<'_>> {
        let len = usize::try_from(self.len).map_err(|_| Error::TooLarge {
            what: "mapping",
            needed: self.len,
            limit: usize::MAX as u64,
            by: "the address space".into(),
        })?;
        // SAFETY: a fresh shared mapping of a dma-buf; nothing else in this
        // process aliases it, and `Mapping` unmaps it on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &self.fd,
                0,
            )
        }
        .map_err(|e| Error::io("mmap", self.heap.clone(), e))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::Io {
            op: "mmap",
            target: self.heap.clone(),
            source: std::io::Error::other("null mapping"),
        })?;
        Ok(Mapping {
            buf: self,
            ptr,
            len,
        })
    }

    fn sync(&self, flags: u64) -> Result<()> {
        // SAFETY: DMA_BUF_IOCTL_SYNC reads a `struct dma_buf_sync`.
        unsafe {
            ioctl::ioctl(
                &self.fd,
                Setter::<DMA_BUF_IOCTL_SYNC, _>::new(DmaBufSync { flags }),
            )
        }
        .map_err(|e| Error::io("DMA_BUF_IOCTL_SYNC", self.heap.clone(), e))
    }
}

/// A CPU mapping of a [`DmaBuf`]. Access the bytes through [`Mapping::read`]
/// or [`Mapping::write`], which bracket the access with `DMA_BUF_IOCTL_SYNC`.
#[derive(Debug)]
pub struct Mapping<'a> {
    buf: &'a DmaBuf,
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping<'_> {
    /// Starts a CPU read (`SYNC_START | SYNC_READ`); ends it on drop.
    pub fn read(&self) -> Result<ReadAccess<'_>> {
        self.buf.sync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)?;
        Ok(ReadAccess { map: self })
    }

    /// Starts a CPU read-write access (`SYNC_START | SYNC_READ | SYNC_WRITE`);
    /// ends it on drop. Takes `&mut` so only one writer exists.
    pub fn write(&mut self) -> Result<WriteAccess<'_>> {
        self.buf
            .sync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE)?;
        Ok(WriteAccess {
            buf: self.buf,
            ptr: self.ptr,
            len: self.len,
            _exclusive: std::marker::PhantomData,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping created in `DmaBuf::map`, and no
        // access guard can outlive `self`.
        if let Err(err) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!(heap = %self.buf.heap, %err, "munmap of a dma-buf failed");
        }
    }
}

/// A CPU read of a mapping; dereferences to the bytes.
#[derive(Debug)]
pub struct ReadAccess<'a> {
    map: &'a Mapping<'a>,
}

impl std::ops::Deref for ReadAccess<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is live for 'a and `len` bytes long; devices may
        // write it concurrently, which is what the sync bracket is for.
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr(), self.map.len) }
    }
}

impl Drop for ReadAccess<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.map.buf.sync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ) {
            tracing::warn!(%err, "ending a CPU read failed");
        }
    }
}

/// A CPU read-write access of a mapping; dereferences to the bytes.
#[derive(Debug)]
pub struct WriteAccess<'a> {
    buf: &'a DmaBuf,
    ptr: NonNull<u8>,
    len: usize,
    _exclusive: std::marker::PhantomData<&'a mut ()>,
}

impl std::ops::Deref for WriteAccess<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as for `ReadAccess`; the mapping is borrowed mutably for 'a.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for WriteAccess<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: `&mut Mapping` makes this the only access in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for WriteAccess<'_> {
    fn drop(&mut self) {
        if let Err(err) = self
            .buf
            .sync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE)
        {
            tracing::warn!(%err, "ending a CPU write failed");
        }
    }
}

/// A dma-buf with a pixel layout: one fd, planes at the layout's offsets.
#[derive(Debug)]
pub struct PixelBuffer {
    /// The memory.
    pub dmabuf: DmaBuf,
    /// Where the planes lie.
    pub layout: Layout,
    /// The format.
    pub fourcc: Fourcc,
    /// The modifier (LINEAR, or INVALID for implicit-modifier consumers).
    pub modifier: Modifier,
}

impl PixelBuffer {
    /// Allocates `layout.alloc_size()` bytes from `heap` and names the buffer
    /// after its format and size (visible in debugfs `bufinfo`).
    pub fn allocate(heap: &crate::Heap, layout: Layout, modifier: Modifier) -> Result<Self> {
        let dmabuf = heap.allocate(layout.alloc_size())?;
        let name = format!(
            "heapland {}x{} {}",
            layout.width, layout.height, layout.fourcc
        );
        // A name is a debugging aid: a kernel without DMA_BUF_SET_NAME must
        // not make allocation fail.
        if let Err(err) = dmabuf.set_name(&name) {
            tracing::debug!(%err, "could not name the buffer");
        }
        Ok(Self {
            dmabuf,
            fourcc: layout.fourcc,
            layout,
            modifier,
        })
    }
}
