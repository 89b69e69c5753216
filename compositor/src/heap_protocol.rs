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

use std::{cell::RefCell, os::fd::AsFd, sync::Mutex};

use heapland_protocols::{
    server::{
        xx_dmabuf_heap_feedback_v1::{self, HeapFlags, NoHeapReason, XxDmabufHeapFeedbackV1},
        xx_dmabuf_heap_manager_v1::{self, XxDmabufHeapManagerV1},
    },
    v2::server::{
        xx_dmabuf_heap_feedback_v2::XxDmabufHeapFeedbackV2, xx_dmabuf_heap_v2::XxDmabufHeapV2,
    },
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
    heaps::{HeapGrant, NoHeap, Recipient},
    security_context::is_sandboxed,
    state::{ClientState, Heapland},
};

/// Most devices one feedback object may declare with `add_device`.
pub const MAX_EXTRA_DEVICES: usize = 16;

/// Both versions' globals, and every heap feedback object, for the
/// batches that change when the heap choice does (the largest output's
/// size changed: [`resend_all`]). A plan change is followed by the scope's
/// objects themselves: surface-scope objects through their surface
/// (`feedback::SurfaceFeedback`), v2 objects through the linux-dmabuf
/// feedback object they extend.
#[derive(Debug, Default)]
pub struct HeapProtocolState {
    v1: Vec<Weak<XxDmabufHeapFeedbackV1>>,
    v2: Vec<Weak<XxDmabufHeapFeedbackV2>>,
    /// Every v2 heap object, for `removed` (also after the heap feedback
    /// object that announced it is gone).
    /// Behind a `RefCell`: heaps are announced while batches are sent,
    /// from a shared borrow of the state.
    v2_heaps: RefCell<Vec<Weak<XxDmabufHeapV2>>>,
}

impl HeapProtocolState {
    pub fn new(dh: &DisplayHandle) -> Self {
        // The globals live as long as the display; their ids are not needed.
        dh.create_global::<Heapland, XxDmabufHeapManagerV1, ()>(1, ());
        crate::heap_protocol_v2::create_global(dh);
        HeapProtocolState::default()
    }

    /// Records a v1 heap feedback object (dead ones are dropped).
    pub fn track_v1(&mut self, feedback: &XxDmabufHeapFeedbackV1) {
        self.v1.retain(|w| w.upgrade().is_ok());
        self.v1.push(feedback.downgrade());
    }

    /// Records a v2 heap feedback object (dead ones are dropped).
    pub fn track_v2(&mut self, feedback: &XxDmabufHeapFeedbackV2) {
        self.v2.retain(|w| w.upgrade().is_ok());
        self.v2.push(feedback.downgrade());
    }

    /// The v2 heap feedback objects alive.
    pub fn v2(&self) -> impl Iterator<Item = XxDmabufHeapFeedbackV2> + '_ {
        self.v2.iter().filter_map(|w| w.upgrade().ok())
    }

    /// Records a v2 heap object (dead ones are dropped).
    pub fn track_v2_heap(&self, heap: &XxDmabufHeapV2) {
        let mut heaps = self.v2_heaps.borrow_mut();
        heaps.retain(|w| w.upgrade().is_ok());
        heaps.push(heap.downgrade());
    }

    /// The v2 heap objects alive.
    pub fn v2_heaps(&self) -> Vec<XxDmabufHeapV2> {
        self.v2_heaps
            .borrow()
            .iter()
            .filter_map(|w| w.upgrade().ok())
            .collect()
    }
}

/// Re-sends every heap feedback object's batch, of both versions: the heap
/// a tranche gets may have changed ([`crate::heaps::HeapDirectory::size_for_outputs`],
/// [`crate::heaps::HeapDirectory::rescan`]).
/// A v2 object gets its last batch again, for the same `dmabuf_done`.
pub fn resend_all(state: &Heapland) {
    for feedback in state
        .heap_protocol
        .v1
        .iter()
        .filter_map(|w| w.upgrade().ok())
    {
        resend(state, &feedback);
    }
    for feedback in state.heap_protocol.v2() {
        crate::heap_protocol_v2::resend(state, &feedback);
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
    let client = feedback.client();
    for tranche in plan.tranches() {
        feedback.tranche_target(
            tranche.target_device.to_ne_bytes().to_vec(),
            u32::from(tranche.scanout),
        );
        let devices = with_extra(&tranche.devices, &extra);
        for d in &devices {
            feedback.tranche_device(d.to_ne_bytes().to_vec());
        }
        let layout = state.heaps.layout(&devices);
        feedback.tranche_layout(
            layout.pitch_alignment,
            layout.offset_alignment,
            layout.base_alignment,
        );
        match grant_for(state, client.as_ref(), &devices) {
            Ok(grant) => feedback.tranche_heap(
                grant.fd.as_fd(),
                grant.name,
                HeapFlags::from_bits_truncate(grant.flags),
                (grant.max_bytes >> 32) as u32,
                grant.max_bytes as u32,
            ),
            Err(no) => {
                let (reason, message) = match no {
                    NoHeap::NoHeaps(m) => (NoHeapReason::NoHeaps, m),
                    NoHeap::Unsatisfiable(m) => (NoHeapReason::Unsatisfiable, m),
                    NoHeap::Unavailable(m) => (NoHeapReason::Unavailable, m),
                    NoHeap::Unaccounted(m) => (NoHeapReason::Unaccounted, m),
                };
                feedback.tranche_no_heap(reason, message);
            }
        }
        feedback.tranche_done();
    }
    feedback.done();
}

/// A tranche's devices and the devices a client declared, each once.
pub fn with_extra(devices: &[u64], extra: &[u64]) -> Vec<u64> {
    let mut all = devices.to_vec();
    for d in extra {
        if !all.contains(d) {
            all.push(*d);
        }
    }
    all
}

/// The heap `client` gets for a tranche accessed by `devices`, or why none,
/// said in the log at debug level (both heap protocol versions).
pub fn grant_for(
    state: &Heapland,
    client: Option<&Client>,
    devices: &[u64],
) -> Result<HeapGrant, NoHeap> {
    // An object whose client is gone sends nothing anyway; fail closed
    // rather than open: sandboxed, credentials unknown.
    let peer = client
        .and_then(|c| c.get_data::<ClientState>())
        .and_then(|s| s.peer.as_ref());
    let recipient = Recipient {
        sandboxed: client.is_none_or(is_sandboxed),
        peer,
    };
    let client_id = client.map(Client::id);
    let (pid, uid) = (peer.and_then(|p| p.pid), peer.map(|p| p.uid));
    let granted = state.heaps.grant(devices, recipient);
    match &granted {
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
        }
        Err(no) => debug!(client = ?client_id, ?pid, ?uid, "tranche without heap: {no:?}"),
    }
    granted
}

/// Parses a `dev_t` array argument (`add_device`, `remove_device`).
pub fn dev_t(device: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(device)
        .map(u64::from_ne_bytes)
        .map_err(|_| {
            format!(
                "device must be one dev_t (8 bytes), got {} bytes",
                device.len()
            )
        })
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
                state.heap_protocol.track_v1(&feedback);
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
                state.heap_protocol.track_v1(&feedback);
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
                let dev = match dev_t(&device) {
                    Ok(dev) => dev,
                    Err(message) => {
                        info!(client = ?client.id(), "add_device: {message}");
                        resource
                            .post_error(xx_dmabuf_heap_feedback_v1::Error::InvalidDevice, message);
                        return;
                    }
                };
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
