//! `zxdg_decoration_manager_v1` and the title bars heapland draws for the
//! windows it decorates.
//!
//! heapland prefers to decorate (foot, Qt and weston-style clients then need
//! no decorations of their own) but honours a client that asks to draw its
//! own. A server-side title bar sits above the window's geometry: a bar to
//! drag the window by, and a close button at its right end.

use std::cell::RefCell;

use smithay::{
    backend::renderer::element::solid::SolidColorBuffer,
    delegate_xdg_decoration,
    desktop::Window,
    reexports::wayland_protocols::xdg::{
        decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode, shell::server::xdg_toplevel,
    },
    utils::{Logical, Point, Rectangle, Size},
    wayland::shell::xdg::{decoration::XdgDecorationHandler, ToplevelSurface},
};

use crate::state::Heapland;

/// Height of a server-side title bar, in logical pixels.
pub const TITLE_HEIGHT: i32 = 24;
/// Side of the close button, square at the right end of the bar.
const CLOSE_SIZE: i32 = TITLE_HEIGHT;

const BAR_FOCUSED: [f32; 4] = [0.22, 0.33, 0.50, 1.0];
const BAR_UNFOCUSED: [f32; 4] = [0.30, 0.30, 0.30, 1.0];
const CLOSE_COLOR: [f32; 4] = [0.75, 0.20, 0.20, 1.0];

impl XdgDecorationHandler for Heapland {
    fn new_decoration(&mut self, toplevel: ToplevelSurface) {
        set_mode(&toplevel, Mode::ServerSide);
    }

    fn request_mode(&mut self, toplevel: ToplevelSurface, mode: Mode) {
        set_mode(&toplevel, mode);
    }

    fn unset_mode(&mut self, toplevel: ToplevelSurface) {
        set_mode(&toplevel, Mode::ServerSide);
    }
}

fn set_mode(toplevel: &ToplevelSurface, mode: Mode) {
    toplevel.with_pending_state(|state| state.decoration_mode = Some(mode));
    // Before the initial configure the mode goes out with it.
    if toplevel.is_initial_configure_sent() {
        toplevel.send_pending_configure();
    }
}

/// Whether heapland draws this window's title bar: the client acknowledged
/// a configure with server-side decorations, and the window is not
/// fullscreen (a fullscreen window covers its output, bar included).
pub fn is_decorated(window: &Window) -> bool {
    if let Some(x11) = window.x11_surface() {
        // X11 windows that do not draw their own frame (Motif hints) and
        // are not menus or tooltips.
        return !x11.is_override_redirect() && !x11.is_decorated() && !x11.is_fullscreen();
    }
    window.toplevel().is_some_and(|t| {
        let state = t.current_state();
        state.decoration_mode == Some(Mode::ServerSide)
            && !state.states.contains(xdg_toplevel::State::Fullscreen)
    })
}

/// Height the compositor adds above a window: the title bar, if any.
pub fn top_margin(window: &Window) -> i32 {
    if is_decorated(window) {
        TITLE_HEIGHT
    } else {
        0
    }
}

/// Which part of a title bar a point is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarPart {
    /// Drag to move.
    Bar,
    /// Click to ask the client to close.
    Close,
}

/// The title bar of `window` placed with its geometry at `location`.
pub fn title_bar(
    window: &Window,
    location: Point<i32, Logical>,
) -> Option<Rectangle<i32, Logical>> {
    if !is_decorated(window) {
        return None;
    }
    let width = window.geometry().size.w;
    Some(Rectangle::new(
        location - Point::from((0, TITLE_HEIGHT)),
        Size::from((width, TITLE_HEIGHT)),
    ))
}

fn close_button(bar: Rectangle<i32, Logical>) -> Rectangle<i32, Logical> {
    let side = CLOSE_SIZE.min(bar.size.w);
    Rectangle::new(
        bar.loc + Point::from((bar.size.w - side, 0)),
        Size::from((side, TITLE_HEIGHT)),
    )
}

/// Which part of `window`'s title bar (its geometry placed at `location`)
/// `point` is on, if any.
pub fn bar_part_at(
    window: &Window,
    location: Point<i32, Logical>,
    point: Point<f64, Logical>,
) -> Option<BarPart> {
    let bar = title_bar(window, location)?;
    if !bar.to_f64().contains(point) {
        return None;
    }
    Some(if close_button(bar).to_f64().contains(point) {
        BarPart::Close
    } else {
        BarPart::Bar
    })
}

/// How far outside a decorated window's frame (title bar included) a press
/// resizes it. Nothing is drawn there: the edge is felt, not seen.
pub const RESIZE_BORDER: i32 = 8;

/// The edges of `window` (its geometry placed at `location`) that a press
/// at `point` would drag: within [`RESIZE_BORDER`] outside its frame, for
/// a window heapland decorates and that is neither maximized nor
/// fullscreen.
pub fn resize_edges_at(
    window: &Window,
    location: Point<i32, Logical>,
    point: Point<f64, Logical>,
) -> Option<crate::resize_grab::Edges> {
    let bar = title_bar(window, location)?;
    let maximized = window.x11_surface().is_some_and(|x| x.is_maximized())
        || window.toplevel().is_some_and(|t| {
            t.current_state()
                .states
                .contains(xdg_toplevel::State::Maximized)
        });
    if maximized {
        return None;
    }
    let size = window.geometry().size;
    let frame = Rectangle::new(bar.loc, Size::from((size.w, size.h + TITLE_HEIGHT))).to_f64();
    let border = f64::from(RESIZE_BORDER);
    let outer = Rectangle::new(
        frame.loc - Point::from((border, border)),
        frame.size + Size::from((2.0 * border, 2.0 * border)),
    );
    if !outer.contains(point) || frame.contains(point) {
        return None;
    }
    crate::resize_grab::Edges::new(
        point.y < frame.loc.y,
        point.y >= frame.loc.y + frame.size.h,
        point.x < frame.loc.x,
        point.x >= frame.loc.x + frame.size.w,
    )
}

/// The solid colours of one window's title bar, kept with the window so the
/// renderer's damage tracking sees them unchanged from frame to frame.
#[derive(Default)]
pub struct TitleBarBuffers {
    pub bar: SolidColorBuffer,
    pub close: SolidColorBuffer,
}

/// One frame's title bar of a window: its buffers and where they go.
pub struct TitleBar {
    pub buffers: TitleBarBuffers,
    pub bar: Rectangle<i32, Logical>,
    pub close: Rectangle<i32, Logical>,
}

/// The title bar of `window` for this frame, its buffers updated; `None` if
/// the window is not decorated.
pub fn title_bar_for_frame(
    window: &Window,
    location: Point<i32, Logical>,
    focused: bool,
) -> Option<TitleBar> {
    let bar = title_bar(window, location)?;
    let close = close_button(bar);
    window
        .user_data()
        .insert_if_missing(|| RefCell::new(TitleBarBuffers::default()));
    let cell = window.user_data().get::<RefCell<TitleBarBuffers>>()?;
    let mut buffers = cell.borrow_mut();
    let color = if focused { BAR_FOCUSED } else { BAR_UNFOCUSED };
    buffers.bar.update(bar.size, color);
    buffers.close.update(close.size, CLOSE_COLOR);
    Some(TitleBar {
        buffers: TitleBarBuffers {
            bar: buffers.bar.clone(),
            close: buffers.close.clone(),
        },
        bar,
        close,
    })
}

delegate_xdg_decoration!(Heapland);
