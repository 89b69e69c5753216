//! Allocating dma-bufs from a heap node (or from udmabuf).
//!
//! Heaps speak the standard `<linux/dma-heap.h>` uapi whether they are the
//! kernel's or `device_heap.ko`'s; udmabuf wraps a sealed memfd.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use rustix::{
    fs::{Mode, OFlags},
    ioctl::{self, opcode, Ioctl, IoctlOutput, Opcode, Updater},
};

use crate::{
    buffer::DmaBuf,
    discovery::{HeapInfo, HeapKind, HeapProperties},
    Error, Result,
};

/// `struct dma_heap_allocation_data` of `<linux/dma-heap.h>`.
#[repr(C)]
#[derive(Debug, Default)]
struct DmaHeapAllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

const DMA_HEAP_IOCTL_ALLOC: Opcode = opcode::read_write::<DmaHeapAllocationData>(b'H', 0);

/// `struct udmabuf_create` of `<linux/udmabuf.h>`.
#[repr(C)]
#[derive(Debug)]
struct UdmabufCreate {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

const UDMABUF_FLAGS_CLOEXEC: u32 = 0x01;
const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);

/// UDMABUF_CREATE returns the new fd as the ioctl's result.
struct UdmabufCreateIoctl(UdmabufCreate);

// SAFETY: the opcode and argument match <linux/udmabuf.h>; the kernel only
// reads the struct, and the return value is a new fd we take ownership of.
unsafe impl Ioctl for UdmabufCreateIoctl {
    type Output = OwnedFd;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        UDMABUF_CREATE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (&mut self.0 as *mut UdmabufCreate).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<OwnedFd> {
        // SAFETY: on success the ioctl returns a fresh fd owned by us.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}

/// An open heap, ready to allocate.
#[derive(Debug)]
pub struct Heap {
    info: HeapInfo,
    fd: OwnedFd,
}

impl Heap {
    /// Opens the heap's node (`O_RDWR | O_CLOEXEC`).
    pub fn open(info: &HeapInfo) -> Result<Self> {
        let fd = rustix::fs::open(
            &info.dev_path,
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", info.dev_path.display().to_string(), e))?;
        Ok(Self {
            info: info.clone(),
            fd,
        })
    }

    /// A heap handed over already open, e.g. by a compositor through the
    /// heap protocol (see [`crate::feedback_client`]): its node and device
    /// are unknown to the holder, only its name, whether it is contiguous
    /// and its size limit (`None`: no known limit).
    pub fn from_fd(
        fd: OwnedFd,
        name: String,
        contiguous: bool,
        max_alloc_bytes: Option<u64>,
    ) -> Self {
        let properties = HeapProperties {
            contiguous,
            max_alloc_bytes: max_alloc_bytes.unwrap_or(u64::MAX),
            ..HeapProperties::UNKNOWN
        };
        Self {
            info: HeapInfo {
                name,
                kind: HeapKind::Other,
                dev_path: PathBuf::new(),
                served: Vec::new(),
                properties,
                contig_source: None,
            },
            fd,
        }
    }

    /// What was discovered about this heap.
    pub fn info(&self) -> &HeapInfo {
        &self.info
    }

    /// Allocates a dma-buf of at least `len` bytes (heaps round up to pages).
    /// The fd is `O_RDWR | O_CLOEXEC` so that it can be mapped writable and
    /// does not leak into children.
    pub fn allocate(&self, len: u64) -> Result<DmaBuf> {
        if len == 0 {
            return Err(Error::InvalidSize {
                width: 0,
                height: 0,
                fourcc: "-".into(),
                reason: "a zero-length allocation",
            });
        }
        if len > self.info.properties.max_alloc_bytes {
            return Err(Error::TooLarge {
                what: "allocation",
                needed: len,
                limit: self.info.properties.max_alloc_bytes,
                by: self.info.name.clone(),
            });
        }
        let fd = match self.info.kind {
            HeapKind::Device | HeapKind::System | HeapKind::Cma | HeapKind::Other => {
                self.heap_alloc(len)?
            }
            HeapKind::Udmabuf => self.udmabuf_alloc(len)?,
        };
        Ok(DmaBuf::from_fd(fd, len, self.info.name.clone()))
    }

    fn heap_alloc(&self, len: u64) -> Result<OwnedFd> {
        let mut data = DmaHeapAllocationData {
            len,
            fd: 0,
            fd_flags: (OFlags::RDWR | OFlags::CLOEXEC).bits(),
            heap_flags: 0,
        };
        // SAFETY: DMA_HEAP_IOCTL_ALLOC takes a `struct dma_heap_allocation_data`
        // which the kernel reads and fills in.
        unsafe { ioctl::ioctl(&self.fd, Updater::<DMA_HEAP_IOCTL_ALLOC, _>::new(&mut data)) }
            .map_err(|e| Error::io("DMA_HEAP_IOCTL_ALLOC", self.info.name.clone(), e))?;
        // SAFETY: on success the kernel put a new fd, owned by us, in `fd`.
        Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
    }

    fn udmabuf_alloc(&self, len: u64) -> Result<OwnedFd> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let len = len.div_ceil(4096) * 4096;
        let target = || self.info.name.clone();
        let memfd = rustix::fs::memfd_create(
            "heapland-udmabuf",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| Error::io("memfd_create", target(), e))?;
        rustix::fs::ftruncate(&memfd, len).map_err(|e| Error::io("ftruncate", target(), e))?;
        // udmabuf refuses a memfd that could shrink under the device.
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK)
            .map_err(|e| Error::io("F_ADD_SEALS", target(), e))?;
        let create = UdmabufCreateIoctl(UdmabufCreate {
            memfd: memfd.as_raw_fd() as u32,
            flags: UDMABUF_FLAGS_CLOEXEC,
            offset: 0,
            size: len,
        });
        // SAFETY: see `UdmabufCreateIoctl`.
        unsafe { ioctl::ioctl(&self.fd, create) }
            .map_err(|e| Error::io("UDMABUF_CREATE", target(), e))
    }
}
