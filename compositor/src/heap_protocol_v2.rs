//! Server side of `xx_dmabuf_heaps_v2`: heaps for the tranches of one
//! `zwp_linux_dmabuf_feedback_v1` object (protocols/README.md has the
//! design).
//!
//! A heap feedback object extends a linux-dmabuf feedback object of
//! heapland's own (module `linux_feedback`), which counts its `done` events
//! and sends the heap batch after each; `add_device` and `remove_device`
//! re-send the batch of the last one. Heaps are announced to a heap
//! feedback object once each, as `xx_dmabuf_heap_v2` objects, before the
//! first tranche that refers to them; they live as long as it does.
//! Which heap a tranche gets, and the log of it, are the first version's
//! ([`crate::heap_protocol::grant_for`]).
//!
//! When heaps come or go while heapland runs (`heap_watch`), a heap gone
//! gets `removed` on every heap feedback object that announced it, before
//! that object's batch is sent again; a heap made again under the same name
//! is a new object.

use std::{
    os::fd::AsFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use heapland_protocols::v2::server::{
    xx_dmabuf_heap_feedback_v2::{self, HeapFlags, NoHeapReason, XxDmabufHeapFeedbackV2},
    xx_dmabuf_heap_manager_v2::{self, XxDmabufHeapManagerV2},
    xx_dmabuf_heap_v2::{self, XxDmabufHeapV2},
};
use smithay::reexports::{
    wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::ZwpLinuxDmabufFeedbackV1,
    wayland_server::{
        Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource, Weak,
    },
};
use tracing::info;

use crate::{
    feedback::FeedbackPlan,
    heap_protocol::{dev_t, grant_for, with_extra, MAX_EXTRA_DEVICES},
    heaps::{GoneHeap, HeapGrant, NoHeap},
    linux_feedback::{self, LinuxFeedback},
    state::Heapland,
};

/// Creates the `xx_dmabuf_heap_manager_v2` global.
pub fn create_global(dh: &DisplayHandle) {
    // The global lives as long as the display; its id is not needed.
    dh.create_global::<Heapland, XxDmabufHeapManagerV2, ()>(1, ());
}

/// One heap feedback object.
#[derive(Debug)]
pub struct HeapFeedback {
    /// The linux-dmabuf feedback object it extends.
    linux: Weak<ZwpLinuxDmabufFeedbackV1>,
    /// Devices the client declared with `add_device`.
    extra_devices: Mutex<Vec<u64>>,
    /// Heaps announced to it (each object's data names its heap).
    announced: Mutex<Vec<Weak<XxDmabufHeapV2>>>,
}

/// One announced heap.
#[derive(Debug)]
pub struct Heap {
    /// The heap feedback object that announced it: while it lives, batches
    /// may refer to the heap, until `removed`.
    announced_by: Weak<XxDmabufHeapFeedbackV2>,
    /// Which heap: its name, and its sysfs identity when announced
    /// ([`crate::heaps::HeapDirectory::identity`]).
    name: String,
    identity: Option<u64>,
    /// `removed` was sent: no batch refers to it any more.
    removed: AtomicBool,
}

/// Sends `removed` to every heap object of a heap in `gone` (also those
/// whose heap feedback object is gone). Batches no longer refer to them: a
/// batch that needs a heap of that name again announces a new object.
pub fn remove_heaps(state: &Heapland, gone: &[GoneHeap]) {
    for heap in state.heap_protocol.v2_heaps() {
        let Some(data) = heap.data::<Heap>() else {
            continue;
        };
        let is_gone = gone
            .iter()
            .any(|g| g.name == data.name && g.identity == data.identity);
        if is_gone && !data.removed.swap(true, Ordering::Relaxed) {
            heap.removed();
        }
    }
}

/// Sends the batch describing the linux-dmabuf feedback `plan`, completed
/// by the `dmabuf_done`-th `done` of the object `heap_feedback` extends.
pub fn send_batch(
    state: &Heapland,
    heap_feedback: &XxDmabufHeapFeedbackV2,
    plan: &FeedbackPlan,
    dmabuf_done: u32,
) {
    let Some(data) = heap_feedback.data::<HeapFeedback>() else {
        return;
    };
    let extra = data
        .extra_devices
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let client = heap_feedback.client();
    for tranche in plan.tranches() {
        let devices = with_extra(&tranche.devices, &extra);
        let granted = grant_for(state, client.as_ref(), &devices);
        // Announced before the tranche's first event, outside of its group.
        let heap = granted
            .as_ref()
            .ok()
            .and_then(|grant| announced_heap(state, heap_feedback, data, grant));
        for d in &devices {
            heap_feedback.tranche_device(d.to_ne_bytes().to_vec());
        }
        let layout = state.heaps.layout(&devices);
        heap_feedback.tranche_layout(
            layout.pitch_alignment,
            layout.offset_alignment,
            layout.base_alignment,
        );
        match (granted, heap) {
            (Ok(_), Some(heap)) => heap_feedback.tranche_heap(&heap),
            (Ok(grant), None) => heap_feedback.tranche_no_heap(
                NoHeapReason::Unavailable,
                format!("{} could not be announced to the client", grant.name),
            ),
            (Err(no), _) => {
                let (reason, message) = match no {
                    NoHeap::NoHeaps(m) => (NoHeapReason::NoHeaps, m),
                    NoHeap::Unsatisfiable(m) => (NoHeapReason::Unsatisfiable, m),
                    NoHeap::Unavailable(m) => (NoHeapReason::Unavailable, m),
                    NoHeap::Unaccounted(m) => (NoHeapReason::Unaccounted, m),
                };
                heap_feedback.tranche_no_heap(reason, message);
            }
        }
        heap_feedback.tranche_done();
    }
    heap_feedback.done(dmabuf_done);
}

/// The heap object of `grant` for `heap_feedback`: the one announced
/// before, or a new one announced now with the grant's fd.
fn announced_heap(
    state: &Heapland,
    heap_feedback: &XxDmabufHeapFeedbackV2,
    data: &HeapFeedback,
    grant: &HeapGrant,
) -> Option<XxDmabufHeapV2> {
    let mut announced = data.announced.lock().ok()?;
    // Heaps removed since are not referred to again.
    announced.retain(|w| {
        w.upgrade().is_ok_and(|h| {
            h.data::<Heap>()
                .is_some_and(|d| !d.removed.load(Ordering::Relaxed))
        })
    });
    if let Some(heap) = announced
        .iter()
        .filter_map(|w| w.upgrade().ok())
        .find(|h| h.data::<Heap>().is_some_and(|d| d.name == grant.name))
    {
        return Some(heap);
    }
    let client = heap_feedback.client()?;
    let heap = client
        .create_resource::<XxDmabufHeapV2, Heap, Heapland>(
            &state.display_handle,
            heap_feedback.version(),
            Heap {
                announced_by: heap_feedback.downgrade(),
                name: grant.name.clone(),
                identity: state.heaps.identity(&grant.name),
                removed: AtomicBool::new(false),
            },
        )
        .ok()?;
    heap_feedback.heap(
        &heap,
        grant.fd.as_fd(),
        grant.name.clone(),
        HeapFlags::from_bits_truncate(grant.flags),
        (grant.max_bytes >> 32) as u32,
        grant.max_bytes as u32,
    );
    announced.push(heap.downgrade());
    state.heap_protocol.track_v2_heap(&heap);
    Some(heap)
}

/// The devices of `add_device` or `remove_device`, changed by `change`
/// (`false`: beyond the limit), then the last batch again.
fn change_devices(
    state: &Heapland,
    client: &Client,
    resource: &XxDmabufHeapFeedbackV2,
    data: &HeapFeedback,
    device: &[u8],
    change: impl FnOnce(&mut Vec<u64>, u64) -> bool,
) {
    let dev = match dev_t(device) {
        Ok(dev) => dev,
        Err(message) => {
            info!(client = ?client.id(), "heap feedback device: {message}");
            resource.post_error(xx_dmabuf_heap_feedback_v2::Error::InvalidDevice, message);
            return;
        }
    };
    let changed = data
        .extra_devices
        .lock()
        .map(|mut devices| change(&mut devices, dev))
        .unwrap_or(false);
    if !changed {
        resource.post_error(
            xx_dmabuf_heap_feedback_v2::Error::TooManyDevices,
            format!("more than {MAX_EXTRA_DEVICES} devices declared"),
        );
        return;
    }
    if let Ok(linux) = data.linux.upgrade() {
        linux_feedback::resend_heaps(state, &linux);
    }
}

impl GlobalDispatch<XxDmabufHeapManagerV2, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _handle: &DisplayHandle,
        _client: &Client,
        resource: New<XxDmabufHeapManagerV2>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }
}

