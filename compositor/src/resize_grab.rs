//! Resizing a window with the pointer: started by a client's
//! `xdg_toplevel.resize` (client-side decorations) or by a press on the
//! border heapland leaves around the windows it decorates; ends when every
//! button is released.
//!
//! The window is told each new size with the `resizing` state; it answers
//! with a buffer of that size (or smaller, within its own limits). When the
//! left or top edge is dragged, the opposite edge stays where it was: the
//! window moves by what it grew, once the commit of its new size arrived
//! ([`ResizeState`], read by the commit handler).

use std::cell::RefCell;

use smithay::{
    desktop::Window,
    input::{
        pointer::{
            AxisFrame, ButtonEvent, GestureHoldBeginEvent, GestureHoldEndEvent,
            GesturePinchBeginEvent, GesturePinchEndEvent, GesturePinchUpdateEvent,
            GestureSwipeBeginEvent, GestureSwipeEndEvent, GestureSwipeUpdateEvent, GrabStartData,
            MotionEvent, PointerGrab, PointerInnerHandle, RelativeMotionEvent,
        },
        SeatHandler,
    },
    reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::{self, ResizeEdge},
    utils::{Logical, Rectangle, Size},
    wayland::{compositor::with_states, shell::xdg::SurfaceCachedState},
};

use crate::state::Heapland;

/// The edges being dragged, as xdg-shell numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges(u32);

impl Edges {
    const TOP: u32 = 1;
    const BOTTOM: u32 = 2;
    const LEFT: u32 = 4;
    const RIGHT: u32 = 8;

    pub fn from_xdg(edge: ResizeEdge) -> Option<Self> {
        let bits = u32::from(edge);
        (bits != 0 && bits & !0xf == 0).then_some(Edges(bits))
    }

    /// The cursor shape for dragging these edges.
    pub fn cursor_icon(self) -> smithay::input::pointer::CursorIcon {
        use smithay::input::pointer::CursorIcon;
        let (top, bottom, left, right) = (
            self.has(Self::TOP),
            self.has(Self::BOTTOM),
            self.has(Self::LEFT),
            self.has(Self::RIGHT),
        );
        match (top, bottom, left, right) {
            (true, _, true, _) => CursorIcon::NwResize,
            (true, _, _, true) => CursorIcon::NeResize,
            (_, true, true, _) => CursorIcon::SwResize,
            (_, true, _, true) => CursorIcon::SeResize,
            (true, _, _, _) => CursorIcon::NResize,
            (_, true, _, _) => CursorIcon::SResize,
            (_, _, true, _) => CursorIcon::WResize,
            _ => CursorIcon::EResize,
        }
    }

    pub fn new(top: bool, bottom: bool, left: bool, right: bool) -> Option<Self> {
        let bits = [
            (top, Self::TOP),
            (bottom, Self::BOTTOM),
            (left, Self::LEFT),
            (right, Self::RIGHT),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, edge)| bits | edge);
        (bits != 0).then_some(Edges(bits))
    }

    fn has(self, edge: u32) -> bool {
        self.0 & edge != 0
    }
}

/// Kept in a window's user data while it is resized, and until the commit
/// that answers the last configure of the resize.
#[derive(Debug, Default)]
pub struct ResizeState(RefCell<Option<Resize>>);

#[derive(Debug, Clone, Copy)]
struct Resize {
    edges: Edges,
    /// The window's geometry (global) when the resize started.
    initial: Rectangle<i32, Logical>,
    /// The grab ended: the next commit is the last to reposition.
    done: bool,
}

/// The new size for a drag of `delta` on `edges` of a window of `initial`
/// size, within the client's `min` and `max` (0 meaning no limit), never
/// below 1x1.
pub fn resized(
    initial: Size<i32, Logical>,
    edges: Edges,
    (dx, dy): (i32, i32),
    min: Size<i32, Logical>,
    max: Size<i32, Logical>,
) -> Size<i32, Logical> {
    let mut w = initial.w;
    let mut h = initial.h;
    if edges.has(Edges::LEFT) {
        w -= dx;
    } else if edges.has(Edges::RIGHT) {
        w += dx;
    }
    if edges.has(Edges::TOP) {
        h -= dy;
    } else if edges.has(Edges::BOTTOM) {
        h += dy;
    }
    let limit = |v: i32, lo: i32, hi: i32| {
        let v = v.max(lo.max(1));
        if hi > 0 {
            v.min(hi.max(lo.max(1)))
        } else {
            v
        }
    };
    (limit(w, min.w, max.w), limit(h, min.h, max.h)).into()
}

pub struct ResizeGrab {
    pub start_data: GrabStartData<Heapland>,
    pub window: Window,
    edges: Edges,
    initial: Rectangle<i32, Logical>,
}

impl ResizeGrab {
    /// Starts resizing `window` on `edges`; `None` for a window that is
    /// not on the map. An X11 window is resized and moved in one step by
    /// the grab itself; an xdg toplevel is asked for a size and moved when
    /// it commits one ([`window_committed`]).
    pub fn new(
        state: &Heapland,
        start_data: GrabStartData<Heapland>,
        window: Window,
        edges: Edges,
    ) -> Option<Self> {
        let location = state.space.element_location(&window)?;
        let size = window.geometry().size;
        let initial = Rectangle::new(location, size);
        if window.x11_surface().is_some() {
            return Some(ResizeGrab {
                start_data,
                window,
                edges,
                initial,
            });
        }
        let toplevel = window.toplevel()?;
        toplevel.with_pending_state(|s| s.states.set(xdg_toplevel::State::Resizing));
        window
            .user_data()
            .get_or_insert(ResizeState::default)
            .0
            .replace(Some(Resize {
                edges,
                initial,
                done: false,
            }));
        Some(ResizeGrab {
            start_data,
            window,
            edges,
            initial,
        })
    }
}

