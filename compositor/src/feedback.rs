//! linux-dmabuf feedback built from the devices that are really there, and
//! its per-surface life cycle shared with the heap protocol.
//!
//! A [`FeedbackPlan`] is the one description of a feedback scope (default,
//! or one surface): main device and tranches, each with the devices that may
//! touch its buffers. It is normalized when built, by the rules Smithay's
//! `DmabufFeedbackBuilder` applies (no format twice among tranches of one
//! target and flags, no empty tranche, the main tranche without formats a
//! preference tranche of the same target already lists), so the tranche list
//! of the plan is the tranche list linux-dmabuf sends, one to one
//! ([`crate::linux_feedback`]); the heap protocol's batches are built from
//! that same list.
//!
//! The main device is the DRM render node. A display engine without one
//! (PL111, vc4's display and most ARM boards' KMS devices) has its primary
//! node as main device on the drm backend: clients can open it, and it is the
//! device that takes their buffers. linux-dmabuf version 6 names no main
//! device; it flags the main device's tranches `sampling` instead, which
//! says the same. Without any DRM device there is no
//! device a client could open as main_device, so linux-dmabuf is advertised
//! at version 3 (formats and modifiers, no feedback), and heap batches,
//! following linux-dmabuf's tranches, carry none.
//!
//! Every tranche lists the main device among its devices: linux-dmabuf
//! requires a buffer of any tranche to stay importable by the main device,
//! which composites it whenever it is not scanned out. A scanout tranche is
//! added to a surface's plan when the drm backend's own decision says so
//! (the surface's buffer went to a plane, or could not only because of its
//! format or placement), with the formats of the primary plane that the
//! renderer can also import.

use std::sync::{Arc, Mutex};

use smithay::{
    backend::{
        allocator::{Format, Fourcc, Modifier},
        renderer::element::{RenderElementPresentationState, RenderElementStates, RenderingReason},
    },
    desktop::utils::surface_primary_scanout_output,
    output::Output,
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::ZwpLinuxDmabufFeedbackV1,
        wayland_server::{protocol::wl_surface::WlSurface, Resource, Weak},
    },
    wayland::compositor::with_states,
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

/// The linear formats the CPU compositor imports.
pub fn cpu_formats() -> Vec<Format> {
    HEAP_FORMATS
        .iter()
        .map(|code| Format {
            code: *code,
            modifier: Modifier::Linear,
        })
        .collect()
}

/// One feedback tranche.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tranche {
    pub target_device: u64,
    pub scanout: bool,
    pub formats: Vec<Format>,
    /// Every device that may access buffers of this tranche.
    pub devices: Vec<u64>,
}

/// One feedback scope, normalized (see the module docs): tranches in
/// preference order, the main tranche (main device, no flags) last unless
/// preference tranches already cover all of its formats. No tranche at all
/// means no linux-dmabuf feedback (version 3, no DRM device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackPlan {
    main_device: u64,
    tranches: Vec<Tranche>,
}

impl FeedbackPlan {
    /// The plan of `main` (whose target is the main device) preceded by the
    /// `preferred` tranches, normalized as Smithay's builder does it.
    pub fn new(main: Tranche, preferred: Vec<Tranche>) -> Self {
        let main_device = main.target_device;
        let mut tranches: Vec<Tranche> = Vec::new();
        for mut t in preferred {
            if !t.devices.contains(&main_device) {
                t.devices.push(main_device);
            }
            let (target, scanout) = (t.target_device, t.scanout);
            let mut formats: Vec<Format> = Vec::new();
            for f in std::mem::take(&mut t.formats) {
                let listed = formats.contains(&f)
                    || tranches.iter().any(|p| {
                        p.target_device == target && p.scanout == scanout && p.formats.contains(&f)
                    });
                if !listed {
                    formats.push(f);
                }
            }
            t.formats = formats;
            if !t.formats.is_empty() {
                tranches.push(t);
            }
        }
        let mut main = Tranche {
            scanout: false,
            ..main
        };
        let mut seen: Vec<Format> = Vec::new();
        main.formats.retain(|f| {
            let first = !seen.contains(f);
            seen.push(*f);
            first
        });
        let covered: Vec<Format> = tranches
            .iter()
            .filter(|p| p.target_device == main.target_device && !p.scanout)
            .flat_map(|p| p.formats.iter().copied())
            .collect();
        main.formats.retain(|f| !covered.contains(f));
        if !main.formats.is_empty() {
            tranches.push(main);
        }
        FeedbackPlan {
            main_device,
            tranches,
        }
    }

    /// No feedback: linux-dmabuf version 3 (see the module docs).
    pub fn none() -> Self {
        FeedbackPlan {
            main_device: 0,
            tranches: Vec::new(),
        }
    }

