//! [`DmaHeap`]: a DMA-BUF heap opened for allocation.
//!
//! Heaps speak the standard `<linux/dma-heap.h>` uapi whether they are the
//! kernel's (`/dev/dma_heap/<name>`) or `device_heap.ko`'s; udmabuf
//! (`/dev/udmabuf`) wraps a sealed memfd and is offered through the same
//! type, since to its users it is one more source of dma-bufs. A heap hands
//! out bare dma-buf fds of a length; pixel layouts are
//! [`DmaHeapAllocator`](crate::DmaHeapAllocator)'s business.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use rustix::{
    fs::{Mode, OFlags},
    ioctl::{self, opcode, Ioctl, IoctlOutput, Opcode, Updater},
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

/// Why a heap could not be opened or could not allocate.
#[derive(Debug, thiserror::Error)]
pub enum DmaHeapError {
    /// The heap's node could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The node.
        path: PathBuf,
        /// The errno.
        source: io::Error,
    },
    /// A zero-length allocation was asked for.
    #[error("a zero-length allocation from heap {heap}")]
    ZeroLength {
        /// The heap's name.
        heap: String,
    },
    /// The allocation is larger than the heap can ever give.
    #[error("{len} bytes exceed the {limit}-byte allocation limit of heap {heap}")]
    TooLarge {
        /// The heap's name.
        heap: String,
        /// The length asked for.
        len: u64,
        /// The heap's limit.
        limit: u64,
    },
    /// The kernel refused the allocation (`ENOMEM`, a cgroup or per-user
    /// limit, a removed device: `ENODEV`).
    #[error("{op} on heap {heap}: {source}")]
    Allocate {
        /// The system call, e.g. `DMA_HEAP_IOCTL_ALLOC`.
        op: &'static str,
        /// The heap's name.
        heap: String,
        /// The errno.
        source: io::Error,
    },
}

/// How a [`DmaHeap`] makes its dma-bufs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `DMA_HEAP_IOCTL_ALLOC`.
    Heap,
    /// `UDMABUF_CREATE` over a sealed memfd.
    Udmabuf,
}

/// An open DMA-BUF heap, ready to allocate.
#[derive(Debug)]
pub struct DmaHeap {
    fd: OwnedFd,
    name: String,
    source: Source,
    max_len: Option<u64>,
}

impl DmaHeap {
    /// Opens a heap's node (`/dev/dma_heap/<name>`, `O_RDWR | O_CLOEXEC`).
    /// Its name is the node's file name.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DmaHeapError> {
        Self::open_as(path.as_ref(), Source::Heap)
    }

    /// Opens udmabuf (`/dev/udmabuf`): memfd-backed dma-bufs, offered
    /// through the same interface as a heap.
    pub fn open_udmabuf(path: impl AsRef<Path>) -> Result<Self, DmaHeapError> {
        Self::open_as(path.as_ref(), Source::Udmabuf)
    }

    fn open_as(path: &Path, source: Source) -> Result<Self, DmaHeapError> {
        let fd =
            rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                DmaHeapError::Open {
                    path: path.to_owned(),
                    source: e.into(),
                }
            })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(Self {
            fd,
            name,
            source,
            max_len: None,
        })
    }

    /// A heap handed over already open, e.g. by a compositor through the
    /// heap protocol (see [`crate::feedback_client`]), under the name it
    /// was given.
    pub fn from_fd(fd: OwnedFd, name: impl Into<String>) -> Self {
        Self {
            fd,
            name: name.into(),
            source: Source::Heap,
            max_len: None,
        }
    }

    /// Refuses allocations above `max_len` bytes before asking the kernel,
    /// for a heap known to have a limit (a contiguous heap's largest block,
    /// a CMA area's size).
    pub fn with_max_len(mut self, max_len: Option<u64>) -> Self {
        self.max_len = max_len;
        self
    }

    /// The same heap under another name (discovery's, which for a device
    /// heap is not always its node's file name).
    pub(crate) fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The heap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest allocation this heap was said to give, if limited.
    pub fn max_len(&self) -> Option<u64> {
        self.max_len
    }

    /// Allocates a dma-buf of at least `len` bytes (heaps round up to
    /// pages). The fd is `O_RDWR | O_CLOEXEC` so that it can be mapped
    /// writable and does not leak into children.
    pub fn allocate(&self, len: u64) -> Result<OwnedFd, DmaHeapError> {
        if len == 0 {
            return Err(DmaHeapError::ZeroLength {
                heap: self.name.clone(),
            });
        }
        if let Some(limit) = self.max_len.filter(|&limit| len > limit) {
            return Err(DmaHeapError::TooLarge {
                heap: self.name.clone(),
                len,
                limit,
            });
        }
        match self.source {
            Source::Heap => self.heap_alloc(len),
            Source::Udmabuf => self.udmabuf_alloc(len),
        }
    }

    fn failed(&self, op: &'static str) -> impl Fn(rustix::io::Errno) -> DmaHeapError + '_ {
        move |e| DmaHeapError::Allocate {
            op,
            heap: self.name.clone(),
            source: e.into(),
        }
    }

    fn heap_alloc(&self, len: u64) -> Result<OwnedFd, DmaHeapError> {
        let mut data = DmaHeapAllocationData {
            len,
            fd: 0,
            fd_flags: (OFlags::RDWR | OFlags::CLOEXEC).bits(),
            heap_flags: 0,
        };
        // SAFETY: DMA_HEAP_IOCTL_ALLOC takes a `struct dma_heap_allocation_data`
        // which the kernel reads and fills in.
        unsafe { ioctl::ioctl(&self.fd, Updater::<DMA_HEAP_IOCTL_ALLOC, _>::new(&mut data)) }
            .map_err(self.failed("DMA_HEAP_IOCTL_ALLOC"))?;
        // SAFETY: on success the kernel put a new fd, owned by us, in `fd`.
        Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
    }

    fn udmabuf_alloc(&self, len: u64) -> Result<OwnedFd, DmaHeapError> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let page = rustix::param::page_size() as u64;
        let len = len.div_ceil(page) * page;
        let memfd = rustix::fs::memfd_create(
            "heapland-udmabuf",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(self.failed("memfd_create"))?;
        rustix::fs::ftruncate(&memfd, len).map_err(self.failed("ftruncate"))?;
        // udmabuf refuses a memfd that could shrink under the device.
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK)
            .map_err(self.failed("F_ADD_SEALS"))?;
        let create = UdmabufCreateIoctl(UdmabufCreate {
            memfd: memfd.as_raw_fd() as u32,
            flags: UDMABUF_FLAGS_CLOEXEC,
            offset: 0,
            size: len,
        });
        // SAFETY: see `UdmabufCreateIoctl`.
        unsafe { ioctl::ioctl(&self.fd, create) }.map_err(self.failed("UDMABUF_CREATE"))
    }
}
