//! heapland's `zwp_linux_dmabuf_feedback_v1` objects.
//!
//! The heap protocol's second version extends one feedback object and
//! names, in each batch, which `done` of that object the batch describes,
//! so each object counts what it was sent. A plan is written as the
//! object's version reads it ([`EncodedPlan`]): `main_device` below
//! version 6; from version 6 on, every tranche flagged, the main device's
//! tranches `sampling`.
//!
//! A default feedback object gets the default plan once. A surface's gets
//! the surface's current plan at once and again whenever it changes
//! ([`crate::feedback::set_surface_plan`]); each send is followed by the
//! batch of the object's heap feedback object, if it has one.

use std::{
    ffi::CString,
    os::fd::AsFd,
    sync::{Arc, Mutex},
};

use heapland_protocols::v2::server::xx_dmabuf_heap_feedback_v2::XxDmabufHeapFeedbackV2;
use smithay::{
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::{
            self, TrancheFlags, ZwpLinuxDmabufFeedbackV1,
        },
        wayland_server::{
            protocol::wl_surface::WlSurface, Client, DataInit, Dispatch, DisplayHandle, New,
            Resource, Weak,
        },
    },
    utils::SealedFile,
    wayland::compositor::with_states,
};
use tracing::warn;

use crate::{
    feedback::{current_plan, FeedbackPlan, SurfaceFeedback},
    state::Heapland,
};

/// What one linux-dmabuf feedback object follows, and what it was sent.
#[derive(Debug)]
pub struct LinuxFeedback {
    sent: Mutex<Sent>,
    /// The heap feedback object extending this one (`xx_dmabuf_heaps_v2`).
    heap_feedback: Mutex<Option<Weak<XxDmabufHeapFeedbackV2>>>,
}

#[derive(Debug, Default)]
struct Sent {
    /// `done` events sent so far.
    dones: u32,
    /// The plan the last `done` completed.
    plan: Option<Arc<FeedbackPlan>>,
}

impl LinuxFeedback {
    /// How many `done` events the object was sent, and the plan of the last
    /// (`None` before the first).
    pub fn last(&self) -> Option<(u32, Arc<FeedbackPlan>)> {
        let sent = self.sent.lock().ok()?;
        sent.plan.clone().map(|plan| (sent.dones, plan))
    }

    /// The live heap feedback object extending this one.
    pub fn heap_feedback(&self) -> Option<XxDmabufHeapFeedbackV2> {
        self.heap_feedback
            .lock()
            .ok()?
            .as_ref()
            .and_then(|w| w.upgrade().ok())
    }

    /// Makes `heap_feedback` the object extending this one; `false` when
    /// another live one already does.
    pub fn attach_heap_feedback(&self, heap_feedback: &XxDmabufHeapFeedbackV2) -> bool {
        let Ok(mut slot) = self.heap_feedback.lock() else {
            return false;
        };
        if slot.as_ref().is_some_and(|w| w.upgrade().is_ok()) {
            return false;
        }
        *slot = Some(heap_feedback.downgrade());
        true
    }
}

/// Answers `get_default_feedback` (`surface` `None`) and
/// `get_surface_feedback`: makes the object and sends its scope's plan. A
/// plan without tranches (linux-dmabuf version 3: no device to name) sends
/// nothing.
pub fn create(
    state: &mut Heapland,
    data_init: &mut DataInit<'_, Heapland>,
    id: New<ZwpLinuxDmabufFeedbackV1>,
    surface: Option<&WlSurface>,
) {
    let feedback = data_init.init(
        id,
        LinuxFeedback {
            sent: Mutex::new(Sent::default()),
            heap_feedback: Mutex::new(None),
        },
    );
    let plan = match surface {
        None => state.default_plan.clone(),
        Some(surface) => {
            with_states(surface, |states| {
                let sf = states
                    .data_map
                    .get_or_insert_threadsafe(SurfaceFeedback::default);
                if let Ok(mut v) = sf.linux_instances.lock() {
                    v.retain(|w| w.upgrade().is_ok());
                    v.push(feedback.downgrade());
                }
            });
            current_plan(state, surface)
        }
    };
    if !plan.has_feedback() {
        return;
    }
    match EncodedPlan::new(&plan) {
        Ok(encoded) => send(state, &feedback, &plan, &encoded),
        Err(err) => warn!("cannot build linux-dmabuf feedback: {err}"),
    }
}

