//! [`DmaHeapAllocator`]: Smithay's `Allocator` over one DMA-BUF heap.
//!
//! Like `DumbAllocator`, it needs no GPU driver in userspace: buffers are
//! linear, every plane in one dma-buf at offsets [`Layout`] computes, and
//! the memory is whatever the heap gives. Which heap that should be (the one
//! every device touching the buffers can use) is a policy question this type
//! leaves to its caller: the heap is fixed when the allocator is made, so
//! every buffer of a swapchain comes from the same memory. For the same
//! reason it knows no device's limits (largest width, pitch): it checks the
//! heap's size limit, and the devices' are checked where the heap was
//! chosen (`explain_choice`) and, in the end, by the devices' drivers.
//!
//! ```no_run
//! use heapland_allocator::{DmaHeap, DmaHeapAllocator};
//! use smithay::backend::allocator::{Allocator, Fourcc, Modifier};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let heap = DmaHeap::open("/dev/dma_heap/system")?;
//! let mut allocator = DmaHeapAllocator::new(heap);
//! let buffer = allocator.create_buffer(1920, 1080, Fourcc::Nv12, &[Modifier::Linear])?;
//! # Ok(()) }
//! ```

use std::io;

use smithay::backend::allocator::{
    dmabuf::{Dmabuf, DmabufFlags},
    Allocator, Fourcc, Modifier,
};

use crate::{
    buffer_name,
    dma_heap::{DmaHeap, DmaHeapError},
    layout::{Alignment, Layout, LayoutError},
    modifier::linear_modifier,
};

/// Why a buffer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DmaHeapAllocatorError {
    /// Heaps give linear memory: the caller accepts neither `LINEAR` nor
    /// implicit (`INVALID`) modifiers.
    #[error("{fourcc}: heaps give linear buffers, and none of {modifiers:?} is LINEAR or INVALID")]
    UnsupportedModifiers {
        /// The format.
        fourcc: Fourcc,
        /// The modifiers the caller accepts.
        modifiers: Vec<Modifier>,
    },
    /// No layout for this format or size.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The heap could not give the memory.
    #[error(transparent)]
    Heap(#[from] DmaHeapError),
    /// The dma-buf fd could not be duplicated for a second plane.
    #[error("cannot duplicate the dma-buf fd for plane {plane}: {source}")]
    Dup {
        /// The plane.
        plane: usize,
        /// The errno.
        source: io::Error,
    },
}

/// Allocates Smithay [`Dmabuf`]s from one heap.
#[derive(Debug)]
pub struct DmaHeapAllocator {
    heap: DmaHeap,
    alignment: Alignment,
    label: String,
}

impl DmaHeapAllocator {
    /// An allocator of `heap`'s memory with the default alignments (pitches
    /// to 64 bytes, plane offsets to pages), which suit every scanout
    /// engine and GPU the defaults were checked against.
    pub fn new(heap: DmaHeap) -> Self {
        Self::with_alignment(heap, Alignment::default())
    }

    /// An allocator whose pitches and plane offsets are multiples of
    /// `alignment` (what the devices sharing the buffers need).
    pub fn with_alignment(heap: DmaHeap, alignment: Alignment) -> Self {
        Self {
            label: heap.name().to_owned(),
            heap,
            alignment,
        }
    }

    /// Buffers are named `<label> WxH FOURCC` in
    /// `/sys/kernel/debug/dma_buf/bufinfo`; the label is the heap's name
    /// unless set here.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The heap buffers come from.
    pub fn heap(&self) -> &DmaHeap {
        &self.heap
    }

    /// The alignments buffers honour.
    pub fn alignment(&self) -> Alignment {
        self.alignment
    }
}

impl Allocator for DmaHeapAllocator {
    type Buffer = Dmabuf;
    type Error = DmaHeapAllocatorError;

    fn create_buffer(
        &mut self,
        width: u32,
        height: u32,
        fourcc: Fourcc,
        modifiers: &[Modifier],
    ) -> Result<Dmabuf, DmaHeapAllocatorError> {
        let modifier = linear_modifier(modifiers).ok_or_else(|| {
            DmaHeapAllocatorError::UnsupportedModifiers {
                fourcc,
                modifiers: modifiers.to_vec(),
            }
        })?;
        let layout = Layout::new(fourcc, width, height, self.alignment)?;
        let size = layout.dmabuf_size()?;
        let fd = self.heap.allocate(layout.alloc_size())?;
        let name = format!("{} {width}x{height} {fourcc}", self.label);
        if let Err(err) = buffer_name::set_name(std::os::fd::AsFd::as_fd(&fd), &name) {
            tracing::debug!(%err, "could not name a buffer of heap {}", self.heap.name());
        }
        let mut builder = Dmabuf::builder(size, fourcc, modifier, DmabufFlags::empty());
        for (plane, at) in layout.planes.iter().enumerate() {
            let fd = fd
                .try_clone()
                .map_err(|source| DmaHeapAllocatorError::Dup { plane, source })?;
            builder.add_plane(fd, plane as u32, at.offset, at.stride);
        }
        // `build` fails only without planes, and every layout has one.
        builder
            .build()
            .ok_or(DmaHeapAllocatorError::Layout(LayoutError::InvalidSize {
                width,
                height,
                fourcc,
                reason: "a layout without planes",
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// udmabuf exists on few hosts; a memfd-backed heap needs none, so the
    /// allocator's own work (layout, planes, name) is tested on a fake heap
    /// whose `allocate` cannot run: an error must come back, not a panic.
    #[test]
    fn a_heap_that_cannot_allocate_is_an_error() {
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        let heap = DmaHeap::from_fd(file.into(), "null");
        let mut allocator = DmaHeapAllocator::new(heap);
        let err = allocator
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::Linear])
            .unwrap_err();
        assert!(matches!(
            err,
            DmaHeapAllocatorError::Heap(DmaHeapError::Allocate { .. })
        ));
        let err = allocator
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::I915_x_tiled])
            .unwrap_err();
        assert!(matches!(
            err,
            DmaHeapAllocatorError::UnsupportedModifiers { .. }
        ));
        let err = allocator
            .create_buffer(0, 64, Fourcc::Xrgb8888, &[Modifier::Linear])
            .unwrap_err();
        assert!(matches!(
            err,
            DmaHeapAllocatorError::Layout(LayoutError::InvalidSize { .. })
        ));
    }
}
