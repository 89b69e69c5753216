//! Which `wl_surface` shows an X11 window.
//!
//! Xwayland 23.1 and later name it through `xwayland_shell_v1` (a serial
//! on both sides) and Smithay pairs the two ([`X11Surface::wl_surface`]).
//! Older Xwayland, Debian 12's 22.1 among them, only sends the
//! `WL_SURFACE_ID` client message: the surface's protocol id in Xwayland's
//! connection. Smithay 0.7 records that id ([`X11Surface::wl_surface_id`])
//! and leaves the pairing to the compositor; heapland pairs it once per
//! event-loop turn, when both the message and the surface have arrived
//! (they come on different connections, in either order).
//!
//! A surface heapland paired is drawn, hit and given frame callbacks by
//! heapland itself: Smithay's [`Window`] does not know it.

use std::sync::Mutex;

use smithay::{
    desktop::Window,
    reexports::wayland_server::{backend::ObjectId, protocol::wl_surface::WlSurface, Resource},
    utils::IsAlive,
    xwayland::X11Surface,
};
use tracing::debug;

use crate::state::Heapland;

/// What heapland paired with an X11 window.
#[derive(Default)]
struct Paired {
    surface: Option<WlSurface>,
    /// The surface of the window's previous mapping: its protocol id may
    /// still be the one recorded until the new `WL_SURFACE_ID` arrives.
    previous: Option<ObjectId>,
    /// How many surfaces had been made when the managed window was last
    /// mapped: Xwayland makes its surface only once heapland mapped it, so
    /// an older one that took over a recorded id is another window's.
    /// (Override-redirect windows map themselves: no such order.)
    mapped_after: u64,
}

/// When a surface was made, in order (see `Heapland::new_surface`).
struct Born(u64);

/// Records that `surface` is the `n`th surface made.
pub fn stamp(surface: &WlSurface, n: u64) {
    smithay::wayland::compositor::with_states(surface, |states| {
        states.data_map.insert_if_missing_threadsafe(|| Born(n));
    });
}

fn born(surface: &WlSurface) -> u64 {
    smithay::wayland::compositor::with_states(surface, |states| {
        states.data_map.get::<Born>().map_or(0, |b| b.0)
    })
}

/// `x11` was mapped when `surfaces_made` surfaces had been made.
pub fn mapped(x11: &X11Surface, surfaces_made: u64) {
    if let Ok(mut paired) = paired(x11).lock() {
        paired.mapped_after = surfaces_made;
    }
}

fn paired(x11: &X11Surface) -> &Mutex<Paired> {
    x11.user_data()
        .get_or_insert_threadsafe(|| Mutex::new(Paired::default()))
}

/// The surface showing `x11`, however it was paired.
pub fn surface_of_x11(x11: &X11Surface) -> Option<WlSurface> {
    x11.wl_surface().or_else(|| heapland_paired(x11))
}

/// The surface showing `window`: an xdg toplevel's, or an X11 window's.
pub fn surface_of(window: &Window) -> Option<WlSurface> {
    match window.x11_surface() {
        Some(x11) => surface_of_x11(x11),
        None => window.toplevel().map(|t| t.wl_surface().clone()),
    }
}

/// The surface heapland (not Smithay) paired with `window`'s X11 window:
/// the one that heapland must draw, hit-test and call back itself.
pub fn drawn_by_heapland(window: &Window) -> Option<WlSurface> {
    window.x11_surface().and_then(heapland_paired)
}

fn heapland_paired(x11: &X11Surface) -> Option<WlSurface> {
    if x11.wl_surface().is_some() {
        return None;
    }
    let paired = paired(x11).lock().ok()?;
    paired.surface.clone().filter(IsAlive::alive)
}

/// The window went off screen: its surface goes with it (Xwayland makes a
/// new one when it maps the window again).
pub fn unpair(x11: &X11Surface) {
    if let Ok(mut paired) = paired(x11).lock() {
        if let Some(surface) = paired.surface.take() {
            paired.previous = Some(surface.id());
        }
    }
}

impl Heapland {
    /// Pairs the X11 windows on screen that have a `WL_SURFACE_ID` with
    /// their surface, once it exists in Xwayland's connection.
    pub fn pair_x11_surfaces(&mut self) {
        let Some(client) = self.xwayland.client() else {
            return;
        };
        let unpaired: Vec<(Window, X11Surface, u32)> = self
            .space
            .elements()
            .filter_map(|w| {
                let x11 = w.x11_surface()?;
                if surface_of_x11(x11).is_some() {
                    return None;
                }
                // Deprecated for Xwayland 23.1 and later, which Smithay
                // pairs itself; the only way for older ones.
                #[allow(deprecated)]
                let id = x11.wl_surface_id()?;
                Some((w.clone(), x11.clone(), id))
            })
            .collect();
        for (window, x11, id) in unpaired {
            let Ok(surface) = client.object_from_protocol_id::<WlSurface>(&self.display_handle, id)
            else {
                continue;
            };
            let taken = self
                .space
                .elements()
                .any(|w| w != &window && surface_of(w).is_some_and(|s| s == surface));
            let Ok(mut paired) = paired(&x11).lock() else {
                continue;
            };
            if taken
                || !surface.alive()
                || paired.previous.as_ref() == Some(&surface.id())
                || born(&surface) <= paired.mapped_after
            {
                continue;
            }
            debug!(
                window = x11.window_id(),
                surface = id,
                "paired X11 window with its surface"
            );
            paired.surface = Some(surface.clone());
            drop(paired);
            self.x11_surface_paired(&window, &surface);
        }
    }
}
