//! Server side of `xx_dmabuf_heaps_v1`: hands clients a heap fd per
//! linux-dmabuf feedback tranche (see protocols/README.md for the design).
//!
//! Feedback objects follow a scope (default, or one surface) and get a full
//! batch at creation and whenever the scope's [`FeedbackPlan`] changes or the
//! client declares another device with `add_device`.
//!
//! Every client gets the same tranches (target, flags, devices) from the
//! plan; only the heap of each tranche depends on the client
//! ([`Recipient`]): a heap that bounds nothing per user only where the
//! client's own credentials would open its node, and for sandboxed clients
//! (connected through a `wp_security_context_v1` socket) accounted heaps
//! only (module `heaps`).
//!
//! The log says, at debug level, per tranche: the client (its id, pid and
//! uid), the heap handed or the reason none was, and each heap withheld
//! from it and why.

use std::{os::fd::AsFd, sync::Mutex};

use heapland_protocols::server::{
    xx_dmabuf_heap_feedback_v1::{self, HeapFlags, NoHeapReason, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::{self, XxDmabufHeapManagerV1},
};
use smithay::{
    reexports::wayland_server::{
        protocol::wl_surface::WlSurface, Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch,
        New, Resource, Weak,
    },
    wayland::compositor::with_states,
};
use tracing::{debug, info};

use crate::{
    feedback::{current_plan, FeedbackPlan, SurfaceFeedback},
    heaps::{NoHeap, Recipient},
    security_context::is_sandboxed,
    state::{ClientState, Heapland},
};

/// Most devices one feedback object may declare with `add_device`.
const MAX_EXTRA_DEVICES: usize = 16;

/// The heap protocol's global. Default-scope feedback objects are not
/// tracked: the default plan is fixed for the compositor's lifetime (the
/// render node found at start-up), so their only re-sends answer
/// `add_device`, on the object itself. Surface-scope objects are tracked by
/// their surface (`feedback::SurfaceFeedback`).
#[derive(Debug)]
pub struct HeapProtocolState {}

impl HeapProtocolState {
    pub fn new(dh: &DisplayHandle) -> Self {
        // The global lives as long as the display; its id is not needed.
        dh.create_global::<Heapland, XxDmabufHeapManagerV1, ()>(1, ());
        HeapProtocolState {}
    }
}

/// What one feedback object follows.
#[derive(Debug)]
pub struct FeedbackData {
    /// `None` for the default feedback.
    surface: Option<Weak<WlSurface>>,
    /// Devices the client declared with `add_device`.
    extra_devices: Mutex<Vec<u64>>,
}

/// Sends one complete batch for `plan` on `feedback`.
pub fn send_batch(state: &Heapland, feedback: &XxDmabufHeapFeedbackV1, plan: &FeedbackPlan) {
    let extra = feedback
        .data::<FeedbackData>()
        .and_then(|d| d.extra_devices.lock().ok().map(|v| v.clone()))
        .unwrap_or_default();
    // A feedback object whose client is gone sends nothing anyway; fail
    // closed rather than open: sandboxed, credentials unknown.
    let client = feedback.client();
    let peer = client
        .as_ref()
        .and_then(|c| c.get_data::<ClientState>())
        .and_then(|s| s.peer.as_ref());
    let recipient = Recipient {
        sandboxed: client.as_ref().is_none_or(is_sandboxed),
        peer,
    };
    let client_id = client.as_ref().map(Client::id);
    let (pid, uid) = (peer.and_then(|p| p.pid), peer.map(|p| p.uid));
    for tranche in plan.tranches() {
        feedback.tranche_target(
            tranche.target_device.to_ne_bytes().to_vec(),
            u32::from(tranche.scanout),
        );
        let mut devices = tranche.devices.clone();
        for d in extra.iter() {
            if !devices.contains(d) {
                devices.push(*d);
            }
        }
        for d in &devices {
            feedback.tranche_device(d.to_ne_bytes().to_vec());
        }
        let layout = state.heaps.layout(&devices);
        feedback.tranche_layout(
            layout.pitch_alignment,
            layout.offset_alignment,
            layout.base_alignment,
        );
        match state.heaps.grant(&devices, recipient) {
            Ok(grant) => {
                let withheld = match grant.withheld.as_slice() {
                    [] => String::new(),
                    w => format!("; withheld {}", w.join("; withheld ")),
                };
                debug!(
                    client = ?client_id,
                    ?pid,
                    ?uid,
                    heap = %grant.name,
                    "tranche heap {}{withheld}",
                    grant.name
                );
                feedback.tranche_heap(
                    grant.fd.as_fd(),
                    grant.name,
                    HeapFlags::from_bits_truncate(grant.flags),
                    (grant.max_bytes >> 32) as u32,
                    grant.max_bytes as u32,
                );
            }
            Err(no) => {
                let (reason, message) = match no {
                    NoHeap::NoHeaps(m) => (NoHeapReason::NoHeaps, m),
                    NoHeap::Unsatisfiable(m) => (NoHeapReason::Unsatisfiable, m),
                    NoHeap::Unavailable(m) => (NoHeapReason::Unavailable, m),
                    NoHeap::Unaccounted(m) => (NoHeapReason::Unaccounted, m),
                };
                debug!(
                    client = ?client_id,
                    ?pid,
                    ?uid,
                    ?reason,
                    "tranche without heap: {message}"
                );
                feedback.tranche_no_heap(reason, message);
            }
        }
        feedback.tranche_done();
    }
    feedback.done();
}

/// Re-sends the batch of one feedback object for its scope's current plan.
fn resend(state: &Heapland, feedback: &XxDmabufHeapFeedbackV1) {
    let Some(data) = feedback.data::<FeedbackData>() else {
        return;
    };
    let plan = match &data.surface {
        None => state.default_plan.clone(),
        Some(weak) => match weak.upgrade() {
            Ok(surface) => current_plan(state, &surface),
            // The surface is gone: the object is inert.
            Err(_) => return,
        },
    };
    send_batch(state, feedback, &plan);
}

impl GlobalDispatch<XxDmabufHeapManagerV1, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _handle: &DisplayHandle,
        _client: &Client,
        resource: New<XxDmabufHeapManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }
}

