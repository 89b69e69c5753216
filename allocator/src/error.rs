//! Errors of the allocator.
//!
//! Every variant names what it was working on (the heap, the device, the
//! constraint) so that a log line is enough to understand a failure without a
//! debugger: the whole point of this crate is to explain *why* no memory fits.

use std::{io, path::PathBuf};

use crate::device::DeviceNumber;

/// Everything that can go wrong while discovering, negotiating or allocating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sysfs or /dev file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A sysfs attribute of a heap held something that is not what the ABI
    /// (kernel/ABI.md) promises.
    #[error("heap {heap}: attribute {attribute} holds {value:?}, expected {expected}")]
    BadAttribute {
        /// The heap's name.
        heap: String,
        /// The attribute's file name, e.g. `dma_mask_bits`.
        attribute: &'static str,
        /// What was read (trimmed).
        value: String,
        /// What the ABI allows.
        expected: &'static str,
    },
    /// No sysfs device exists for a device number.
    #[error("device {device}: no sysfs device at {path}")]
    UnknownDevice {
        /// The device number.
        device: DeviceNumber,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// No heap satisfies the intersected constraints of the devices.
    #[error("{explanation}")]
    NoHeap {
        /// A sentence naming the devices and the constraints, and why each
        /// heap was rejected.
        explanation: String,
    },
    /// No heaps at all are available on this system.
    #[error("no DMA-BUF heaps available: {reason}")]
    NoHeaps {
        /// Why discovery found nothing.
        reason: String,
    },
    /// The buffer cannot be laid out (unknown format, zero or huge size).
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A heap could not be opened or could not allocate.
    #[error(transparent)]
    Heap(#[from] crate::dma_heap::DmaHeapError),
    /// The buffer is larger than a device or heap allows.
    #[error("{what}: {needed} exceeds the limit {limit} of {by}")]
    TooLarge {
        /// Which quantity (width, height, bytes).
        what: &'static str,
        /// The requested value.
        needed: u64,
        /// The limit.
        limit: u64,
        /// Who imposes the limit (a device or heap name).
        by: String,
    },
    /// No feedback tranche could be satisfied.
    #[error("negotiation failed: {}", reasons.join("; "))]
    Negotiation {
        /// One line per tranche explaining why it was skipped.
        reasons: Vec<String>,
    },
    /// None of the modifiers asked for can be produced (heaps produce
    /// LINEAR; INVALID is accepted as implicit).
    #[error(
        "format {fourcc}: heaps produce LINEAR buffers, none of {modifiers:?} is LINEAR or INVALID"
    )]
    UnsupportedModifiers {
        /// The format.
        fourcc: String,
        /// The modifiers asked for.
        modifiers: Vec<String>,
    },
    /// The linux-dmabuf feedback was malformed (bad sizes or indices).
    #[error("malformed dmabuf feedback: {0}")]
    BadFeedback(String),
    /// A system call on a heap, a dma-buf or a DRM device failed.
    #[error("{op} on {target}: {source}")]
    Io {
        /// The operation, e.g. `DMA_HEAP_IOCTL_ALLOC`.
        op: &'static str,
        /// The heap, buffer or device operated on.
        target: String,
        /// The errno.
        source: io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
