//! `ext_session_lock_v1` (swaylock): while the session is locked, every
//! output shows only its lock surface (or nothing, until the locker gave
//! it one), and the keyboard and pointer go only to lock surfaces.
//!
//! The locker is told `locked` once every output has drawn a frame without
//! client content. If the locker dies without unlocking, the session stays
//! locked, as the protocol wants; another locker may then take over.

use smithay::{
    delegate_session_lock,
    output::Output,
    reexports::wayland_server::{
        protocol::{wl_output::WlOutput, wl_surface::WlSurface},
        DisplayHandle,
    },
    utils::SERIAL_COUNTER,
    wayland::session_lock::{
        LockSurface, SessionLockHandler, SessionLockManagerState, SessionLocker,
    },
};
use tracing::info;

use crate::{security_context::is_sandboxed, state::Heapland};

/// The lock global and, while locked, the lock surfaces.
pub struct SessionLock {
    manager: SessionLockManagerState,
    /// Whether the session is locked (from the lock request until unlock).
    locked: bool,
    /// The locker waiting for `locked`, and the outputs that have not drawn
    /// a locked frame yet.
    pending: Option<(SessionLocker, Vec<Output>)>,
    /// Each output's lock surface (a handful of outputs: a list).
    surfaces: Vec<(Output, LockSurface)>,
}

impl SessionLock {
    /// Sandboxed clients may not lock the session.
    pub fn new(dh: &DisplayHandle) -> Self {
        SessionLock {
            manager: SessionLockManagerState::new::<Heapland, _>(dh, |client| {
                !is_sandboxed(client)
            }),
            locked: false,
            pending: None,
            surfaces: Vec::new(),
        }
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The lock surface shown on `output`.
    pub fn surface_on(&self, output: &Output) -> Option<&LockSurface> {
        self.surfaces
            .iter()
            .find(|(o, s)| o == output && s.alive())
            .map(|(_, s)| s)
    }

    /// Whether `surface` is a lock surface.
    pub fn is_lock_surface(&self, surface: &WlSurface) -> bool {
        self.surfaces.iter().any(|(_, s)| s.wl_surface() == surface)
    }

    /// The output whose lock surface `surface` is.
    pub fn output_of(&self, surface: &WlSurface) -> Option<Output> {
        self.surfaces
            .iter()
            .find(|(_, s)| s.wl_surface() == surface)
            .map(|(o, _)| o.clone())
    }
}

impl Heapland {
    /// After `output` drew a frame: once every output drew one since the
    /// lock request, nothing of the clients is on screen any more.
    pub fn lock_frame_drawn(&mut self, output: &Output) {
        if let Some((_, waiting)) = self.session_lock.pending.as_mut() {
            waiting.retain(|o| o != output);
        }
        self.lock_if_nothing_shows_clients();
    }

    /// Confirms a pending lock once no output still shows clients: each
    /// drew a locked frame, was unplugged, or is turned off (blank, it
    /// shows nothing; swaylock is often run right after blanking).
    pub fn lock_if_nothing_shows_clients(&mut self) {
        let Some((_, waiting)) = self.session_lock.pending.as_mut() else {
            return;
        };
        waiting.retain(|o| self.outputs.contains(o) && !self.output_power.is_off(o));
        if waiting.is_empty() {
            if let Some((locker, _)) = self.session_lock.pending.take() {
                locker.lock();
                info!("session locked");
            }
        }
    }

    /// The keyboard goes to the lock surface of the first output that has
    /// one.
    fn focus_lock_surface(&mut self) {
        let surface = self
            .outputs
            .iter()
            .find_map(|o| self.session_lock.surface_on(o))
            .map(|s| s.wl_surface().clone());
        if let (Some(surface), Some(keyboard)) = (surface, self.seat.get_keyboard()) {
            keyboard.set_focus(self, Some(surface.into()), SERIAL_COUNTER.next_serial());
        }
    }
}

impl SessionLockHandler for Heapland {
    fn lock_state(&mut self) -> &mut SessionLockManagerState {
        &mut self.session_lock.manager
    }

    fn lock(&mut self, confirmation: SessionLocker) {
        self.session_lock.locked = true;
        self.session_lock.surfaces.clear();
        self.session_lock.pending = Some((confirmation, self.outputs.clone()));
        if let Some(keyboard) = self.seat.get_keyboard() {
            keyboard.set_focus(self, None, SERIAL_COUNTER.next_serial());
        }
        self.queue_redraw_all();
        // With no output on, nothing shows anything: locked at once.
        self.lock_if_nothing_shows_clients();
    }

    fn unlock(&mut self) {
        self.session_lock.locked = false;
        self.session_lock.pending = None;
        self.session_lock.surfaces.clear();
        info!("session unlocked");
        self.focus_topmost();
        self.queue_redraw_all();
    }

    fn new_surface(&mut self, surface: LockSurface, wl_output: WlOutput) {
        let Some(output) = Output::from_resource(&wl_output) else {
            return;
        };
        if let Some(size) = self.space.output_geometry(&output).map(|g| g.size) {
            surface.with_pending_state(|state| {
                state.size = Some((size.w as u32, size.h as u32).into());
            });
        }
        surface.send_configure();
        // A second surface for one output replaces the first (Smithay
        // refuses it with a protocol error before it gets here).
        self.session_lock.surfaces.retain(|(o, _)| *o != output);
        self.session_lock.surfaces.push((output.clone(), surface));
        self.queue_redraw(&output);
        self.focus_lock_surface();
    }
}

delegate_session_lock!(Heapland);