/// Sends `plan`, encoded as `encoded`, on `feedback` (through `done`),
/// then the batch of its heap feedback object.
pub fn send(
    state: &Heapland,
    feedback: &ZwpLinuxDmabufFeedbackV1,
    plan: &Arc<FeedbackPlan>,
    encoded: &EncodedPlan,
) {
    let Some(data) = feedback.data::<LinuxFeedback>() else {
        return;
    };
    encoded.send(feedback);
    let dones = match data.sent.lock() {
        Ok(mut sent) => {
            sent.dones += 1;
            sent.plan = Some(plan.clone());
            sent.dones
        }
        Err(_) => return,
    };
    if let Some(heap_feedback) = data.heap_feedback() {
        crate::heap_protocol_v2::send_batch(state, &heap_feedback, plan, dones);
    }
}

/// Re-sends the last feedback of `feedback`'s heap feedback object (after
/// `add_device` or `remove_device`).
pub fn resend_heaps(state: &Heapland, feedback: &ZwpLinuxDmabufFeedbackV1) {
    let Some(data) = feedback.data::<LinuxFeedback>() else {
        return;
    };
    if let (Some((dones, plan)), Some(heap_feedback)) = (data.last(), data.heap_feedback()) {
        crate::heap_protocol_v2::send_batch(state, &heap_feedback, &plan, dones);
    }
}

/// A plan as linux-dmabuf sends it: the format table, in a sealed memfd
/// every object of the plan shares, and each tranche's indices into it.
#[derive(Debug)]
pub struct EncodedPlan {
    main_device: u64,
    table: SealedFile,
    tranches: Vec<EncodedTranche>,
}

#[derive(Debug)]
struct EncodedTranche {
    target: u64,
    scanout: bool,
    /// Buffers of this tranche are sampled by the compositor's renderer:
    /// the main device's tranches, and every tranche that is not for
    /// scanout (version 6 requires a flag on each).
    sampling: bool,
    /// 16-bit indices into the table, native endian.
    indices: Vec<u8>,
}

/// The version from which `main_device` is not sent and every tranche is
/// flagged (linux-dmabuf version 6).
const NO_MAIN_DEVICE_SINCE: u32 = 6;

/// Bytes of one format table entry: format, 4 bytes of padding, modifier.
const TABLE_ENTRY: usize = 16;

impl EncodedPlan {
    /// Encodes `plan` (normalized: the tranches are sent as they are).
    pub fn new(plan: &FeedbackPlan) -> std::io::Result<Self> {
        let mut formats: Vec<smithay::backend::allocator::Format> = Vec::new();
        let mut tranches = Vec::new();
        for t in plan.tranches() {
            let mut indices = Vec::with_capacity(t.formats.len() * 2);
            for f in &t.formats {
                let index = match formats.iter().position(|known| known == f) {
                    Some(i) => i,
                    None => {
                        formats.push(*f);
                        formats.len() - 1
                    }
                };
                let index = u16::try_from(index).map_err(|_| {
                    std::io::Error::other("more than 65536 formats in one feedback")
                })?;
                indices.extend_from_slice(&index.to_ne_bytes());
            }
            tranches.push(EncodedTranche {
                target: t.target_device,
                scanout: t.scanout,
                sampling: t.target_device == plan.main_device() || !t.scanout,
                indices,
            });
        }
        let mut table = Vec::with_capacity(formats.len() * TABLE_ENTRY);
        for f in &formats {
            table.extend_from_slice(&(f.code as u32).to_ne_bytes());
            table.extend_from_slice(&0u32.to_ne_bytes());
            table.extend_from_slice(&u64::from(f.modifier).to_ne_bytes());
        }
        let name = CString::new("heapland-dmabuf-format-table").map_err(std::io::Error::other)?;
        Ok(EncodedPlan {
            main_device: plan.main_device(),
            table: SealedFile::with_data(&name, &table)?,
            tranches,
        })
    }

    /// Sends the plan on `feedback`, as its version reads it, through
    /// `done`.
    fn send(&self, feedback: &ZwpLinuxDmabufFeedbackV1) {
        let v6 = feedback.version() >= NO_MAIN_DEVICE_SINCE;
        if !v6 {
            feedback.main_device(self.main_device.to_ne_bytes().to_vec());
        }
        feedback.format_table(self.table.as_fd(), self.table.size() as u32);
        for t in &self.tranches {
            let mut flags = TrancheFlags::empty();
            if t.scanout {
                flags |= TrancheFlags::Scanout;
            }
            if v6 && t.sampling {
                flags |= TrancheFlags::Sampling;
            }
            feedback.tranche_target_device(t.target.to_ne_bytes().to_vec());
            feedback.tranche_flags(flags);
            feedback.tranche_formats(t.indices.clone());
            feedback.tranche_done();
        }
        feedback.done();
    }
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, LinuxFeedback> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _resource: &ZwpLinuxDmabufFeedbackV1,
        _request: zwp_linux_dmabuf_feedback_v1::Request,
        _data: &LinuxFeedback,
        _dhandle: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        // `destroy` is the only request, and the object keeps nothing to free.
    }
}
