//! heapland's own `zwp_linux_dmabuf_feedback_v1` objects.
//!
//! Smithay makes and updates linux-dmabuf feedback objects itself and keeps
//! no record a compositor can read of what it sent on each. The heap
//! protocol's second version extends one feedback object and names, in
//! each batch, which `done` of that object the batch describes; so heapland
//! answers the two requests that make feedback objects itself (every other
//! request of the linux-dmabuf global goes to Smithay), sends Smithay's
//! [`DmabufFeedback`] on them, and counts.
//!
//! A default feedback object gets the default plan once. A surface's gets
//! the surface's current plan at once and again whenever it changes
//! ([`crate::feedback::set_surface_plan`]); each send is followed by the
//! batch of the object's heap feedback object, if it has one.

use std::sync::{Arc, Mutex};

use heapland_protocols::v2::server::xx_dmabuf_heap_feedback_v2::XxDmabufHeapFeedbackV2;
use smithay::{
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::{
            self, ZwpLinuxDmabufFeedbackV1,
        },
        wayland_server::{
            protocol::wl_surface::WlSurface, Client, DataInit, Dispatch, DisplayHandle, New,
            Resource, Weak,
        },
    },
    wayland::{compositor::with_states, dmabuf::DmabufFeedback},
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
    match plan.to_dmabuf_feedback() {
        Ok(built) => send(state, &feedback, &plan, &built),
        Err(err) => warn!("cannot build linux-dmabuf feedback: {err}"),
    }
}

/// Sends `plan`, built as `built`, on `feedback` (through `done`), then
/// the batch of its heap feedback object.
pub fn send(
    state: &Heapland,
    feedback: &ZwpLinuxDmabufFeedbackV1,
    plan: &Arc<FeedbackPlan>,
    built: &DmabufFeedback,
) {
    let Some(data) = feedback.data::<LinuxFeedback>() else {
        return;
    };
    built.send(feedback);
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
