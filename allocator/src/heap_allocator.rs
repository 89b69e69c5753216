//! [`HeapAllocator`]: Smithay's `Allocator` over DMA-BUF heaps.
//!
//! It goes wherever `GbmAllocator` goes (`Swapchain`, `DrmCompositor`), but
//! needs no GPU driver in userspace: the memory comes from the heap that
//! satisfies every device the allocator was made for, laid out linearly with
//! all planes in one dma-buf.

use std::collections::HashMap;

use smithay::backend::allocator::{
    dmabuf::{Dmabuf, DmabufFlags},
    Allocator, Fourcc, Modifier,
};

use crate::{
    constraints::Constraints,
    device::{DeviceInfo, DeviceNumber},
    discovery::Discovery,
    heap::Heap,
    modifier::pick_modifier,
    negotiation::{choose, resolve_devices},
    Error, Result,
};

/// Allocates Smithay [`Dmabuf`]s from the heap that fits a set of devices.
#[derive(Debug)]
pub struct HeapAllocator {
    discovery: Discovery,
    devices: Vec<DeviceInfo>,
    extra: Vec<Constraints>,
    open: HashMap<String, Heap>,
}

impl HeapAllocator {
    /// An allocator for buffers touched by `devices` (DRM or V4L2 device
    /// numbers, e.g. the scanout device and the render node). Fails if
    /// discovery found no heap at all (the error says why, so that the
    /// caller can fall back to other memory) or a device is unknown.
    pub fn new(discovery: Discovery, devices: &[DeviceNumber]) -> Result<Self> {
        if let Some(reason) = discovery.empty_reason() {
            return Err(Error::NoHeaps { reason });
        }
        let devices = resolve_devices(&discovery, devices)?;
        Ok(Self {
            discovery,
            devices,
            extra: Vec::new(),
            open: HashMap::new(),
        })
    }

    /// Adds needs that sysfs cannot tell (pitch alignment, size limits).
    pub fn with_constraints(mut self, extra: Vec<Constraints>) -> Self {
        self.extra = extra;
        self
    }

    /// The devices this allocator serves.
    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// The heaps found.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// The name of the heap a buffer of this format and size would come
    /// from, without allocating.
    pub fn heap_for(&self, width: u32, height: u32, fourcc: Fourcc) -> Result<String> {
        let (heap, _, _) = choose(
            &self.discovery,
            &self.devices,
            &self.extra,
            fourcc,
            width,
            height,
        )?;
        Ok(heap.name)
    }

    /// Allocates a buffer and returns it with the name of its heap.
    pub fn allocate(
        &mut self,
        width: u32,
        height: u32,
        fourcc: Fourcc,
        modifiers: &[Modifier],
    ) -> Result<(Dmabuf, String)> {
        let modifier = pick_modifier(fourcc, modifiers)?;
        let (info, layout, _) = choose(
            &self.discovery,
            &self.devices,
            &self.extra,
            fourcc,
            width,
            height,
        )?;
        let size = (
            i32::try_from(width).map_err(|_| too_big(width, height, fourcc))?,
            i32::try_from(height).map_err(|_| too_big(width, height, fourcc))?,
        );
        if !self.open.contains_key(&info.name) {
            let heap = Heap::open(&info)?;
            self.open.insert(info.name.clone(), heap);
        }
        let heap = &self.open[&info.name];
        let buffer = crate::PixelBuffer::allocate(heap, layout, modifier)?;
        let mut builder = Dmabuf::builder(size, fourcc, modifier, DmabufFlags::empty());
        for (idx, plane) in buffer.layout.planes.iter().enumerate() {
            let fd = buffer
                .dmabuf
                .fd()
                .try_clone_to_owned()
                .map_err(|source| Error::Io {
                    op: "dup",
                    target: info.name.clone(),
                    source,
                })?;
            builder.add_plane(fd, idx as u32, plane.offset, plane.stride);
        }
        let dmabuf = builder
            .build()
            .ok_or_else(|| too_big(width, height, fourcc))?;
        Ok((dmabuf, info.name))
    }
}

fn too_big(width: u32, height: u32, fourcc: Fourcc) -> Error {
    Error::InvalidSize {
        width,
        height,
        fourcc: fourcc.to_string(),
        reason: "does not fit a Dmabuf",
    }
}

impl Allocator for HeapAllocator {
    type Buffer = Dmabuf;
    type Error = Error;

    fn create_buffer(
        &mut self,
        width: u32,
        height: u32,
        fourcc: Fourcc,
        modifiers: &[Modifier],
    ) -> Result<Dmabuf> {
        self.allocate(width, height, fourcc, modifiers)
            .map(|(b, _)| b)
    }
}
