//! The client side of a heapland compositor: joins a linux-dmabuf feedback
//! scope (`zwp_linux_dmabuf_feedback_v1`) and the heap feedback object that
//! mirrors it (`xx_dmabuf_heap_feedback_v1`) into one [`JoinedFeedback`]:
//! tranches with their formats, devices, layout needs and heap fd.
//!
//! The two protocols arrive as separate event streams. The heap protocol
//! promises (protocols/xx-dmabuf-heaps-v1.xml, "When a batch applies") that
//! a heap batch describes the linux-dmabuf tranches most recently completed
//! by linux-dmabuf's `done`; this module holds it to that promise, checking
//! count, order, target devices and flags and that every tranche lists the
//! main device, and reports a compositor that breaks it instead of pairing
//! a heap with the wrong tranche.
//!
//! ```no_run
//! # use heapland_allocator::feedback_client::FeedbackCollector;
//! // In the Dispatch impls of both feedback objects of one scope:
//! let mut collector = FeedbackCollector::new();
//! # let (dmabuf_event, heap_event) = todo!();
//! collector.dmabuf_event(dmabuf_event).unwrap();
//! collector.heap_event(heap_event).unwrap();
//! if let Some(joined) = collector.take() {
//!     let joined = joined.expect("a compositor that keeps both protocols in step");
//!     let first_heap = joined.tranches.iter().find_map(|t| t.heap.as_ref().ok());
//! }
//! ```

use std::os::fd::{AsFd, OwnedFd};

use heapland_protocols::client::xx_dmabuf_heap_feedback_v1::{
    self, HeapFlags, NoHeapReason as WireNoHeapReason,
};
use wayland_client::WEnum;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1;

use crate::{
    device::DeviceNumber,
    dma_heap::DmaHeap,
    negotiation::{Feedback, FormatEntry, WireTranche, TRANCHE_FLAG_SCANOUT},
};

