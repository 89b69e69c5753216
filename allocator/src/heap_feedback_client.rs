//! The client side of `xx_dmabuf_heaps_v2`: joins one linux-dmabuf
//! feedback object (`zwp_linux_dmabuf_feedback_v1`, version 4 to 6) and the
//! heap feedback object extending it (`xx_dmabuf_heap_feedback_v2`) into a
//! [`JoinedFeedback`]: tranches with their formats, devices, layout needs
//! and heap.
//!
//! A v2 heap batch names the linux-dmabuf feedback it describes by number
//! (`done(dmabuf_done)`, counting that object's `done` events from 1), so
//! the two objects may sit on different event queues and their batches may
//! arrive in either order: the collector keeps each side until the other
//! side's batch of the same number is there. Only the newest linux-dmabuf
//! feedback is joined; a heap batch for an older one is dropped, because
//! the compositor sends one for the newer feedback too. A heap batch that
//! does not describe its feedback (tranche count, a heap never announced
//! or already removed, a tranche not listing its target or the compositing
//! device) is reported, not paired.
//!
//! Heaps are announced once, as `xx_dmabuf_heap_v2` objects, and tranches
//! refer to them; the collector keeps each announced heap's fd, and every
//! [`JoinedFeedback`] owns a duplicate of it, so a client may keep or drop
//! joined feedback as it likes.
//!
//! ```no_run
//! # use heapland_allocator::heap_feedback_client::{HeapEvent, HeapFeedbackCollector};
//! let mut collector = HeapFeedbackCollector::new();
//! # let (dmabuf_event, heap_event) = todo!();
//! // In the Dispatch impl of the linux-dmabuf feedback object:
//! collector.dmabuf_event(dmabuf_event).unwrap();
//! // In that of the heap feedback object (and heap_removed in that of
//! // xx_dmabuf_heap_v2):
//! if let Some(event) = HeapEvent::from_wire(heap_event) {
//!     collector.heap_event(event).unwrap();
//! }
//! if let Some(joined) = collector.take() {
//!     let joined = joined.expect("a compositor that keeps its batches in step");
//!     let first_heap = joined.tranches.iter().find_map(|t| t.heap.as_ref().ok());
//! }
//! ```

use std::{collections::HashMap, os::fd::OwnedFd};

use heapland_protocols::{
    client::xx_dmabuf_heap_feedback_v1::NoHeapReason,
    v2::client::xx_dmabuf_heap_feedback_v2::{self, HeapFlags},
};
use wayland_client::{Proxy, WEnum};
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1;

use crate::{
    device::DeviceNumber,
    feedback_client::{
        malformed, DmabufBatch, DmabufReader, FeedbackError, JoinedFeedback, JoinedTranche, NoHeap,
        TrancheHeap, TrancheLayout,
    },
};

const HEAPS: &str = "xx_dmabuf_heap_feedback_v2";

/// A heap feedback event, with heap objects named by their protocol id
/// (`Proxy::id().protocol_id()`), which is all the collector needs of them.
#[derive(Debug)]
pub enum HeapEvent {
    /// `heap`: a heap tranches may refer to from now on.
    Heap {
        /// The new `xx_dmabuf_heap_v2`'s protocol id.
        id: u32,
        /// The heap.
        fd: OwnedFd,
        /// Its name, for logs.
        name: String,
        /// `heap_flags` bits.
        flags: u32,
        /// Largest allocation in bytes, when known.
        max_size: Option<u64>,
    },
    /// `tranche_device`: a `dev_t` array.
    TrancheDevice(Vec<u8>),
    /// `tranche_layout`.
    TrancheLayout(TrancheLayout),
    /// `tranche_heap`: the protocol id of an announced heap.
    TrancheHeap(u32),
    /// `tranche_no_heap`.
    TrancheNoHeap(NoHeap),
    /// `tranche_done`.
    TrancheDone,
    /// `done`: the batch describes this `done` of the linux-dmabuf object.
    Done(u32),
}

