//! linux-dmabuf feedback built from the devices that are really there, and
//! its per-surface life cycle shared with the heap protocol.
//!
//! A [`FeedbackPlan`] is the compositor's own description of one feedback
//! scope: main device and tranches, each with the devices that may touch its
//! buffers. Smithay's `DmabufFeedback` (sent on linux-dmabuf) and the heap
//! protocol's batches are both derived from the same plan, so their tranches
//! always line up one to one.
//!
//! What main_device is advertised: the DRM render node when there is one
//! (in the guest, vgem's renderD128); the pixman renderer reads buffers with
//! the CPU through mmap, so any render node's buffers are importable. On a
//! host with no DRM device at all, the compositor composites from CPU memory,
//! and main_device is the device number of that memory: the kernel's
//! internal shmem mount, as `fstat` reports it for a memfd (major 0, an
//! anonymous device). It is never a DRM device, so clients that look it up
//! with libdrm find none and allocate through the heap protocol or wl_shm;
//! dev_t 0 is avoided because clients (wayland-info among them) read 0 as
//! "no feedback". A scanout tranche is added only where direct scanout is
//! possible, which the headless backend never offers.

use std::sync::{Arc, Mutex};

use smithay::{
    backend::allocator::{Format, Fourcc, Modifier},
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::{
            zwp_linux_dmabuf_feedback_v1::TrancheFlags,
            zwp_linux_dmabuf_v1::{self, ZwpLinuxDmabufV1},
        },
        wayland_server::{
            protocol::wl_surface::WlSurface, Client, DataInit, Dispatch, DisplayHandle, Weak,
        },
    },
    wayland::{
        compositor::with_states,
        dmabuf::{
            DmabufData, DmabufFeedback, DmabufFeedbackBuilder, DmabufState,
            SurfaceDmabufFeedbackState,
        },
    },
};

use heapland_protocols::server::xx_dmabuf_heap_feedback_v1::XxDmabufHeapFeedbackV1;

use crate::state::Heapland;

/// Formats the heap allocator can produce (packed, linear) and the pixman
/// renderer can read.
pub const HEAP_FORMATS: [Fourcc; 4] = [
    Fourcc::Argb8888,
    Fourcc::Xrgb8888,
    Fourcc::Abgr8888,
    Fourcc::Xbgr8888,
];

/// One feedback tranche.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tranche {
    pub target_device: u64,
    pub scanout: bool,
    pub formats: Vec<Format>,
    /// Every device that may access buffers of this tranche.
    pub devices: Vec<u64>,
}

/// One feedback scope: the tranches in preference order, the last being
/// the main tranche (target = main device, every format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackPlan {
    pub main_device: u64,
    pub tranches: Vec<Tranche>,
}

impl FeedbackPlan {
    /// The plan of a compositor that renders with the CPU: one main tranche
    /// of linear formats, on the render node when there is one, else on the
    /// CPU memory device (see the module docs).
    pub fn cpu_composited(render_node: Option<u64>) -> Self {
        let main_device = render_node.unwrap_or_else(cpu_memory_device);
        FeedbackPlan {
            main_device,
            tranches: vec![Tranche {
                target_device: main_device,
                scanout: false,
                formats: HEAP_FORMATS
                    .iter()
                    .map(|code| Format {
                        code: *code,
                        modifier: Modifier::Linear,
                    })
                    .collect(),
                devices: render_node.into_iter().collect(),
            }],
        }
    }

    /// Every (format, modifier) pair of every tranche.
    pub fn all_formats(&self) -> Vec<Format> {
        let mut all: Vec<Format> = Vec::new();
        for f in self.tranches.iter().flat_map(|t| t.formats.iter()) {
            if !all.contains(f) {
                all.push(*f);
            }
        }
        all
    }

    /// Smithay's feedback with the same tranches in the same order.
    ///
    /// The builder puts its main tranche (main device, no flags, all formats)
    /// last, so every tranche but the last becomes a preference tranche.
    pub fn to_dmabuf_feedback(&self) -> std::io::Result<DmabufFeedback> {
        let mut builder = DmabufFeedbackBuilder::new(self.main_device, self.all_formats());
        if let Some((_main, preferred)) = self.tranches.split_last() {
            for t in preferred {
                let flags = t.scanout.then_some(TrancheFlags::Scanout);
                builder = builder.add_preference_tranche(
                    t.target_device,
                    flags,
                    t.formats.iter().copied(),
                );
            }
        }
        builder.build()
    }
}

/// The device number of CPU (shmem) memory, see the module docs; 0 if even
/// a memfd cannot be created.
pub fn cpu_memory_device() -> u64 {
    rustix::fs::memfd_create("heapland-main-device", rustix::fs::MemfdFlags::CLOEXEC)
        .and_then(|fd| rustix::fs::fstat(&fd))
        .map(|st| st.st_dev)
        .unwrap_or(0)
}

/// Finds the DRM render node, if any (`/dev/dri/renderD*`).
pub fn find_render_node() -> Option<u64> {
    let mut nodes: Vec<_> = std::fs::read_dir("/dev/dri")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        .map(|e| e.path())
        .collect();
    nodes.sort();
    nodes
        .iter()
        .find_map(|p| rustix::fs::stat(p).ok().map(|st| st.st_rdev))
}