/// Why events could not be joined into feedback.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// An event's contents are malformed (a dev_t of the wrong size, a
    /// format index beyond the table, events out of order).
    #[error("malformed {protocol} event: {reason}")]
    Malformed {
        /// The interface whose event it was.
        protocol: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The format table could not be read.
    #[error("cannot read the linux-dmabuf format table: {0}")]
    FormatTable(#[source] std::io::Error),
    /// The heap batch does not describe the linux-dmabuf tranches it follows.
    #[error("heap batch out of step with linux-dmabuf: {0}")]
    Mismatch(String),
    /// An announced heap's fd could not be duplicated for joined feedback
    /// (`xx_dmabuf_heaps_v2`; the process is out of file descriptors).
    #[error("cannot duplicate heap {name}'s fd: {source}")]
    HeapFd {
        /// The heap's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a tranche has no heap (`tranche_no_heap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoHeap {
    /// The reason; `None` for a value this crate does not know.
    pub reason: Option<WireNoHeapReason>,
    /// The compositor's explanation.
    pub message: String,
}

/// The heap of a tranche (`tranche_heap`).
#[derive(Debug)]
pub struct TrancheHeap {
    /// The heap, open (see [`TrancheHeap::into_heap`]).
    pub fd: OwnedFd,
    /// Its name under /dev/dma_heap, for logs.
    pub name: String,
    /// Every buffer is physically contiguous.
    pub contiguous: bool,
    /// Allocations are charged to the allocating process's memory cgroup.
    pub accounted: bool,
    /// Largest allocation in bytes, when known.
    pub max_size: Option<u64>,
}

impl TrancheHeap {
    /// The heap, ready to allocate from ([`DmaHeap::allocate`], or
    /// `DmaHeapAllocator` for pixel buffers).
    pub fn into_heap(self) -> DmaHeap {
        DmaHeap::from_fd(self.fd, self.name).with_max_len(self.max_size)
    }
}

/// What a tranche's devices need of a buffer's layout (`tranche_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrancheLayout {
    /// Every plane's pitch is a multiple of this, in bytes.
    pub pitch_alignment: u32,
    /// Every plane's offset is a multiple of this, in bytes.
    pub offset_alignment: u32,
    /// The heap's buffers start at a multiple of this, in bytes.
    pub base_alignment: u32,
}

/// One tranche, both protocols joined.
#[derive(Debug)]
pub struct JoinedTranche {
    /// The device the buffer goes to in this tranche.
    pub target_device: DeviceNumber,
    /// A scanout tranche (linux-dmabuf's scanout flag).
    pub scanout: bool,
    /// Format/modifier pairs, from linux-dmabuf.
    pub formats: Vec<FormatEntry>,
    /// Every device that may touch the buffers, from the heap protocol.
    pub devices: Vec<DeviceNumber>,
    /// What those devices need of the buffer's layout.
    pub layout: TrancheLayout,
    /// The heap to allocate from, or why there is none.
    pub heap: Result<TrancheHeap, NoHeap>,
}

/// One feedback scope, both protocols joined.
#[derive(Debug)]
pub struct JoinedFeedback {
    /// The main device; `None` when the compositor has no linux-dmabuf
    /// feedback (version 3), and then there is no tranche either.
    pub main_device: Option<DeviceNumber>,
    /// Tranches in the compositor's order of preference.
    pub tranches: Vec<JoinedTranche>,
}

impl JoinedFeedback {
    /// The linux-dmabuf part, for [`crate::negotiation::negotiate`].
    pub fn dmabuf(&self) -> Option<Feedback> {
        Some(Feedback {
            main_device: self.main_device?,
            tranches: self
                .tranches
                .iter()
                .map(|t| crate::negotiation::Tranche {
                    target_device: t.target_device,
                    formats: t.formats.clone(),
                    scanout: t.scanout,
                })
                .collect(),
        })
    }
}

/// Reads the events of one linux-dmabuf feedback object into complete
/// batches (version 4 to 6).
#[derive(Debug, Default)]
pub(crate) struct DmabufReader {
    main_device: Vec<u8>,
    table: Vec<u8>,
    tranches: Vec<(Vec<u8>, Vec<u8>, u32)>,
    current: Option<(Vec<u8>, Vec<u8>, u32)>,
}

/// One complete linux-dmabuf batch.
#[derive(Debug)]
pub(crate) struct DmabufBatch {
    pub(crate) feedback: Feedback,
    /// The tranches' flags as sent (all bits, not only scanout).
    pub(crate) flags: Vec<u32>,
}

impl DmabufReader {
    /// Feeds one event; the batch it completes, at `done`.
    pub(crate) fn event(
        &mut self,
        event: zwp_linux_dmabuf_feedback_v1::Event,
    ) -> Result<Option<DmabufBatch>, FeedbackError> {
        use zwp_linux_dmabuf_feedback_v1::Event;
        match event {
            Event::MainDevice { device } => self.main_device = device,
            Event::FormatTable { fd, size } => self.table = read_table(fd.as_fd(), size)?,
            Event::TrancheTargetDevice { device } => {
                self.current.get_or_insert_with(Default::default).0 = device;
            }
            Event::TrancheFormats { indices } => {
                self.current
                    .get_or_insert_with(Default::default)
                    .1
                    .extend_from_slice(&indices);
            }
            Event::TrancheFlags { flags } => {
                let bits = match flags {
                    WEnum::Value(f) => f.bits(),
                    WEnum::Unknown(raw) => raw,
                };
                self.current.get_or_insert_with(Default::default).2 = bits;
            }
            Event::TrancheDone => {
                let t = self
                    .current
                    .take()
                    .ok_or_else(|| malformed(DMABUF, "tranche_done without a tranche"))?;
                self.tranches.push(t);
            }
            Event::Done => {
                let pending = std::mem::take(self);
                let wire: Vec<WireTranche<'_>> = pending
                    .tranches
                    .iter()
                    .map(|(target, formats, flags)| WireTranche {
                        target_device: target,
                        formats,
                        flags: *flags,
                    })
                    .collect();
                let decoded = Feedback::from_wire(&pending.main_device, &pending.table, &wire);
                let flags: Vec<u32> = pending.tranches.iter().map(|t| t.2).collect();
                // The table is sent once per object; later batches reuse it,
                // also after a malformed batch.
                self.table = pending.table;
                let feedback = decoded.map_err(|e| malformed(DMABUF, e.to_string()))?;
                return Ok(Some(DmabufBatch { feedback, flags }));
            }
            _ => {}
        }
        Ok(None)
    }
}

/// One heap tranche as received.
#[derive(Debug, Default)]
struct HeapTranche {
    target: Vec<u8>,
    flags: u32,
    devices: Vec<DeviceNumber>,
    layout: Option<TrancheLayout>,
    heap: Option<Result<TrancheHeap, NoHeap>>,
}

/// Joins the events of one linux-dmabuf feedback object and one heap
/// feedback object of the same scope. Feed every event of both; after each,
/// [`FeedbackCollector::take`] returns the joined feedback when a heap batch
/// and the linux-dmabuf batch it describes are complete.
#[derive(Debug)]
pub struct FeedbackCollector {
    with_dmabuf: bool,
    dmabuf_reader: DmabufReader,
    /// The latest complete linux-dmabuf batch.
    dmabuf: Option<Feedback>,
    /// Its tranches' flags as sent (all bits, not only scanout).
    dmabuf_flags: Vec<u32>,
    heap_pending: Vec<HeapTranche>,
    heap_current: Option<HeapTranche>,
    /// The latest complete heap batch, not yet joined.
    heap: Option<Vec<HeapTranche>>,
    /// Whether the last event completed a heap batch (mismatches are errors
    /// only then: after a linux-dmabuf done, the heap batch is yet to come).
    heap_just_done: bool,
    ready: Option<Result<JoinedFeedback, FeedbackError>>,
}

impl Default for FeedbackCollector {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn malformed(protocol: &'static str, reason: impl Into<String>) -> FeedbackError {
    FeedbackError::Malformed {
        protocol,
        reason: reason.into(),
    }
}

const DMABUF: &str = "zwp_linux_dmabuf_feedback_v1";
const HEAPS: &str = "xx_dmabuf_heap_feedback_v1";

impl FeedbackCollector {
    /// A collector for a scope with linux-dmabuf feedback (version 4+).
    pub fn new() -> Self {
        FeedbackCollector {
            with_dmabuf: true,
            dmabuf_reader: DmabufReader::default(),
            dmabuf: None,
            dmabuf_flags: Vec::new(),
            heap_pending: Vec::new(),
            heap_current: None,
            heap: None,
            heap_just_done: false,
            ready: None,
        }
    }

    /// A collector for a compositor whose linux-dmabuf is below version 4:
    /// only heap events, whose batches must then hold no tranche.
    pub fn without_dmabuf_feedback() -> Self {
        FeedbackCollector {
            with_dmabuf: false,
            ..Self::new()
        }
    }

    /// The joined feedback, once both protocols have completed matching
    /// batches since the last call; an error if the compositor sent a heap
    /// batch that does not describe its linux-dmabuf tranches.
    pub fn take(&mut self) -> Option<Result<JoinedFeedback, FeedbackError>> {
        self.ready.take()
    }

    /// Feeds one linux-dmabuf feedback event.
    pub fn dmabuf_event(
        &mut self,
        event: zwp_linux_dmabuf_feedback_v1::Event,
    ) -> Result<(), FeedbackError> {
        if let Some(batch) = self.dmabuf_reader.event(event)? {
            self.dmabuf_flags = batch.flags;
            self.dmabuf = Some(batch.feedback);
            self.heap_just_done = false;
            self.try_join();
        }
        Ok(())
    }

    /// Feeds one heap feedback event.
    pub fn heap_event(
        &mut self,
        event: xx_dmabuf_heap_feedback_v1::Event,
    ) -> Result<(), FeedbackError> {
        use xx_dmabuf_heap_feedback_v1::Event;
        let open = |c: &mut Option<HeapTranche>, what: &str| {
            c.as_mut()
                .ok_or_else(|| malformed(HEAPS, format!("{what} outside a tranche")))
                .map(|_| ())
        };
        match event {
            Event::TrancheTarget {
                target_device,
                flags,
            } => {
                if self.heap_current.is_some() {
                    return Err(malformed(HEAPS, "tranche_target inside a tranche"));
                }
                self.heap_current = Some(HeapTranche {
                    target: target_device,
                    flags,
                    ..Default::default()
                });
            }
            Event::TrancheDevice { device } => {
                open(&mut self.heap_current, "tranche_device")?;
                if self
                    .heap_current
                    .as_ref()
                    .is_some_and(|c| c.layout.is_some() || c.heap.is_some())
                {
                    return Err(malformed(HEAPS, "tranche_device after tranche_layout"));
                }
                let number = DeviceNumber::from_feedback_bytes(&device)
                    .map_err(|e| malformed(HEAPS, e.to_string()))?;
                if let Some(c) = self.heap_current.as_mut() {
                    c.devices.push(number);
                }
            }
            Event::TrancheLayout {
                pitch_alignment,
                offset_alignment,
                base_alignment,
            } => {
                open(&mut self.heap_current, "tranche_layout")?;
                if self
                    .heap_current
                    .as_ref()
                    .is_some_and(|c| c.layout.is_some() || c.heap.is_some())
                {
                    return Err(malformed(
                        HEAPS,
                        "tranche_layout twice, or after the tranche's heap",
                    ));
                }
                if let Some(c) = self.heap_current.as_mut() {
                    c.layout = Some(TrancheLayout {
                        pitch_alignment,
                        offset_alignment,
                        base_alignment,
                    });
                }
            }
            Event::TrancheHeap {
                fd,
                name,
                flags,
                max_size_hi,
                max_size_lo,
            } => {
                open(&mut self.heap_current, "tranche_heap")?;
                self.one_heap()?;
                let bits = match flags {
                    WEnum::Value(f) => f,
                    WEnum::Unknown(raw) => HeapFlags::from_bits_truncate(raw),
                };
                let max = (u64::from(max_size_hi) << 32) | u64::from(max_size_lo);
                if let Some(c) = self.heap_current.as_mut() {
                    c.heap = Some(Ok(TrancheHeap {
                        fd,
                        name,
                        contiguous: bits.contains(HeapFlags::Contiguous),
                        accounted: bits.contains(HeapFlags::Accounted),
                        max_size: (max != 0).then_some(max),
                    }));
                }
            }
            Event::TrancheNoHeap { reason, message } => {
                open(&mut self.heap_current, "tranche_no_heap")?;
                self.one_heap()?;
                if message.is_empty() {
                    return Err(malformed(HEAPS, "tranche_no_heap without a message"));
                }
                if let Some(c) = self.heap_current.as_mut() {
                    c.heap = Some(Err(NoHeap {
                        reason: match reason {
                            WEnum::Value(r) => Some(r),
                            WEnum::Unknown(_) => None,
                        },
                        message,
                    }));
                }
            }
            Event::TrancheDone => {
                let t = self
                    .heap_current
                    .take()
                    .ok_or_else(|| malformed(HEAPS, "tranche_done without a tranche"))?;
                if t.heap.is_none() || t.layout.is_none() {
                    return Err(malformed(
                        HEAPS,
                        "tranche_done before tranche_layout and tranche_heap or tranche_no_heap",
                    ));
                }
                self.heap_pending.push(t);
            }
            Event::Done => {
                if self.heap_current.take().is_some() {
                    // Drop the broken batch so the next one starts clean.
                    self.heap_pending.clear();
                    return Err(malformed(HEAPS, "done inside a tranche"));
                }
                self.heap = Some(std::mem::take(&mut self.heap_pending));
                self.heap_just_done = true;
                self.try_join();
            }
            _ => {}
        }
        Ok(())
    }

    /// A tranche's heap part comes once, after its layout.
    fn one_heap(&self) -> Result<(), FeedbackError> {
        match &self.heap_current {
            Some(c) if c.heap.is_some() => Err(malformed(
                HEAPS,
                "a second tranche_heap or tranche_no_heap in a tranche",
            )),
            Some(c) if c.layout.is_none() => {
                Err(malformed(HEAPS, "the tranche's heap before tranche_layout"))
            }
            _ => Ok(()),
        }
    }

    /// Joins the latest complete batches if both are there (see the module
    /// docs for when a mismatch is an error).
    fn try_join(&mut self) {
        let Some(heap) = self.heap.as_ref() else {
            return;
        };
        let dmabuf = match (&self.dmabuf, self.with_dmabuf) {
            (Some(d), true) => Some(d),
            (None, true) => return,
            (_, false) => None,
        };
        match check_in_step(dmabuf, &self.dmabuf_flags, heap) {
            Ok(()) => {}
            Err(reason) if self.heap_just_done => {
                self.heap = None;
                self.ready = Some(Err(FeedbackError::Mismatch(reason)));
                return;
            }
            // A linux-dmabuf batch whose heap batch is still to come.
            Err(_) => return,
        }
        let Some(heap) = self.heap.take() else {
            return;
        };
        // In step: without feedback there is no tranche, with it one heap
        // tranche per linux-dmabuf tranche.
        let tranches = dmabuf
            .map(|d| d.tranches.iter())
            .into_iter()
            .flatten()
            .zip(heap)
            .map(|(d, h)| JoinedTranche {
                target_device: d.target_device,
                scanout: d.scanout,
                formats: d.formats.clone(),
                devices: h.devices,
                layout: h.layout.unwrap_or(TrancheLayout {
                    pitch_alignment: 1,
                    offset_alignment: 1,
                    base_alignment: 1,
                }),
                heap: h.heap.unwrap_or_else(|| {
                    Err(NoHeap {
                        reason: None,
                        message: "no heap event".into(),
                    })
                }),
            })
            .collect();
        self.ready = Some(Ok(JoinedFeedback {
            main_device: dmabuf.map(|d| d.main_device),
            tranches,
        }));
    }
}

/// Whether `heap` describes the tranches of `dmabuf` (`None`: no feedback,
/// so no tranche): count, order, target, flags, main device listed.
fn check_in_step(
    dmabuf: Option<&Feedback>,
    dmabuf_flags: &[u32],
    heap: &[HeapTranche],
) -> Result<(), String> {
    let Some(dmabuf) = dmabuf else {
        return match heap.len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} heap tranches without linux-dmabuf feedback, which has none"
            )),
        };
    };
    if dmabuf.tranches.len() != heap.len() {
        return Err(format!(
            "{} linux-dmabuf tranches, {} heap tranches",
            dmabuf.tranches.len(),
            heap.len()
        ));
    }
    for (i, (d, h)) in dmabuf.tranches.iter().zip(heap).enumerate() {
        let target = DeviceNumber::from_feedback_bytes(&h.target)
            .map_err(|e| format!("tranche {i}: heap target: {e}"))?;
        if target != d.target_device {
            return Err(format!(
                "tranche {i}: linux-dmabuf target {}, heap target {target}",
                d.target_device
            ));
        }
        // v1 repeats the scanout flag; linux-dmabuf v6 adds sampling,
        // which v1 does not know.
        let flags = dmabuf_flags.get(i).copied().unwrap_or(u32::from(d.scanout));
        if (h.flags ^ flags) & TRANCHE_FLAG_SCANOUT != 0 {
            return Err(format!(
                "tranche {i}: linux-dmabuf flags {flags:#x}, heap flags {:#x}",
                h.flags
            ));
        }
        if !h.devices.contains(&dmabuf.main_device) {
            return Err(format!(
                "tranche {i}: the main device {} is not among the heap tranche's devices",
                dmabuf.main_device
            ));
        }
    }
    Ok(())
}

/// Reads the format table (`size` bytes) from its fd.
fn read_table(fd: std::os::fd::BorrowedFd<'_>, size: u32) -> Result<Vec<u8>, FeedbackError> {
    // The size on the wire is the compositor's word; the file's is the truth.
    let real = rustix::fs::fstat(fd)
        .map_err(|e| FeedbackError::FormatTable(e.into()))?
        .st_size;
    if i64::from(size) > real {
        return Err(FeedbackError::FormatTable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("format table of {size} bytes in a file of {real}"),
        )));
    }
    let mut table = vec![0u8; size as usize];
    let mut done = 0;
    while done < table.len() {
        let n = rustix::io::pread(fd, &mut table[done..], done as u64)
            .map_err(|e| FeedbackError::FormatTable(e.into()))?;
        if n == 0 {
            return Err(FeedbackError::FormatTable(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("format table ends at {done} of {size} bytes"),
            )));
        }
        done += n;
    }
    Ok(table)
}
