//! Protocols that extend seat0: cursor shapes, relative pointer motion,
//! pointer locking and confinement, and keyboard-shortcut inhibition.
//!
//! Games and 3D viewers lock the pointer and read relative motion; remote
//! desktop and VM viewers inhibit the compositor's shortcuts so the keys
//! reach the remote side; toolkits set their cursor by shape name instead
//! of uploading cursor images.

use smithay::{
    delegate_cursor_shape, delegate_keyboard_shortcuts_inhibit, delegate_pointer_constraints,
    delegate_relative_pointer,
    input::pointer::PointerHandle,
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    reexports::wayland_server::Resource,
    utils::{Logical, Point},
    wayland::{
        keyboard_shortcuts_inhibit::{
            KeyboardShortcutsInhibitHandler, KeyboardShortcutsInhibitState,
            KeyboardShortcutsInhibitor,
        },
        pointer_constraints::{with_pointer_constraint, PointerConstraintsHandler},
        tablet_manager::TabletSeatHandler,
    },
};

use crate::state::Heapland;

impl PointerConstraintsHandler for Heapland {
    /// A constraint on the surface the pointer is over takes effect at once;
    /// one on another surface when the pointer enters it (see
    /// [`Heapland::activate_pointer_constraint`]).
    fn new_constraint(&mut self, surface: &WlSurface, pointer: &PointerHandle<Self>) {
        if pointer.current_focus().as_ref() == Some(surface) {
            activate(surface, pointer);
        }
    }

    /// Where a locked pointer should appear when the lock ends: moves the
    /// pointer there at once, as no cursor is drawn while locked.
    fn cursor_position_hint(
        &mut self,
        surface: &WlSurface,
        pointer: &PointerHandle<Self>,
        location: Point<f64, Logical>,
    ) {
        let locked =
            with_pointer_constraint(surface, pointer, |c| c.is_some_and(|c| c.is_active()));
        if !locked {
            return;
        }
        if let Some(origin) = self.surface_origin(surface) {
            pointer.set_location(origin + location);
        }
    }
}

fn activate(surface: &WlSurface, pointer: &PointerHandle<Heapland>) {
    with_pointer_constraint(surface, pointer, |constraint| {
        if let Some(c) = constraint {
            if !c.is_active() {
                c.activate();
            }
        }
    });
}

impl Heapland {
    /// Activates the constraint the client set on `surface`, if any: called
    /// when the pointer enters a surface.
    pub fn activate_pointer_constraint(&self, surface: &WlSurface) {
        if let Some(pointer) = self.seat.get_pointer() {
            activate(surface, &pointer);
        }
    }
}

impl KeyboardShortcutsInhibitHandler for Heapland {
    fn keyboard_shortcuts_inhibit_state(&mut self) -> &mut KeyboardShortcutsInhibitState {
        &mut self.keyboard_shortcuts_inhibit_state
    }

    /// Granted at once to unsandboxed clients: the only shortcut it can
    /// take away from the compositor is Ctrl+Alt+Backspace (VT switching is
    /// never inhibited, it belongs to the session, not to the compositor).
    /// A sandboxed client's inhibitor stays inactive.
    fn new_inhibitor(&mut self, inhibitor: KeyboardShortcutsInhibitor) {
        let sandboxed = self
            .display_handle
            .get_client(inhibitor.wl_surface().id())
            .map(|c| crate::security_context::is_sandboxed(&c))
            .unwrap_or(true);
        if !sandboxed {
            inhibitor.activate();
        }
    }
}

/// Required by cursor-shape, which also serves tablet tools; heapland has
/// no tablet support, so nothing to do.
impl TabletSeatHandler for Heapland {}

delegate_cursor_shape!(Heapland);
delegate_relative_pointer!(Heapland);
delegate_pointer_constraints!(Heapland);
delegate_keyboard_shortcuts_inhibit!(Heapland);
