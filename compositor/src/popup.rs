//! xdg popups (menus, tooltips, completion lists): kept on screen, and
//! grabbed.
//!
//! A popup goes where its positioner says, then slides, flips or shrinks
//! as the client allows (`constraint_adjustment`) to stay within the
//! outputs its window is on, so a menu opened at the right edge of the
//! screen opens leftwards instead of off screen.
//!
//! A popup that asks for a grab (`xdg_popup.grab`, in answer to a click)
//! takes the keyboard, and a click outside the client's popups closes them
//! all (`popup_done`), as users expect of menus. The grab must answer the
//! latest press: a client cannot take the keyboard on its own.

use smithay::{
    desktop::{
        find_popup_root_surface, get_popup_toplevel_coords, layer_map_for_output,
        PopupKeyboardGrab, PopupKind, PopupPointerGrab, PopupUngrabStrategy, WindowSurfaceType,
    },
    input::{pointer::Focus, Seat},
    reexports::wayland_server::protocol::wl_seat::WlSeat,
    utils::{Logical, Point, Rectangle, Serial},
    wayland::shell::xdg::{PopupSurface, PositionerState},
};

use crate::state::Heapland;

impl Heapland {
    /// Where `popup` goes, relative to its parent: the positioner's
    /// geometry, adjusted to stay within the outputs its window (or layer
    /// surface) is on.
    pub fn popup_geometry(
        &self,
        popup: &PopupSurface,
        positioner: &PositionerState,
    ) -> Rectangle<i32, Logical> {
        let kind = PopupKind::Xdg(popup.clone());
        let Some((root_location, area)) = find_popup_root_surface(&kind)
            .ok()
            .and_then(|root| self.popup_root_area(&root))
        else {
            return positioner.get_geometry();
        };
        let mut target = area;
        target.loc -= root_location + get_popup_toplevel_coords(&kind);
        positioner.get_unconstrained_geometry(target)
    }

    /// Where the root of a popup tree is (its geometry's origin, global)
    /// and the area its popups must stay within.
    fn popup_root_area(
        &self,
        root: &smithay::reexports::wayland_server::protocol::wl_surface::WlSurface,
    ) -> Option<(Point<i32, Logical>, Rectangle<i32, Logical>)> {
        if let Some(window) = self.window_of_surface(root) {
            let location = self.space.element_location(window)?;
            let mut outputs = self.space.outputs_for_element(window).into_iter();
            let first = outputs
                .next()
                .or_else(|| self.outputs.first().cloned())
                .and_then(|o| self.space.output_geometry(&o))?;
            let area = outputs
                .filter_map(|o| self.space.output_geometry(&o))
                .fold(first, |a, g| a.merge(g));
            return Some((location, area));
        }
        self.outputs.iter().find_map(|output| {
            let map = layer_map_for_output(output);
            let layer = map.layer_for_surface(root, WindowSurfaceType::TOPLEVEL)?;
            let output_area = self.space.output_geometry(output)?;
            let location = output_area.loc + map.layer_geometry(layer)?.loc;
            Some((location, output_area))
        })
    }

    /// `xdg_popup.grab`: the popup takes the keyboard and pointer until a
    /// click outside the client's popups, if the grab answers the press the
    /// seat is in.
    pub fn grab_popup(&mut self, popup: PopupSurface, seat: &WlSeat, serial: Serial) {
        let Some(seat) = Seat::<Heapland>::from_resource(seat) else {
            return;
        };
        let kind = PopupKind::Xdg(popup);
        let Ok(root) = find_popup_root_surface(&kind) else {
            return;
        };
        let Ok(mut grab) = self.popups.grab_popup(root.into(), kind, &seat, serial) else {
            return;
        };
        if let Some(keyboard) = seat.get_keyboard() {
            if keyboard.is_grabbed()
                && !(keyboard.has_grab(serial)
                    || keyboard.has_grab(grab.previous_serial().unwrap_or(serial)))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            keyboard.set_focus(self, grab.current_grab(), serial);
            keyboard.set_grab(self, PopupKeyboardGrab::new(&grab), serial);
        }
        if let Some(pointer) = seat.get_pointer() {
            if pointer.is_grabbed()
                && !(pointer.has_grab(serial)
                    || pointer.has_grab(grab.previous_serial().unwrap_or_else(|| grab.serial())))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            pointer.set_grab(self, PopupPointerGrab::new(&grab), serial, Focus::Keep);
        }
    }
}