    /// The plan of a compositor whose renderer imports `formats`, with
    /// `main_device` as linux-dmabuf's main device: one main tranche.
    pub fn composited(main_device: u64, formats: Vec<Format>) -> Self {
        FeedbackPlan::new(
            Tranche {
                target_device: main_device,
                scanout: false,
                formats,
                devices: vec![main_device],
            },
            Vec::new(),
        )
    }

    /// This plan with a scanout tranche on `display` first.
    pub fn with_scanout(&self, display: u64, formats: &[Format]) -> Self {
        let Some((main, preferred)) = self.tranches.split_last() else {
            return self.clone();
        };
        let mut tranches = vec![Tranche {
            target_device: display,
            scanout: true,
            formats: formats.to_vec(),
            devices: vec![display],
        }];
        tranches.extend(preferred.iter().cloned());
        FeedbackPlan::new(main.clone(), tranches)
    }

    /// The tranches, exactly as linux-dmabuf sends them.
    pub fn tranches(&self) -> &[Tranche] {
        &self.tranches
    }

    /// Whether linux-dmabuf sends feedback at all (version 4 and later).
    pub fn has_feedback(&self) -> bool {
        !self.tranches.is_empty()
    }

    /// The device linux-dmabuf names as `main_device` below version 6.
    pub fn main_device(&self) -> u64 {
        self.main_device
    }
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
    /// linux-dmabuf feedback objects of this surface (module
    /// `linux_feedback`).
    pub linux_instances: Mutex<Vec<Weak<ZwpLinuxDmabufFeedbackV1>>>,
}

/// The drm backend's scanout decision for a surface, from the states of
/// the frame it just rendered (Smithay's `select_dmabuf_feedback` rule): a
/// buffer on a plane keeps the scanout tranche; one that could not go there
/// because of its format or because scanout failed gets it, so the client
/// can switch; anything else is composited and gets the default plan.
pub fn wants_scanout(states: &RenderElementStates, surface: &WlSurface) -> bool {
    let Some(state) = states.element_render_state(surface) else {
        return false;
    };
    match state.presentation_state {
        RenderElementPresentationState::ZeroCopy => true,
        RenderElementPresentationState::Rendering { reason } => matches!(
            reason,
            Some(RenderingReason::FormatUnsupported) | Some(RenderingReason::ScanoutFailed)
        ),
        RenderElementPresentationState::Skipped => false,
    }
}

/// The scanout decisions of a frame of `output` (see [`wants_scanout`]):
/// for every surface drawn on it whose primary scanout output it is, so
/// that a window across two outputs is decided by one of them and does not
/// flip its plan with each output's frame. Every surface counts: windows
/// with their subsurfaces (where video players put video) and popups,
/// layer surfaces, and X11 windows.
pub fn scanout_decisions(
    state: &Heapland,
    output: &Output,
    states: &RenderElementStates,
) -> Vec<(WlSurface, bool)> {
    let mut decisions = Vec::new();
    crate::scene::for_each_surface(&state.space, output, |surface, data| {
        if surface_primary_scanout_output(surface, data).as_ref() == Some(output) {
            decisions.push((surface.clone(), wants_scanout(states, surface)));
        }
    });
    decisions
}