impl Dispatch<XxDmabufHeapManagerV2, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        resource: &XxDmabufHeapManagerV2,
        request: xx_dmabuf_heap_manager_v2::Request,
        _data: &(),
        _dhandle: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use xx_dmabuf_heap_manager_v2::Request;
        let Request::GetHeapFeedback { id, feedback } = request else {
            return;
        };
        let heap_feedback = data_init.init(
            id,
            HeapFeedback {
                linux: feedback.downgrade(),
                extra_devices: Mutex::new(Vec::new()),
                announced: Mutex::new(Vec::new()),
            },
        );
        // Every feedback object of the linux-dmabuf global is heapland's.
        let Some(linux) = feedback.data::<LinuxFeedback>() else {
            tracing::warn!("get_heap_feedback for a feedback object heapland did not make");
            return;
        };
        if !linux.attach_heap_feedback(&heap_feedback) {
            resource.post_error(
                xx_dmabuf_heap_manager_v2::Error::HeapFeedbackExists,
                "the linux-dmabuf feedback object already has a heap feedback object",
            );
            return;
        }
        state.heap_protocol.track_v2(&heap_feedback);
        if let Some((dones, plan)) = linux.last() {
            send_batch(state, &heap_feedback, &plan, dones);
        }
    }
}

/// Sends `heap_feedback`'s last batch again (the heap choice may have
/// changed), if its linux-dmabuf feedback object completed any feedback.
pub fn resend(state: &Heapland, heap_feedback: &XxDmabufHeapFeedbackV2) {
    if let Some(linux) = heap_feedback
        .data::<HeapFeedback>()
        .and_then(|d| d.linux.upgrade().ok())
    {
        linux_feedback::resend_heaps(state, &linux);
    }
}