impl HeapEvent {
    /// The event as the collector takes it; `None` for an event this
    /// version of the crate does not know.
    pub fn from_wire(event: xx_dmabuf_heap_feedback_v2::Event) -> Option<Self> {
        use xx_dmabuf_heap_feedback_v2::Event;
        Some(match event {
            Event::Heap {
                id,
                fd,
                name,
                flags,
                max_size_hi,
                max_size_lo,
            } => {
                let max = (u64::from(max_size_hi) << 32) | u64::from(max_size_lo);
                HeapEvent::Heap {
                    id: id.id().protocol_id(),
                    fd,
                    name,
                    flags: match flags {
                        WEnum::Value(f) => f.bits(),
                        WEnum::Unknown(raw) => raw,
                    },
                    max_size: (max != 0).then_some(max),
                }
            }
            Event::TrancheDevice { device } => HeapEvent::TrancheDevice(device),
            Event::TrancheLayout {
                pitch_alignment,
                offset_alignment,
                base_alignment,
            } => HeapEvent::TrancheLayout(TrancheLayout {
                pitch_alignment,
                offset_alignment,
                base_alignment,
            }),
            Event::TrancheHeap { heap } => HeapEvent::TrancheHeap(heap.id().protocol_id()),
            Event::TrancheNoHeap { reason, message } => HeapEvent::TrancheNoHeap(NoHeap {
                // v1 and v2 share the reasons and their values.
                reason: NoHeapReason::try_from(u32::from(reason)).ok(),
                message,
            }),
            Event::TrancheDone => HeapEvent::TrancheDone,
            Event::Done { dmabuf_done } => HeapEvent::Done(dmabuf_done),
            _ => return None,
        })
    }
}

/// One announced heap.
#[derive(Debug)]
struct Announced {
    /// `None` once `removed` came: the client may close it then.
    fd: Option<OwnedFd>,
    name: String,
    flags: HeapFlags,
    max_size: Option<u64>,
}

/// One heap tranche as received.
#[derive(Debug, Default)]
struct HeapTranche {
    devices: Vec<DeviceNumber>,
    layout: Option<TrancheLayout>,
    /// The heap's protocol id, or why there is none.
    heap: Option<Result<u32, NoHeap>>,
}

/// One tranche of a complete heap batch, its heap resolved when the batch
/// ended (a later `removed`, or a protocol id used again for another heap,
/// does not change what the batch said).
#[derive(Debug)]
struct BatchTranche {
    devices: Vec<DeviceNumber>,
    layout: TrancheLayout,
    heap: Result<TrancheHeap, NoHeap>,
}

/// Joins the events of one linux-dmabuf feedback object and of the heap
/// feedback object extending it (module docs). Feed every event of both;
/// after each, [`HeapFeedbackCollector::take`] returns the joined feedback
/// once a heap batch and the linux-dmabuf feedback it names are complete.
#[derive(Debug, Default)]
pub struct HeapFeedbackCollector {
    dmabuf_reader: DmabufReader,
    /// `done` events of the linux-dmabuf object so far.
    dmabuf_dones: u32,
    /// The newest complete linux-dmabuf batch and its number.
    dmabuf: Option<(u32, DmabufBatch)>,
    heaps: HashMap<u32, Announced>,
    current: Option<HeapTranche>,
    pending: Vec<HeapTranche>,
    /// Complete heap batches for linux-dmabuf feedback not received yet.
    waiting: Vec<(u32, Vec<BatchTranche>)>,
    ready: Option<Result<JoinedFeedback, FeedbackError>>,
}

impl HeapFeedbackCollector {
    /// A collector for a linux-dmabuf feedback object and its heap
    /// feedback object, both just created.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest joined feedback since the last call, or why the last
    /// heap batch could not be joined.
    pub fn take(&mut self) -> Option<Result<JoinedFeedback, FeedbackError>> {
        self.ready.take()
    }