/// After a frame: gives `surface` the scanout plan or the default one as
/// the backend decided, re-sending both protocols' feedback if it changed.
pub fn scanout_decided(state: &mut Heapland, surface: &WlSurface, scanout: bool) {
    let wanted = match (&state.scanout_plan, scanout) {
        (Some(plan), true) => plan.clone(),
        _ => state.default_plan.clone(),
    };
    if *current_plan(state, surface) != *wanted {
        set_surface_plan(state, surface, wanted);
    }
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

/// Installs a new plan for a surface and re-sends its feedback on
/// linux-dmabuf and on both heap protocols.
pub fn set_surface_plan(state: &mut Heapland, surface: &WlSurface, plan: Arc<FeedbackPlan>) {
    let (linux, heaps) = with_states(surface, |states| {
        let sf = states
            .data_map
            .get_or_insert_threadsafe(SurfaceFeedback::default);
        (live(&sf.linux_instances), live(&sf.heap_instances))
    });
    // The format table is written only for a surface with linux-dmabuf
    // feedback objects (most subsurfaces and popups have none). If it
    // cannot be, nothing changes: the plan is not recorded, so the next
    // decision tries again, and both protocols keep saying the old one.
    let linux: Vec<_> = linux.iter().filter_map(|w| w.upgrade().ok()).collect();
    let encoded = if !linux.is_empty() && plan.has_feedback() {
        match crate::linux_feedback::EncodedPlan::new(&plan) {
            Ok(encoded) => Some(encoded),
            Err(err) => {
                tracing::warn!("cannot build surface feedback: {err}");
                return;
            }
        }
    } else {
        None
    };
    with_states(surface, |states| {
        if let Some(sf) = states.data_map.get::<SurfaceFeedback>() {
            if let Ok(mut p) = sf.plan.lock() {
                *p = Some(plan.clone());
            }
        }
    });
    if let Some(encoded) = &encoded {
        for instance in &linux {
            crate::linux_feedback::send(state, instance, &plan, encoded);
        }
    }
    for instance in heaps.iter().filter_map(|w| w.upgrade().ok()) {
        crate::heap_protocol::send_batch(state, &instance, &plan);
    }
}

/// The objects of `v` still alive (the dead ones dropped from it).
fn live<I: Resource>(v: &Mutex<Vec<Weak<I>>>) -> Vec<Weak<I>> {
    v.lock()
        .map(|mut v| {
            v.retain(|w| w.upgrade().is_ok());
            v.clone()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDER: u64 = 0xe280;
    const DISPLAY: u64 = 0xe200;

    fn linear(code: Fourcc) -> Format {
        Format {
            code,
            modifier: Modifier::Linear,
        }
    }

    fn tranche(target: u64, scanout: bool, formats: &[Fourcc]) -> Tranche {
        Tranche {
            target_device: target,
            scanout,
            formats: formats.iter().copied().map(linear).collect(),
            devices: vec![target],
        }
    }

    #[test]
    fn every_tranche_lists_the_main_device_and_the_main_tranche_comes_last() {
        let plan = FeedbackPlan::composited(RENDER, cpu_formats())
            .with_scanout(DISPLAY, &[linear(Fourcc::Xrgb8888)]);
        let t = plan.tranches();
        assert_eq!(t.len(), 2);
        assert!(t[0].scanout && t[0].target_device == DISPLAY);
        assert_eq!(t[0].devices, vec![DISPLAY, RENDER]);
        assert!(!t[1].scanout && t[1].target_device == RENDER);
        assert_eq!(t[1].formats, cpu_formats());
        assert!(t.iter().all(|t| t.devices.contains(&RENDER)));
    }

    #[test]
    fn duplicate_formats_of_one_target_and_empty_tranches_are_dropped() {
        let plan = FeedbackPlan::new(
            tranche(RENDER, false, &[Fourcc::Xrgb8888, Fourcc::Argb8888]),
            vec![
                tranche(DISPLAY, true, &[Fourcc::Xrgb8888, Fourcc::Xrgb8888]),
                // Same target and flags: only what the first did not list.
                tranche(DISPLAY, true, &[Fourcc::Xrgb8888, Fourcc::Argb8888]),
                // Nothing new: dropped.
                tranche(DISPLAY, true, &[Fourcc::Argb8888]),
                // Another target may repeat a format.
                tranche(0xe281, false, &[Fourcc::Xrgb8888]),
            ],
        );
        let formats: Vec<Vec<Fourcc>> = plan
            .tranches()
            .iter()
            .map(|t| t.formats.iter().map(|f| f.code).collect())
            .collect();
        assert_eq!(
            formats,
            vec![
                vec![Fourcc::Xrgb8888],
                vec![Fourcc::Argb8888],
                vec![Fourcc::Xrgb8888],
                vec![Fourcc::Xrgb8888, Fourcc::Argb8888],
            ]
        );
    }

    #[test]
    fn the_main_tranche_loses_formats_a_tranche_of_the_main_device_lists() {
        let plan = FeedbackPlan::new(
            tranche(RENDER, false, &[Fourcc::Xrgb8888, Fourcc::Argb8888]),
            vec![tranche(RENDER, false, &[Fourcc::Argb8888])],
        );
        let t = plan.tranches();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].formats, vec![linear(Fourcc::Xrgb8888)]);

        let covered = FeedbackPlan::new(
            tranche(RENDER, false, &[Fourcc::Argb8888]),
            vec![tranche(RENDER, false, &[Fourcc::Argb8888])],
        );
        assert_eq!(
            covered.tranches().len(),
            1,
            "an empty main tranche is not sent"
        );
        // A scanout tranche on the main device is another (target, flags).
        let scanout_on_main = FeedbackPlan::new(
            tranche(RENDER, false, &[Fourcc::Argb8888]),
            vec![tranche(RENDER, true, &[Fourcc::Argb8888])],
        );
        assert_eq!(scanout_on_main.tranches().len(), 2);
    }

    #[test]
    fn no_render_node_means_no_feedback() {
        let plan = FeedbackPlan::none();
        assert!(!plan.has_feedback());
        assert!(plan.tranches().is_empty());
        assert_eq!(plan.with_scanout(DISPLAY, &cpu_formats()), plan);
    }
}
