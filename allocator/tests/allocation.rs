//! Allocation error paths that can be checked on a host without heaps (the
//! real allocations run in the guest: tests/src/guest/allocator.rs).

mod common;

use common::*;
use heapland_allocator::{DmaHeapError, Error};

#[test]
fn a_node_that_is_not_a_heap_gives_a_named_error() {
    let t = guest_like();
    let d = t.discover();
    // The fake /dev node is a regular file: the ioctl fails with ENOTTY.
    let heap = d.heap("system-contiguous").unwrap().open().unwrap();
    assert_eq!(heap.name(), "system-contiguous");
    let err = heap.allocate(4096).unwrap_err();
    assert!(
        matches!(
            err,
            DmaHeapError::Allocate {
                op: "DMA_HEAP_IOCTL_ALLOC",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("system-contiguous"), "{err}");
    // Zero and oversize requests fail before any ioctl.
    assert!(matches!(
        heap.allocate(0),
        Err(DmaHeapError::ZeroLength { .. })
    ));
    let err = heap.allocate(65 << 20).unwrap_err();
    assert_eq!(
        err.to_string(),
        "68157440 bytes exceed the 67108864-byte allocation limit of heap system-contiguous"
    );
}

#[test]
fn missing_node_fails_to_open_with_its_path() {
    let t = guest_like();
    let d = t.discover();
    let info = d.heap("system").unwrap().clone();
    std::fs::remove_file(&info.dev_path).unwrap();
    let err = info.open().unwrap_err();
    assert!(err.to_string().contains("dma_heap/system"), "{err}");
    // Through the crate's error, the message is the same.
    let err = Error::from(err);
    assert!(err.to_string().contains("dma_heap/system"), "{err}");
}

#[test]
fn naming_a_non_dmabuf_fails_cleanly() {
    use std::os::fd::AsFd;
    let fd = rustix::fs::memfd_create("not-a-dmabuf", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    assert!(heapland_allocator::buffer_name::set_name(fd.as_fd(), "x").is_err());
    let err = heapland_allocator::buffer_name::set_name(fd.as_fd(), "a\0b").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[cfg(feature = "smithay")]
mod smithay_feature {
    use super::*;
    use heapland_allocator::{
        explain_choice, resolve_devices, CpuAccess, DmaHeapAllocatorError, LayoutError,
    };
    use smithay::backend::allocator::{
        dmabuf::{Dmabuf, DmabufFlags},
        Allocator, Fourcc, Modifier,
    };

    #[test]
    fn explain_choice_on_a_host_without_heaps_says_why() {
        let t = FakeTree::new();
        let d = t.discover();
        let err = explain_choice(&d, &[], &[], Fourcc::Xrgb8888, 64, 64).unwrap_err();
        assert!(matches!(err, Error::NoHeaps { .. }), "{err}");
        assert!(
            err.to_string().contains("no DMA-BUF heaps available"),
            "{err}"
        );
    }

    #[test]
    fn the_chosen_heap_is_the_allocators_for_every_buffer() {
        let t = guest_like();
        let d = t.discover();
        let devices = resolve_devices(&d, &[VKMS, VGEM]).unwrap();
        let explained = explain_choice(&d, &devices, &[], Fourcc::Xrgb8888, 1024, 768).unwrap();
        // vkms's first heap, which vgem links to too.
        let mut a = explained.allocator().unwrap();
        assert_eq!(a.heap().name(), "system-contiguous");
        assert_eq!(a.heap().max_len(), Some(64 << 20));
        assert_eq!(a.alignment().pitch, explained.intersection.pitch_alignment);
        // Tiled modifiers only: refused with the reason.
        let err = a
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::I915_x_tiled])
            .unwrap_err();
        assert!(
            matches!(err, DmaHeapAllocatorError::UnsupportedModifiers { .. }),
            "{err}"
        );
        // No layout for C8, and none for a zero size.
        assert!(matches!(
            a.create_buffer(64, 64, Fourcc::C8, &[Modifier::Linear]),
            Err(DmaHeapAllocatorError::Layout(
                LayoutError::UnsupportedFormat(Fourcc::C8)
            ))
        ));
        // The fake node is no heap: the ioctl error names it.
        let err = a
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::Linear])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("DMA_HEAP_IOCTL_ALLOC on heap system-contiguous"),
            "{err}"
        );
        // A bigger buffer than the heap's limit never reaches the kernel.
        let err = a
            .create_buffer(8192, 4096, Fourcc::Xrgb8888, &[Modifier::Linear])
            .unwrap_err();
        assert!(
            matches!(
                err,
                DmaHeapAllocatorError::Heap(DmaHeapError::TooLarge { .. })
            ),
            "{err}"
        );
        assert!(resolve_devices(&d, &[heapland_allocator::DeviceNumber::new(7, 7)]).is_err());
    }

    #[test]
    fn cpu_access_to_a_non_dmabuf_fails_cleanly() {
        // A memfd maps fine but rejects DMA_BUF_IOCTL_SYNC: the access must
        // report that instead of handing out the bytes.
        let fd = rustix::fs::memfd_create("not-a-dmabuf", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        let mut builder = Dmabuf::builder(
            (16, 16),
            Fourcc::Xrgb8888,
            Modifier::Linear,
            DmabufFlags::empty(),
        );
        builder.add_plane(fd, 0, 0, 64);
        let dmabuf = builder.build().unwrap();
        // SAFETY: the memfd is this test's alone.
        let err = unsafe { CpuAccess::read(&dmabuf, 0) }.unwrap_err();
        assert!(err.to_string().contains("start CPU access"), "{err}");
        assert!(unsafe { CpuAccess::write(&dmabuf, 0) }.is_err());
        let err = unsafe { CpuAccess::read(&dmabuf, 1) }.unwrap_err();
        assert!(err.to_string().contains("map plane 1"), "{err}");
    }
}