    /// Feeds one linux-dmabuf feedback event.
    pub fn dmabuf_event(
        &mut self,
        event: zwp_linux_dmabuf_feedback_v1::Event,
    ) -> Result<(), FeedbackError> {
        let done = matches!(event, zwp_linux_dmabuf_feedback_v1::Event::Done);
        if done {
            // A malformed batch still counts: the compositor numbers dones.
            self.dmabuf_dones += 1;
        }
        let Some(batch) = self.dmabuf_reader.event(event)? else {
            return Ok(());
        };
        let number = self.dmabuf_dones;
        self.dmabuf = Some((number, batch));
        // A heap batch for older feedback is superseded by the one for this.
        self.waiting.retain(|(n, _)| *n >= number);
        if let Some(i) = self.waiting.iter().position(|(n, _)| *n == number) {
            let (_, tranches) = self.waiting.remove(i);
            self.join(number, tranches);
        }
        Ok(())
    }

    /// Feeds one heap feedback event.
    pub fn heap_event(&mut self, event: HeapEvent) -> Result<(), FeedbackError> {
        let outside = |what: &str| malformed(HEAPS, format!("{what} outside a tranche"));
        match event {
            HeapEvent::Heap {
                id,
                fd,
                name,
                flags,
                max_size,
            } => {
                let heap = Announced {
                    fd: Some(fd),
                    name,
                    flags: HeapFlags::from_bits_truncate(flags),
                    max_size,
                };
                if self
                    .heaps
                    .insert(id, heap)
                    .is_some_and(|old| old.fd.is_some())
                {
                    return Err(malformed(HEAPS, format!("heap {id} announced twice")));
                }
            }
            HeapEvent::TrancheDevice(device) => {
                let number = DeviceNumber::from_feedback_bytes(&device)
                    .map_err(|e| malformed(HEAPS, e.to_string()))?;
                let t = self.tranche();
                if t.layout.is_some() || t.heap.is_some() {
                    return Err(malformed(HEAPS, "tranche_device after tranche_layout"));
                }
                t.devices.push(number);
            }
            HeapEvent::TrancheLayout(layout) => {
                let t = self.tranche();
                if t.layout.is_some() || t.heap.is_some() {
                    return Err(malformed(
                        HEAPS,
                        "tranche_layout twice, or after the tranche's heap",
                    ));
                }
                t.layout = Some(layout);
            }
            HeapEvent::TrancheHeap(id) => self.heap_part(Ok(id))?,
            HeapEvent::TrancheNoHeap(no_heap) => {
                if no_heap.message.is_empty() {
                    return Err(malformed(HEAPS, "tranche_no_heap without a message"));
                }
                self.heap_part(Err(no_heap))?;
            }
            HeapEvent::TrancheDone => {
                let t = self.current.take().ok_or_else(|| outside("tranche_done"))?;
                if t.heap.is_none() || t.layout.is_none() {
                    return Err(malformed(
                        HEAPS,
                        "tranche_done before tranche_layout and tranche_heap or tranche_no_heap",
                    ));
                }
                self.pending.push(t);
            }
            HeapEvent::Done(number) => {
                let tranches = std::mem::take(&mut self.pending);
                if self.current.take().is_some() {
                    return Err(malformed(HEAPS, "done inside a tranche"));
                }
                if number == 0 {
                    return Err(malformed(HEAPS, "done(0): dmabuf_done counts from 1"));
                }
                let tranches = match self.resolve(tranches) {
                    Ok(t) => t,
                    Err(err) => {
                        self.ready = Some(Err(err));
                        return Ok(());
                    }
                };
                let newest = self.dmabuf.as_ref().map(|(n, _)| *n);
                if number > self.dmabuf_dones {
                    // Its linux-dmabuf feedback is still to come; a later
                    // batch for the same feedback replaces this one.
                    self.waiting.retain(|(n, _)| *n != number);
                    self.waiting.push((number, tranches));
                } else if Some(number) == newest {
                    self.join(number, tranches);
                }
                // Else: older feedback, superseded (module docs).
            }
        }
        Ok(())
    }

    /// Records `xx_dmabuf_heap_v2.removed` for the heap of protocol id
    /// `id`: no later batch may refer to it, and its fd is closed here.
    /// Joined feedback that holds a duplicate keeps it; allocations through
    /// it fail.
    pub fn heap_removed(&mut self, id: u32) {
        if let Some(heap) = self.heaps.get_mut(&id) {
            heap.fd = None;
        }
    }

