//! What the keyboard can focus: a Wayland surface, or an X11 window.
//!
//! An X11 window is more than its `wl_surface`: the X server sends keys to
//! the window that has the *X* input focus, which only the window manager
//! sets (`SetInputFocus`, `WM_TAKE_FOCUS`). Focusing Xwayland's surface
//! alone would deliver keys to the X server and let it drop them. Smithay's
//! [`X11Surface`] does both halves when it is the focus target itself.
//! Pointer and touch focus stay plain surfaces: Xwayland follows
//! `wl_pointer` on its own.

use std::borrow::Cow;

use smithay::{
    backend::input::KeyState,
    desktop::{PopupKind, Window},
    input::{
        keyboard::{KeyboardTarget, KeysymHandle, ModifiersState},
        Seat,
    },
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{IsAlive, Serial},
    wayland::seat::WaylandFocus,
    xwayland::X11Surface,
};

use crate::state::Heapland;

/// The keyboard's focus.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyboardFocusTarget {
    /// A Wayland client's surface: a toplevel, a layer or lock surface, a popup.
    Surface(WlSurface),
    /// A managed X11 window, with the surface Xwayland shows it in (a
    /// window has the keyboard only once it shows).
    X11 {
        window: Box<X11Surface>,
        surface: WlSurface,
    },
}

impl KeyboardFocusTarget {
    /// The focus for `window`: its X11 window, or its toplevel's surface.
    pub fn of_window(window: &Window) -> Option<Self> {
        if let Some(x11) = window.x11_surface() {
            return Some(Self::X11 {
                surface: crate::xwayland_surface::surface_of_x11(x11)?,
                window: Box::new(x11.clone()),
            });
        }
        window
            .toplevel()
            .map(|t| Self::Surface(t.wl_surface().clone()))
    }

    /// The surface keys go to.
    pub fn surface(&self) -> &WlSurface {
        match self {
            Self::Surface(s) | Self::X11 { surface: s, .. } => s,
        }
    }
}

impl From<WlSurface> for KeyboardFocusTarget {
    fn from(surface: WlSurface) -> Self {
        Self::Surface(surface)
    }
}

/// Popup grabs hand the keyboard to popups, which are always Wayland's.
impl From<PopupKind> for KeyboardFocusTarget {
    fn from(popup: PopupKind) -> Self {
        Self::Surface(popup.wl_surface().clone())
    }
}

/// Popup grabs move the pointer where the keyboard is.
impl From<KeyboardFocusTarget> for WlSurface {
    fn from(target: KeyboardFocusTarget) -> Self {
        match target {
            KeyboardFocusTarget::Surface(surface) => surface,
            KeyboardFocusTarget::X11 { surface, .. } => surface,
        }
    }
}

impl IsAlive for KeyboardFocusTarget {
    fn alive(&self) -> bool {
        match self {
            Self::Surface(s) => s.alive(),
            Self::X11 { window, surface } => window.alive() && surface.alive(),
        }
    }
}

impl WaylandFocus for KeyboardFocusTarget {
    fn wl_surface(&self) -> Option<Cow<'_, WlSurface>> {
        match self {
            Self::Surface(s) | Self::X11 { surface: s, .. } => Some(Cow::Borrowed(s)),
        }
    }
}

impl KeyboardTarget<Heapland> for KeyboardFocusTarget {
    fn enter(
        &self,
        seat: &Seat<Heapland>,
        data: &mut Heapland,
        keys: Vec<KeysymHandle<'_>>,
        serial: Serial,
    ) {
        match self {
            Self::Surface(s) => KeyboardTarget::enter(s, seat, data, keys, serial),
            Self::X11 { window: x, surface } => {
                if x.wl_surface().is_some() {
                    KeyboardTarget::enter(&**x, seat, data, keys, serial);
                } else {
                    // A surface heapland paired (`xwayland_surface`):
                    // Smithay sets the X focus, heapland enters the surface.
                    KeyboardTarget::enter(&**x, seat, data, Vec::new(), serial);
                    KeyboardTarget::enter(surface, seat, data, keys, serial);
                }
            }
        }
    }

    fn leave(&self, seat: &Seat<Heapland>, data: &mut Heapland, serial: Serial) {
        match self {
            Self::Surface(s) => KeyboardTarget::leave(s, seat, data, serial),
            Self::X11 { window: x, surface } => {
                KeyboardTarget::leave(&**x, seat, data, serial);
                if x.wl_surface().is_none() {
                    KeyboardTarget::leave(surface, seat, data, serial);
                }
            }
        }
    }

    fn key(
        &self,
        seat: &Seat<Heapland>,
        data: &mut Heapland,
        key: KeysymHandle<'_>,
        state: KeyState,
        serial: Serial,
        time: u32,
    ) {
        match self {
            Self::Surface(s) => KeyboardTarget::key(s, seat, data, key, state, serial, time),
            Self::X11 { window: x, surface } if x.wl_surface().is_none() => {
                KeyboardTarget::key(surface, seat, data, key, state, serial, time)
            }
            Self::X11 { window: x, .. } => {
                KeyboardTarget::key(&**x, seat, data, key, state, serial, time)
            }
        }
    }

    fn modifiers(
        &self,
        seat: &Seat<Heapland>,
        data: &mut Heapland,
        modifiers: ModifiersState,
        serial: Serial,
    ) {
        match self {
            Self::Surface(s) => KeyboardTarget::modifiers(s, seat, data, modifiers, serial),
            Self::X11 { window: x, surface } if x.wl_surface().is_none() => {
                KeyboardTarget::modifiers(surface, seat, data, modifiers, serial)
            }
            Self::X11 { window: x, .. } => {
                KeyboardTarget::modifiers(&**x, seat, data, modifiers, serial)
            }
        }
    }
}