impl Dispatch<XxDmabufHeapManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        resource: &XxDmabufHeapManagerV1,
        request: xx_dmabuf_heap_manager_v1::Request,
        _data: &(),
        _dhandle: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use xx_dmabuf_heap_manager_v1::Request;
        match request {
            Request::Destroy => {}
            Request::GetDefaultFeedback { id } => {
                let feedback = data_init.init(
                    id,
                    FeedbackData {
                        surface: None,
                        extra_devices: Mutex::new(Vec::new()),
                    },
                );
                let plan = state.default_plan.clone();
                send_batch(state, &feedback, &plan);
            }
            Request::GetSurfaceFeedback { id, surface } => {
                if !surface.is_alive() {
                    resource.post_error(
                        xx_dmabuf_heap_manager_v1::Error::InertSurface,
                        "get_surface_feedback on a destroyed wl_surface",
                    );
                    return;
                }
                let feedback = data_init.init(
                    id,
                    FeedbackData {
                        surface: Some(surface.downgrade()),
                        extra_devices: Mutex::new(Vec::new()),
                    },
                );
                with_states(&surface, |states| {
                    let sf = states
                        .data_map
                        .get_or_insert_threadsafe(SurfaceFeedback::default);
                    if let Ok(mut v) = sf.heap_instances.lock() {
                        v.retain(|w| w.upgrade().is_ok());
                        v.push(feedback.downgrade());
                    }
                });
                let plan = current_plan(state, &surface);
                send_batch(state, &feedback, &plan);
            }
            _ => {}
        }
    }
}

impl Dispatch<XxDmabufHeapFeedbackV1, FeedbackData> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &XxDmabufHeapFeedbackV1,
        request: xx_dmabuf_heap_feedback_v1::Request,
        data: &FeedbackData,
        _dhandle: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use xx_dmabuf_heap_feedback_v1::Request;
        match request {
            Request::Destroy => {}
            Request::AddDevice { device } => {
                let Ok(bytes) = <[u8; 8]>::try_from(device.as_slice()) else {
                    info!(client = ?client.id(), "add_device with {} bytes", device.len());
                    resource.post_error(
                        xx_dmabuf_heap_feedback_v1::Error::InvalidDevice,
                        format!(
                            "device must be one dev_t (8 bytes), got {} bytes",
                            device.len()
                        ),
                    );
                    return;
                };
                let dev = u64::from_ne_bytes(bytes);
                let added = match data.extra_devices.lock() {
                    Ok(devices) if devices.contains(&dev) => true,
                    Ok(mut devices) if devices.len() < MAX_EXTRA_DEVICES => {
                        devices.push(dev);
                        true
                    }
                    _ => false,
                };
                if !added {
                    resource.post_error(
                        xx_dmabuf_heap_feedback_v1::Error::TooManyDevices,
                        format!("more than {MAX_EXTRA_DEVICES} devices declared"),
                    );
                    return;
                }
                resend(state, resource);
            }
            _ => {}
        }
    }
}
