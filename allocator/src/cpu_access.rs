//! CPU access to a plane of a Smithay [`Dmabuf`], bracketed by
//! `DMA_BUF_IOCTL_SYNC`.
//!
//! CPU access to a dma-buf must start and end with a sync so that devices
//! that are not cache-coherent get their caches cleaned and invalidated.
//! `Dmabuf::map_plane` and `Dmabuf::sync_plane` give the two halves; a
//! [`CpuAccess`] holds both, starting the access when made and ending it
//! when dropped, so the end cannot be forgotten on an early return.
//!
//! Making one is `unsafe`, as mapping a file is in memmap2: the bytes are
//! shared with every other holder of the dma-buf (clones of the `Dmabuf`,
//! other processes, devices), and Rust's slices promise that nothing else
//! changes them while they are borrowed. The caller promises that for the
//! access's lifetime; the sync bracket orders the device's side.

use smithay::backend::allocator::dmabuf::{
    Dmabuf, DmabufMapping, DmabufMappingFailed, DmabufMappingMode, DmabufSyncFailed,
    DmabufSyncFlags,
};

/// Why a plane could not be accessed.
#[derive(Debug, thiserror::Error)]
pub enum CpuAccessError {
    /// `mmap` of the plane failed (or the plane does not exist).
    #[error("cannot map plane {plane}: {source}")]
    Map {
        /// The plane.
        plane: usize,
        /// Smithay's error.
        source: DmabufMappingFailed,
    },
    /// `DMA_BUF_IOCTL_SYNC` failed.
    #[error("cannot start CPU access to plane {plane}: {source}")]
    Sync {
        /// The plane.
        plane: usize,
        /// Smithay's error.
        source: DmabufSyncFailed,
    },
}

/// A CPU read or read-write access to one plane: from the plane's offset to
/// the end of its dma-buf.
#[derive(Debug)]
pub struct CpuAccess<'a> {
    dmabuf: &'a Dmabuf,
    plane: usize,
    mapping: DmabufMapping,
    writable: bool,
}

impl<'a> CpuAccess<'a> {
    /// Starts a CPU read of `plane` (`SYNC_START | SYNC_READ`). The start
    /// waits for the writes of devices (their fences) to end.
    ///
    /// # Safety
    ///
    /// While the access lives and a slice of [`bytes`](Self::bytes) is
    /// borrowed, nothing in this process writes the plane (no write access
    /// to it, no other mapping written), and no other process writes it:
    /// the bytes borrowed must not change. A reader that only copies
    /// through [`as_ptr`](Self::as_ptr) promises nothing of the kind.
    pub unsafe fn read(dmabuf: &'a Dmabuf, plane: usize) -> Result<Self, CpuAccessError> {
        Self::start(dmabuf, plane, false)
    }

    /// Starts a CPU read-write access of `plane`
    /// (`SYNC_START | SYNC_READ | SYNC_WRITE`).
    ///
    /// # Safety
    ///
    /// While the access lives, nothing else in this process or any other
    /// reads or writes the plane's bytes: the access is the only one.
    pub unsafe fn write(dmabuf: &'a Dmabuf, plane: usize) -> Result<Self, CpuAccessError> {
        Self::start(dmabuf, plane, true)
    }

    fn sync_flags(writable: bool) -> DmabufSyncFlags {
        if writable {
            DmabufSyncFlags::READ | DmabufSyncFlags::WRITE
        } else {
            DmabufSyncFlags::READ
        }
    }

    fn start(dmabuf: &'a Dmabuf, plane: usize, writable: bool) -> Result<Self, CpuAccessError> {
        let mode = if writable {
            DmabufMappingMode::READ | DmabufMappingMode::WRITE
        } else {
            DmabufMappingMode::READ
        };
        let flags = Self::sync_flags(writable);
        let mapping = dmabuf
            .map_plane(plane, mode)
            .map_err(|source| CpuAccessError::Map { plane, source })?;
        sync(dmabuf, plane, DmabufSyncFlags::START | flags)
            .map_err(|source| CpuAccessError::Sync { plane, source })?;
        Ok(Self {
            dmabuf,
            plane,
            mapping,
            writable,
        })
    }

    /// The start of the mapping and its length in bytes, for a reader that
    /// copies from memory another process may write meanwhile (a Wayland
    /// client's buffer): such bytes must never be borrowed as a slice, only
    /// copied through the pointer, as Smithay hands out `wl_shm` memory.
    pub fn as_ptr(&self) -> (*const u8, usize) {
        (
            self.mapping.ptr().cast::<u8>().cast_const(),
            self.mapping.length(),
        )
    }

    /// The plane's bytes, up to the end of the dma-buf.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is live while `self` is, and `length()` bytes
        // long; the constructor's contract keeps other writers away.
        unsafe {
            std::slice::from_raw_parts(self.mapping.ptr().cast::<u8>(), self.mapping.length())
        }
    }

    /// The plane's bytes, writable; `None` for a read access.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if !self.writable {
            return None;
        }
        // SAFETY: as for `bytes`; the mapping is writable (mapped with
        // `WRITE`), `&mut self` makes this the only slice of it here, and
        // the constructor's contract makes it the only access anywhere.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.mapping.ptr().cast::<u8>(), self.mapping.length())
        })
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.dmabuf.sync_plane(
            self.plane,
            DmabufSyncFlags::END | Self::sync_flags(self.writable),
        ) {
            tracing::warn!(plane = self.plane, %err, "ending a CPU access to a dma-buf failed");
        }
    }
}

/// `DMA_BUF_IOCTL_SYNC`, again when a signal interrupted it (as libdrm's
/// `drmIoctl` retries).
fn sync(dmabuf: &Dmabuf, plane: usize, flags: DmabufSyncFlags) -> Result<(), DmabufSyncFailed> {
    loop {
        match dmabuf.sync_plane(plane, flags) {
            Err(DmabufSyncFailed::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) => {}
            result => return result,
        }
    }
}
