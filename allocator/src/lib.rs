//! Discovers DMA-BUF heaps and allocates buffers that several devices can share.
//!
//! A compositor or a client says which devices will touch a buffer (or hands
//! over linux-dmabuf v4 feedback), and this crate answers with a heap, a
//! format, a modifier and a layout, then allocates: one dma-buf fd, planes at
//! offsets. It knows nothing about compositors; Smithay appears only behind
//! the `smithay` feature.
//!
//! # Usage
//!
//! ```no_run
//! use heapland_allocator::{Discovery, DeviceNumber, Feedback, Request, Usage};
//! use drm_fourcc::DrmFourcc as Fourcc;
//! # fn main() -> Result<(), heapland_allocator::Error> {
//! // 1. What heaps does this system have? Never fails; empty on a host
//! //    without heaps, with a reason.
//! let discovery = Discovery::scan();
//! if let Some(reason) = discovery.empty_reason() {
//!     eprintln!("no heaps, falling back to shm: {reason}");
//! }
//!
//! // 2a. Negotiate from linux-dmabuf feedback (as a client would)...
//! # let feedback: Feedback = unimplemented!();
//! let request = Request::new(1920, 1080, vec![Fourcc::Xrgb8888], Usage { scanout: true, ..Default::default() });
//! let chosen = heapland_allocator::negotiate(&discovery, &feedback, &request)?;
//! println!("{} {:?} from {} (fell back past: {:?})", chosen.fourcc, chosen.modifier, chosen.heap.name, chosen.passed_over);
//!
//! // 2b. ...or just name the devices (as a compositor would).
//! let card = DeviceNumber::of_path("/dev/dri/card0".as_ref())?;
//! let devices = heapland_allocator::resolve_devices(&discovery, &[card])?;
//! let explained = heapland_allocator::explain_choice(&discovery, &devices, &[], Fourcc::Nv12, 1280, 720)?;
//!
//! // 3. Allocate: a bare dma-buf of the layout's size from the chosen heap.
//! let heap = explained.heap()?.open()?;
//! let fd = heap.allocate(explained.layout.alloc_size())?;
//! # Ok(()) }
//! ```
//!
//! With the `smithay` feature, step 3 is [`DmaHeapAllocator`], a
//! `smithay::backend::allocator::Allocator<Buffer = Dmabuf>` over one heap
//! for `Swapchain` and `DrmCompositor` (`explained.allocator()` makes one for
//! the chosen heap with the devices' alignments), [`CpuAccess`] brackets CPU
//! access to a `Dmabuf` with `DMA_BUF_IOCTL_SYNC`, and
//! [`HeapFramebufferExporter`] is the matching GBM-free
//! `ExportFramebuffer<Dmabuf>`. `DrmCompositor` needs Smithay's `backend_gbm`
//! feature, which this crate does not enable, so the sketch is not compiled
//! here; `compositor/src/backend/scanout/` is the real use:
//!
//! ```text
//! let allocator = explain_choice(&discovery, &devices, &[], Fourcc::Xrgb8888, w, h)?.allocator()?;
//! let compositor = DrmCompositor::new(output, surface, None, allocator,
//!     HeapFramebufferExporter::new(&drm_fd, import_node), [Fourcc::Xrgb8888], renderer_formats,
//!     cursor_size, None::<GbmDevice<DrmDeviceFd>>)?;
//! ```
//!
//! # Which heap, and why
//!
//! The kernel ranks the heaps that serve each device (`dma_heaps/0`, `1`,
//! ... in sysfs, see [`device`]), and the choice follows that order: for one
//! device, the first heap in its links that fits the buffer; for several,
//! the first heap in the first device's links that every other device also
//! links to and that fits. Heaps no device links to (`system` for devices
//! that do not link to it, udmabuf) are fallbacks after those.
//!
//! [`explain_choice`] is [`choose`] with its reasons: the verdict on every
//! heap ([`Ranking`]: chosen, outranked by a better-suited heap, or unfit
//! with what it lacks). `choose` and [`Explained::allocator`] decide from it,
//! so an explanation never disagrees with the choice. The `heapland-heaps`
//! command (feature `cli`) prints both for people and scripts:
//!
//! ```text
//! heapland-heaps                                   # every heap of the system
//! heapland-heaps for /dev/video0 /dev/dri/card0 --format NV12 --size 1920x1080
//! heapland-heaps --json                            # for scripts
//! ```
//!
//! Every heap also says whether its memory is charged to the allocating
//! process's memory cgroup ([`Accounting`]).
//!
//! # No heaps
//!
//! On a host without `/dev/dma_heap` and `/dev/udmabuf`, [`Discovery`] is
//! empty and [`explain_choice`] fails with [`Error::NoHeaps`] naming the
//! reason. This crate deliberately offers no memfd "fallback allocator": a
//! memfd is not a dma-buf, and pretending otherwise would let a buffer reach
//! a device that cannot import it. The compositor decides what to fall back to
//! (shm buffers, Smithay's dumb-buffer allocator on a KMS device).

#![warn(missing_docs)]

pub mod accounting;
pub mod buffer_name;
pub mod cma;
pub mod constraints;
#[cfg(feature = "smithay")]
pub mod cpu_access;
pub mod device;
pub mod discovery;
pub mod dma_heap;
#[cfg(feature = "smithay")]
pub mod dma_heap_allocator;
mod error;
#[cfg(feature = "client")]
pub mod feedback_client;
#[cfg(feature = "smithay")]
pub mod framebuffer;
#[cfg(feature = "client")]
pub mod heap_feedback_client;
pub mod layout;
pub mod modifier;
pub mod negotiation;
pub mod served;

pub use accounting::Accounting;
pub use constraints::{intersect, Constraints, Intersection, Ranked, Ranking, Unmet, Verdict};
#[cfg(feature = "smithay")]
pub use cpu_access::{CpuAccess, CpuAccessError};
pub use device::{DeviceInfo, DeviceNumber};
pub use discovery::{Discovery, HeapInfo, HeapKind, HeapProperties, ServedLink, Skipped, SysRoots};
pub use dma_heap::{DmaHeap, DmaHeapError};
#[cfg(feature = "smithay")]
pub use dma_heap_allocator::{DmaHeapAllocator, DmaHeapAllocatorError};
pub use drm_fourcc;
pub use error::{Error, Result};
#[cfg(feature = "smithay")]
pub use framebuffer::{FramebufferError, HeapFramebuffer, HeapFramebufferExporter};
pub use layout::{
    format_by_name, format_info, Alignment, FormatInfo, Layout, LayoutError, PlaneLayout,
};
pub use modifier::{linear_modifier, pick_modifier};
#[cfg(feature = "smithay")]
pub use negotiation::allocator_for;
pub use negotiation::{
    choose, explain_choice, negotiate, resolve_devices, Explained, Feedback, FormatEntry,
    Negotiated, Request, Tranche, Usage, WireTranche,
};
pub use served::{DeviceNode, ServedDevice};
/// The Smithay this crate was built against, so that users get matching types.
#[cfg(feature = "smithay")]
pub use smithay;
