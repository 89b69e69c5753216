//! Idleness: `ext_idle_notify_v1` tells clients such as swayidle when seat0
//! has had no input for the time they asked about, and
//! `zwp_idle_inhibit_manager_v1` lets a surface that is on screen (a video
//! player) hold that off.
//!
//! Smithay keeps one timer per notification and restarts it on activity;
//! nothing wakes heapland while no client asked.

use smithay::{
    delegate_idle_inhibit, delegate_idle_notify,
    reexports::wayland_server::{protocol::wl_surface::WlSurface, DisplayHandle, Resource},
    wayland::{
        compositor::get_parent,
        idle_inhibit::{IdleInhibitHandler, IdleInhibitManagerState},
        idle_notify::{IdleNotifierHandler, IdleNotifierState},
    },
};

use crate::state::Heapland;

/// The idle globals and the surfaces that asked to inhibit idleness.
pub struct Idle {
    notifier: IdleNotifierState<Heapland>,
    _inhibit_manager: IdleInhibitManagerState,
    inhibitors: Vec<WlSurface>,
}

impl Idle {
    pub fn new(
        dh: &DisplayHandle,
        loop_handle: smithay::reexports::calloop::LoopHandle<'static, Heapland>,
    ) -> Self {
        Idle {
            notifier: IdleNotifierState::new(dh, loop_handle),
            _inhibit_manager: IdleInhibitManagerState::new::<Heapland>(dh),
            inhibitors: Vec::new(),
        }
    }
}

impl Heapland {
    /// Input came from seat0: clients told it was idle hear that it is not,
    /// and every timeout starts again.
    pub fn input_activity(&mut self) {
        let seat = self.seat.clone();
        self.idle.notifier.notify_activity(&seat);
    }

    /// Idleness is inhibited while a surface that asked for it is on
    /// screen: its root is a mapped window or a layer surface. Called after
    /// every change of the window list and of the inhibitors.
    pub fn update_idle_inhibit(&mut self) {
        self.idle.inhibitors.retain(|s| s.is_alive());
        let shown = self
            .idle
            .inhibitors
            .iter()
            .any(|s| self.is_on_screen(&root_of(s)));
        self.idle.notifier.set_is_inhibited(shown);
    }

    fn is_on_screen(&self, root: &WlSurface) -> bool {
        let window = self.window_of_surface(root).is_some();
        window
            || self.outputs.iter().any(|o| {
                smithay::desktop::layer_map_for_output(o)
                    .layer_for_surface(root, smithay::desktop::WindowSurfaceType::TOPLEVEL)
                    .is_some()
            })
    }
}

/// The root of `surface`'s subsurface tree.
fn root_of(surface: &WlSurface) -> WlSurface {
    let mut root = surface.clone();
    while let Some(parent) = get_parent(&root) {
        root = parent;
    }
    root
}

impl IdleNotifierHandler for Heapland {
    fn idle_notifier_state(&mut self) -> &mut IdleNotifierState<Self> {
        &mut self.idle.notifier
    }
}

impl IdleInhibitHandler for Heapland {
    fn inhibit(&mut self, surface: WlSurface) {
        self.idle.inhibitors.push(surface);
        self.update_idle_inhibit();
    }

    fn uninhibit(&mut self, surface: WlSurface) {
        self.idle.inhibitors.retain(|s| *s != surface);
        self.update_idle_inhibit();
    }
}

delegate_idle_notify!(Heapland);
delegate_idle_inhibit!(Heapland);
