//! Allocation error paths that can be checked on a host without heaps (the
//! real allocations run in the guest: tests/src/guest/allocator.rs).

mod common;

use common::*;
use heapland_allocator::{DmaBuf, Error, Heap};

#[test]
fn a_node_that_is_not_a_heap_gives_a_named_error() {
    let t = guest_like();
    let d = t.discover();
    // The fake /dev node is a regular file: the ioctl fails with ENOTTY.
    let heap = Heap::open(d.heap("system-contiguous").unwrap()).unwrap();
    let err = heap.allocate(4096).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "DMA_HEAP_IOCTL_ALLOC",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("system-contiguous"), "{err}");
    // Zero and oversize requests fail before any ioctl.
    assert!(matches!(heap.allocate(0), Err(Error::InvalidSize { .. })));
    let err = heap.allocate(65 << 20).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allocation: 68157440 exceeds the limit 67108864 of system-contiguous"
    );
}

#[test]
fn missing_node_fails_to_open_with_its_path() {
    let t = guest_like();
    let d = t.discover();
    let info = d.heap("system").unwrap().clone();
    std::fs::remove_file(&info.dev_path).unwrap();
    let err = Heap::open(&info).unwrap_err();
    assert!(err.to_string().contains("dma_heap/system"), "{err}");
}

#[test]
fn cpu_access_to_a_non_dmabuf_fails_cleanly() {
    // A memfd maps fine but rejects DMA_BUF_IOCTL_SYNC and SET_NAME: the
    // guards must report that instead of handing out the bytes.
    let fd = rustix::fs::memfd_create("not-a-dmabuf", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    let buf = DmaBuf::from_fd(fd, 4096, "memfd".into());
    let err = buf.set_name("x").unwrap_err();
    assert!(
        err.to_string().starts_with("DMA_BUF_SET_NAME on memfd"),
        "{err}"
    );
    let mut map = buf.map().unwrap();
    assert_eq!(map.len(), 4096);
    let err = map.read().unwrap_err();
    assert!(
        err.to_string().starts_with("DMA_BUF_IOCTL_SYNC on memfd"),
        "{err}"
    );
    assert!(map.write().is_err());
}

#[cfg(feature = "smithay")]
mod smithay_feature {
    use super::*;
    use heapland_allocator::HeapAllocator;
    use smithay::backend::allocator::{Allocator, Fourcc, Modifier};

    #[test]
    fn heap_allocator_on_a_host_without_heaps_says_why() {
        let t = FakeTree::new();
        let err = HeapAllocator::new(t.discover(), &[VKMS]).unwrap_err();
        assert!(matches!(err, Error::NoHeaps { .. }), "{err}");
        assert!(
            err.to_string().contains("no DMA-BUF heaps available"),
            "{err}"
        );
    }

    #[test]
    fn heap_allocator_chooses_and_reports_errors() {
        let t = guest_like();
        let mut a = HeapAllocator::new(t.discover(), &[VKMS, VGEM]).unwrap();
        assert_eq!(a.devices().len(), 2);
        // vkms's first heap, which vgem links to too.
        assert_eq!(
            a.heap_for(1024, 768, Fourcc::Xrgb8888).unwrap(),
            "system-contiguous"
        );
        // Tiled modifiers only: refused with the reason.
        let err = a
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::I915_x_tiled])
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedModifiers { .. }), "{err}");
        // The fake node is no heap: the ioctl error names it.
        let err = a
            .create_buffer(64, 64, Fourcc::Xrgb8888, &[Modifier::Linear])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("DMA_HEAP_IOCTL_ALLOC on system-contiguous"),
            "{err}"
        );
        assert!(
            HeapAllocator::new(t.discover(), &[heapland_allocator::DeviceNumber::new(7, 7)])
                .is_err()
        );
    }
}