    fn tranche(&mut self) -> &mut HeapTranche {
        self.current.get_or_insert_with(HeapTranche::default)
    }

    /// A tranche's heap part: once, after its layout.
    fn heap_part(&mut self, heap: Result<u32, NoHeap>) -> Result<(), FeedbackError> {
        let t = self.tranche();
        if t.heap.is_some() {
            return Err(malformed(
                HEAPS,
                "a second tranche_heap or tranche_no_heap in a tranche",
            ));
        }
        if t.layout.is_none() {
            return Err(malformed(HEAPS, "the tranche's heap before tranche_layout"));
        }
        t.heap = Some(heap);
        Ok(())
    }

    /// A complete batch's tranches with their heaps resolved now (layout
    /// and heap are there: `tranche_done` checked).
    fn resolve(&self, tranches: Vec<HeapTranche>) -> Result<Vec<BatchTranche>, FeedbackError> {
        tranches
            .into_iter()
            .map(|t| {
                let heap = match t.heap {
                    Some(Ok(id)) => Ok(self.heap(id)?),
                    Some(Err(no_heap)) => Err(no_heap),
                    None => Err(NoHeap {
                        reason: None,
                        message: "no heap event".into(),
                    }),
                };
                Ok(BatchTranche {
                    devices: t.devices,
                    layout: t.layout.unwrap_or(TrancheLayout {
                        pitch_alignment: 1,
                        offset_alignment: 1,
                        base_alignment: 1,
                    }),
                    heap,
                })
            })
            .collect()
    }

    /// Joins heap batch `tranches` with linux-dmabuf batch `number`.
    fn join(&mut self, number: u32, tranches: Vec<BatchTranche>) {
        let Some((_, batch)) = self.dmabuf.as_ref().filter(|(n, _)| *n == number) else {
            return;
        };
        self.ready = Some(joined(batch, tranches));
    }

    /// The announced heap `id`, with a duplicate of its fd.
    fn heap(&self, id: u32) -> Result<TrancheHeap, FeedbackError> {
        let heap = self
            .heaps
            .get(&id)
            .ok_or_else(|| malformed(HEAPS, format!("tranche_heap {id} was never announced")))?;
        let Some(fd) = heap.fd.as_ref() else {
            return Err(malformed(
                HEAPS,
                format!("tranche_heap {id} ({}) after its removed event", heap.name),
            ));
        };
        let fd = fd.try_clone().map_err(|source| FeedbackError::HeapFd {
            name: heap.name.clone(),
            source,
        })?;
        Ok(TrancheHeap {
            fd,
            name: heap.name.clone(),
            contiguous: heap.flags.contains(HeapFlags::Contiguous),
            accounted: heap.flags.contains(HeapFlags::Accounted),
            max_size: heap.max_size,
        })
    }
}

/// Heap batch `tranches` joined with the linux-dmabuf `batch` it describes,
/// or why they do not fit.
fn joined(
    batch: &DmabufBatch,
    tranches: Vec<BatchTranche>,
) -> Result<JoinedFeedback, FeedbackError> {
    let feedback = &batch.feedback;
    if feedback.tranches.len() != tranches.len() {
        return Err(FeedbackError::Mismatch(format!(
            "{} linux-dmabuf tranches, {} heap tranches",
            feedback.tranches.len(),
            tranches.len()
        )));
    }
    let mut joined = Vec::with_capacity(tranches.len());
    for (i, (d, h)) in feedback.tranches.iter().zip(tranches).enumerate() {
        for (what, device) in [
            ("its target", d.target_device),
            ("the compositing device", feedback.main_device),
        ] {
            if !h.devices.contains(&device) {
                return Err(FeedbackError::Mismatch(format!(
                    "tranche {i}: {what} {device} is not among its devices"
                )));
            }
        }
        joined.push(JoinedTranche {
            target_device: d.target_device,
            scanout: d.scanout,
            formats: d.formats.clone(),
            devices: h.devices,
            layout: h.layout,
            heap: h.heap,
        });
    }
    Ok(JoinedFeedback {
        main_device: Some(feedback.main_device),
        tranches: joined,
    })
}