/// Moves a window whose left or top edge is being dragged, so that the
/// opposite edge stays; called when the window commits.
pub fn window_committed(state: &mut Heapland, window: &Window) {
    let Some(resize_state) = window.user_data().get::<ResizeState>() else {
        return;
    };
    let Some(resize) = *resize_state.0.borrow() else {
        return;
    };
    let size = window.geometry().size;
    let mut location = resize.initial.loc;
    if resize.edges.has(Edges::LEFT) {
        location.x = resize.initial.loc.x + resize.initial.size.w - size.w;
    }
    if resize.edges.has(Edges::TOP) {
        location.y = resize.initial.loc.y + resize.initial.size.h - size.h;
    }
    if (resize.edges.has(Edges::LEFT) || resize.edges.has(Edges::TOP))
        && state.space.element_location(window) != Some(location)
    {
        state.space.map_element(window.clone(), location, false);
    }
    if resize.done {
        resize_state.0.replace(None);
    }
}

type Focus = Option<(
    <Heapland as SeatHandler>::PointerFocus,
    smithay::utils::Point<f64, Logical>,
)>;

impl PointerGrab<Heapland> for ResizeGrab {
    fn motion(
        &mut self,
        data: &mut Heapland,
        handle: &mut PointerInnerHandle<'_, Heapland>,
        _focus: Focus,
        event: &MotionEvent,
    ) {
        // No client gets pointer focus while a window is resized.
        handle.motion(data, None, event);
        let delta = (event.location - self.start_data.location).to_i32_round::<i32>();
        if let Some(x11) = self.window.x11_surface().cloned() {
            let (min, max) = (
                x11.min_size().unwrap_or_default(),
                x11.max_size().unwrap_or_default(),
            );
            let size = resized(self.initial.size, self.edges, (delta.x, delta.y), min, max);
            let mut location = self.initial.loc;
            if self.edges.has(Edges::LEFT) {
                location.x += self.initial.size.w - size.w;
            }
            if self.edges.has(Edges::TOP) {
                location.y += self.initial.size.h - size.h;
            }
            data.place_x11(&self.window, &x11, Rectangle::new(location, size));
            return;
        }
        let Some(toplevel) = self.window.toplevel() else {
            handle.unset_grab(self, data, event.serial, event.time, true);
            return;
        };
        let (min, max) = with_states(toplevel.wl_surface(), |states| {
            let mut cached = states.cached_state.get::<SurfaceCachedState>();
            let current = cached.current();
            (current.min_size, current.max_size)
        });
        let size = resized(self.initial.size, self.edges, (delta.x, delta.y), min, max);
        toplevel.with_pending_state(|s| {
            s.states.set(xdg_toplevel::State::Resizing);
            s.size = Some(size);
        });
        toplevel.send_pending_configure();
    }

    fn button(
        &mut self,
        data: &mut Heapland,
        handle: &mut PointerInnerHandle<'_, Heapland>,
        event: &ButtonEvent,
    ) {
        handle.button(data, event);
        if handle.current_pressed().is_empty() {
            handle.unset_grab(self, data, event.serial, event.time, true);
        }
    }

    crate::move_grab::forward_other_pointer_events!();

    fn start_data(&self) -> &GrabStartData<Heapland> {
        &self.start_data
    }

    /// The drag ended: the window is told it is no longer resized, and its
    /// answer is the last commit that moves it.
    fn unset(&mut self, _data: &mut Heapland) {
        if let Some(resize_state) = self.window.user_data().get::<ResizeState>() {
            if let Some(resize) = resize_state.0.borrow_mut().as_mut() {
                resize.done = true;
            }
        }
        if let Some(toplevel) = self.window.toplevel() {
            toplevel.with_pending_state(|s| s.states.unset(xdg_toplevel::State::Resizing));
            toplevel.send_pending_configure();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_edge_grows_the_window_its_own_way_within_the_limits() {
        let initial = Size::from((400, 300));
        let none = Size::from((0, 0));
        let right_bottom = Edges::new(false, true, false, true).unwrap();
        assert_eq!(
            resized(initial, right_bottom, (50, 20), none, none),
            (450, 320).into()
        );
        let left = Edges::new(false, false, true, false).unwrap();
        assert_eq!(
            resized(initial, left, (50, 20), none, none),
            (350, 300).into()
        );
        let top = Edges::new(true, false, false, false).unwrap();
        assert_eq!(
            resized(initial, top, (0, -40), none, none),
            (400, 340).into()
        );
        // Never below 1x1, nor below the client's minimum or above its maximum.
        assert_eq!(
            resized(initial, right_bottom, (-900, -900), none, none),
            (1, 1).into()
        );
        assert_eq!(
            resized(
                initial,
                right_bottom,
                (-900, 900),
                (100, 0).into(),
                (0, 500).into()
            ),
            (100, 500).into()
        );
    }

    #[test]
    fn only_the_four_edges_and_their_corners_are_edges() {
        assert!(Edges::from_xdg(ResizeEdge::None).is_none());
        assert_eq!(Edges::from_xdg(ResizeEdge::TopLeft), Some(Edges(5)));
        assert_eq!(Edges::new(false, true, false, true), Some(Edges(10)));
        assert!(Edges::new(false, false, false, false).is_none());
    }
}
