//! Naming dma-bufs, so that `/sys/kernel/debug/dma_buf/bufinfo` tells a
//! person what each buffer is and who made it.

use std::{ffi::CString, io, os::fd::BorrowedFd};

use rustix::ioctl::{self, opcode, IntegerSetter, Opcode};

/// `DMA_BUF_SET_NAME_B`: `_IOW('b', 1, __u64)`, the argument is the string's
/// address itself.
const DMA_BUF_SET_NAME: Opcode = opcode::write::<u64>(b'b', 1);

/// `DMA_BUF_NAME_LEN`, including the terminating NUL.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// Names the dma-buf `fd`. Names are cut to 31 bytes; a NUL inside is
/// `InvalidInput`. A name is a debugging aid: callers should log a failure,
/// not fail with it (kernels before 5.8 have no `DMA_BUF_SET_NAME`).
pub fn set_name(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.truncate(DMA_BUF_NAME_LEN - 1);
    let c = CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    // SAFETY: DMA_BUF_SET_NAME reads a NUL-terminated string at the address
    // passed as the argument; `c` outlives the call.
    unsafe {
        ioctl::ioctl(
            fd,
            IntegerSetter::<DMA_BUF_SET_NAME>::new_pointer(c.as_ptr() as *mut _),
        )
    }
    .map_err(io::Error::from)
}
