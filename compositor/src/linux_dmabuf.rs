//! The `zwp_linux_dmabuf_v1` global, served by heapland up to version 6.
//!
//! Smithay 0.7 creates this global at version 5 at most, sends
//! `main_device` on every feedback object, and keeps the data of its
//! buffer parameters private, so a version 6 global cannot be built on
//! its `DmabufState`. heapland serves the whole protocol itself, in three
//! modules: this one (the global and its object), [`crate::dmabuf_params`]
//! (parameters, checks, and the `wl_buffer`s, whose user data is Smithay's
//! [`Dmabuf`] so that every renderer and `get_dmabuf` take them as before)
//! and [`crate::linux_feedback`] (feedback objects).
//!
//! Version 6 (no `main_device`; tranches flagged `sampling`) is offered
//! when heapland has feedback to give. Without a DRM device (no device a
//! client could be told of) the global is version 3: formats and modifiers
//! sent at bind, no feedback objects.

use std::sync::Arc;

use smithay::{
    backend::allocator::{Format, Modifier},
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_v1::{
            self, ZwpLinuxDmabufV1,
        },
        wayland_server::{
            backend::GlobalId, Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New,
            Resource,
        },
    },
};

use crate::{dmabuf_params::Params, feedback::FeedbackPlan, state::Heapland};

/// The highest version heapland implements.
pub const VERSION: u32 = 6;

/// Version of the global without feedback (no DRM device to name).
const VERSION_WITHOUT_FEEDBACK: u32 = 3;

/// What a client binding the global is told before version 4.
#[derive(Debug)]
pub struct LinuxDmabufGlobal {
    formats: Arc<[Format]>,
}

/// heapland's linux-dmabuf global.
#[derive(Debug)]
pub struct LinuxDmabuf {
    global: GlobalId,
}

impl LinuxDmabuf {
    /// Creates the global: version 6 when `plan` has feedback, else 3.
    /// `formats` are what the renderer imports, sent to clients binding
    /// below version 4.
    pub fn new(dh: &DisplayHandle, plan: &FeedbackPlan, formats: &[Format]) -> Self {
        let version = if plan.has_feedback() {
            VERSION
        } else {
            VERSION_WITHOUT_FEEDBACK
        };
        let global = dh.create_global::<Heapland, ZwpLinuxDmabufV1, _>(
            version,
            LinuxDmabufGlobal {
                formats: formats.into(),
            },
        );
        LinuxDmabuf { global }
    }

    /// Replaces the global by one for `plan` (the drm backend naming a
    /// main device where there was none, before any client connected).
    pub fn replace(&mut self, dh: &DisplayHandle, plan: &FeedbackPlan, formats: &[Format]) {
        let new = LinuxDmabuf::new(dh, plan, formats);
        let old = std::mem::replace(self, new);
        dh.remove_global::<Heapland>(old.global);
    }
}

impl GlobalDispatch<ZwpLinuxDmabufV1, LinuxDmabufGlobal> for Heapland {
    fn bind(
        _state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwpLinuxDmabufV1>,
        global: &LinuxDmabufGlobal,
        data_init: &mut DataInit<'_, Self>,
    ) {
        let dmabuf = data_init.init(resource, ());
        // From version 4 on, formats come as feedback tranches.
        if dmabuf.version() >= zwp_linux_dmabuf_v1::REQ_GET_DEFAULT_FEEDBACK_SINCE {
            return;
        }
        let mut named = Vec::new();
        for format in global.formats.iter() {
            if dmabuf.version() >= zwp_linux_dmabuf_v1::EVT_MODIFIER_SINCE {
                let modifier = u64::from(format.modifier);
                dmabuf.modifier(format.code as u32, (modifier >> 32) as u32, modifier as u32);
            } else if matches!(format.modifier, Modifier::Linear | Modifier::Invalid)
                && !named.contains(&format.code)
            {
                // Before modifiers, a format means the driver's implicit
                // layout, which for linear formats is linear; each once.
                named.push(format.code);
                dmabuf.format(format.code as u32);
            }
        }
    }
}

impl Dispatch<ZwpLinuxDmabufV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        _resource: &ZwpLinuxDmabufV1,
        request: zwp_linux_dmabuf_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        match request {
            zwp_linux_dmabuf_v1::Request::CreateParams { params_id } => {
                data_init.init(params_id, Params::default());
            }
            zwp_linux_dmabuf_v1::Request::GetDefaultFeedback { id } => {
                crate::linux_feedback::create(state, data_init, id, None);
            }
            zwp_linux_dmabuf_v1::Request::GetSurfaceFeedback { id, surface } => {
                crate::linux_feedback::create(state, data_init, id, Some(&surface));
            }
            // `destroy`: the object keeps nothing; its params and buffers
            // live on, as the protocol says.
            _ => {}
        }
    }
}