/// Per-surface feedback state kept in the surface's data map.
#[derive(Default)]
pub struct SurfaceFeedback {
    /// The plan last sent for this surface (`None`: the default plan).
    pub plan: Mutex<Option<Arc<FeedbackPlan>>>,
    /// Heap feedback objects following this surface.
    pub heap_instances: Mutex<Vec<Weak<XxDmabufHeapFeedbackV1>>>,
}

/// Formats a primary plane takes from a client for direct scanout.
pub const SCANOUT_FORMATS: [Fourcc; 2] = [Fourcc::Xrgb8888, Fourcc::Argb8888];

/// The plan for a surface right now: the default plan, preceded by a
/// scanout tranche on the display device while the surface's window covers
/// a whole output of a backend that can scan client buffers out (drm). The
/// headless backend never can.
pub fn plan_for_surface(state: &Heapland, surface: &WlSurface) -> Arc<FeedbackPlan> {
    let Some(display) = state.scanout_device else {
        return state.default_plan.clone();
    };
    let covers_output = state
        .space
        .elements()
        .find(|w| w.toplevel().is_some_and(|t| t.wl_surface() == surface))
        .and_then(|w| state.space.element_geometry(w))
        .is_some_and(|geo| {
            state
                .outputs
                .iter()
                .filter_map(|o| state.space.output_geometry(o))
                .any(|out| out == geo)
        });
    if !covers_output {
        return state.default_plan.clone();
    }
    let mut plan = (*state.default_plan).clone();
    plan.tranches.insert(
        0,
        Tranche {
            target_device: display,
            scanout: true,
            formats: SCANOUT_FORMATS
                .iter()
                .map(|code| Format {
                    code: *code,
                    modifier: Modifier::Linear,
                })
                .collect(),
            devices: vec![display],
        },
    );
    Arc::new(plan)
}

/// The plan currently in effect for a surface.
pub fn current_plan(state: &Heapland, surface: &WlSurface) -> Arc<FeedbackPlan> {
    with_states(surface, |states| {
        states
            .data_map
            .get::<SurfaceFeedback>()
            .and_then(|sf| sf.plan.lock().ok().and_then(|p| p.clone()))
    })
    .unwrap_or_else(|| state.default_plan.clone())
}

/// After a commit: if the surface's plan changed (e.g. it became
/// scanout-capable), re-send linux-dmabuf feedback and heap batches for it.
pub fn surface_committed(state: &mut Heapland, surface: &WlSurface) {
    let wanted = plan_for_surface(state, surface);
    if *current_plan(state, surface) == *wanted {
        return;
    }
    set_surface_plan(state, surface, wanted);
}

/// Installs a new plan for a surface and re-sends both protocols' feedback.
pub fn set_surface_plan(state: &mut Heapland, surface: &WlSurface, plan: Arc<FeedbackPlan>) {
    let feedback = match plan.to_dmabuf_feedback() {
        Ok(f) => f,
        Err(err) => {
            tracing::warn!("cannot build surface feedback: {err}");
            return;
        }
    };
    let instances = with_states(surface, |states| {
        let sf = states
            .data_map
            .get_or_insert_threadsafe(SurfaceFeedback::default);
        if let Ok(mut p) = sf.plan.lock() {
            *p = Some(plan.clone());
        }
        if let Some(smithay_state) = SurfaceDmabufFeedbackState::from_states(states) {
            smithay_state.set_feedback(&feedback);
        }
        sf.heap_instances
            .lock()
            .map(|mut v| {
                v.retain(|w| w.upgrade().is_ok());
                v.clone()
            })
            .unwrap_or_default()
    });
    for instance in instances.iter().filter_map(|w| w.upgrade().ok()) {
        crate::heap_protocol::send_batch(state, &instance, &plan);
    }
}

/// The linux-dmabuf feedback a surface's first feedback object must start
/// with, when its plan is not the default one; `None` lets Smithay send the
/// default feedback.
///
/// Smithay starts a surface's first `zwp_linux_dmabuf_feedback_v1` from
/// `DmabufHandler::new_surface_feedback` (the default feedback unless
/// overridden), and `set_surface_plan` cannot reach a surface that has no
/// such object yet. Without this, a client asking for surface feedback after
/// its surface became scanout-capable would get the default tranches on
/// linux-dmabuf but the scanout plan on the heap protocol, and never the
/// scanout tranche. The override is computed here, before Smithay holds the
/// surface's state lock, which `new_surface_feedback` is called under.
pub fn next_surface_feedback(state: &Heapland, surface: &WlSurface) -> Option<DmabufFeedback> {
    let plan = current_plan(state, surface);
    if *plan == *state.default_plan {
        return None;
    }
    match plan.to_dmabuf_feedback() {
        Ok(f) => Some(f),
        Err(err) => {
            tracing::warn!("cannot build surface feedback: {err}");
            None
        }
    }
}

/// linux-dmabuf's global object: Smithay's, with the surface's current plan
/// handed to `new_surface_feedback` (see [`next_surface_feedback`]).
impl Dispatch<ZwpLinuxDmabufV1, DmabufData> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &ZwpLinuxDmabufV1,
        request: zwp_linux_dmabuf_v1::Request,
        data: &DmabufData,
        dhandle: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let zwp_linux_dmabuf_v1::Request::GetSurfaceFeedback { surface, .. } = &request {
            state.next_surface_feedback = next_surface_feedback(state, surface);
        }
        <DmabufState as Dispatch<ZwpLinuxDmabufV1, DmabufData, Self>>::request(
            state, client, resource, request, data, dhandle, data_init,
        );
        // Unused when the surface already had a feedback object.
        state.next_surface_feedback = None;
    }
}