impl Dispatch<XxDmabufHeapFeedbackV2, HeapFeedback> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &XxDmabufHeapFeedbackV2,
        request: xx_dmabuf_heap_feedback_v2::Request,
        data: &HeapFeedback,
        _dhandle: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use xx_dmabuf_heap_feedback_v2::Request;
        match request {
            Request::AddDevice { device } => {
                change_devices(state, client, resource, data, &device, |devices, dev| {
                    if devices.contains(&dev) {
                        return true;
                    }
                    if devices.len() >= MAX_EXTRA_DEVICES {
                        return false;
                    }
                    devices.push(dev);
                    true
                });
            }
            Request::RemoveDevice { device } => {
                change_devices(state, client, resource, data, &device, |devices, dev| {
                    devices.retain(|d| *d != dev);
                    true
                });
            }
            _ => {}
        }
    }
}

impl Dispatch<XxDmabufHeapV2, Heap> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        resource: &XxDmabufHeapV2,
        request: xx_dmabuf_heap_v2::Request,
        data: &Heap,
        _dhandle: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        // `destroy` is the only request. A batch already on the wire may
        // name the heap while its heap feedback object lives, until
        // `removed`: the client would meet a destroyed object.
        if matches!(request, xx_dmabuf_heap_v2::Request::Destroy)
            && !data.removed.load(Ordering::Relaxed)
            && data.announced_by.upgrade().is_ok()
        {
            resource.post_error(
                xx_dmabuf_heap_v2::Error::InUse,
                "a heap destroyed while its heap feedback object may still refer to it",
            );
        }
    }
}
