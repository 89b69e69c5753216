//! X11 apps through Xwayland, with heapland as their window manager.
//!
//! Xwayland is one Wayland client that shows every X11 window in a surface
//! of its own; which X11 window a surface belongs to comes through
//! `xwayland_shell_v1`, a global only Xwayland sees. The window manager's
//! half speaks X11 to the server: Smithay's [`X11Wm`] turns X11 requests
//! (map, configure, move, resize, selections) into [`XwmHandler`] calls.
//!
//! Managed X11 windows are [`Window`]s like xdg toplevels: they cascade,
//! get title bars (unless they draw their own), focus, move, resize and
//! go fullscreen the same way. Override-redirect windows (menus, tooltips)
//! place themselves and never take the keyboard. X11 coordinates are
//! heapland's global ones, so that a menu lands under the window that
//! opened it: every placement of a managed window is also sent to X.
//!
//! Xwayland starts with heapland (when the `Xwayland` program is there and
//! the configuration does not turn it off) and runs for as long as it
//! does; its DISPLAY reaches the programs heapland starts. Smithay 0.7
//! opens the X11 sockets only together with the server, so Xwayland cannot
//! wait for the first X11 client to start.

use std::{os::fd::OwnedFd, process::Stdio};

use smithay::{
    delegate_xwayland_shell,
    desktop::Window,
    input::pointer::{Focus, GrabStartData},
    reexports::wayland_server::{protocol::wl_surface::WlSurface, Client},
    utils::{Logical, Point, Rectangle, Size, SERIAL_COUNTER},
    wayland::{
        selection::{
            data_device::{
                clear_data_device_selection, current_data_device_selection_userdata,
                request_data_device_client_selection, set_data_device_selection,
            },
            primary_selection::{
                clear_primary_selection, current_primary_selection_userdata,
                request_primary_client_selection, set_primary_selection,
            },
            SelectionTarget,
        },
        xwayland_shell::{XWaylandShellHandler, XWaylandShellState},
    },
    xwayland::{
        xwm::{Reorder, ResizeEdge, XwmId},
        X11Surface, X11Wm, XWayland, XWaylandEvent, XwmHandler,
    },
};
use tracing::{info, warn};

use crate::{focus::KeyboardFocusTarget, resize_grab::Edges, state::Heapland};

/// How long autostart programs wait for Xwayland at most.
const HOLD_LIMIT_SECS: u64 = 20;

/// Xwayland's state in the compositor.
pub struct Xwayland {
    shell: XWaylandShellState,
    /// The window manager, once Xwayland is ready.
    wm: Option<X11Wm>,
    /// Xwayland's Wayland connection.
    client: Option<Client>,
    /// Xwayland went away; `wm` stays for Smithay's callbacks.
    dead: bool,
    /// The X11 display (`DISPLAY=:N`), from the moment Xwayland starts:
    /// X11 clients that connect before it is ready wait.
    pub display: Option<u32>,
    /// Autostart and `--exec` programs, held until Xwayland is ready or
    /// known not to come.
    held: Option<Vec<String>>,
    /// The timer that stops holding them after `HOLD_LIMIT_SECS`, removed
    /// once they are released: left armed, it woke an idle compositor.
    hold_timer: Option<smithay::reexports::calloop::RegistrationToken>,
}

impl Xwayland {
    pub fn new(dh: &smithay::reexports::wayland_server::DisplayHandle) -> Self {
        Xwayland {
            shell: XWaylandShellState::new::<Heapland>(dh),
            wm: None,
            client: None,
            dead: false,
            held: None,
            hold_timer: None,
            display: None,
        }
    }

    /// Xwayland's Wayland connection, while it runs.
    pub fn client(&self) -> Option<Client> {
        self.client.clone()
    }

    /// The window manager, while Xwayland runs.
    fn live_wm(&mut self) -> Option<&mut X11Wm> {
        self.wm.as_mut().filter(|_| !self.dead)
    }
}

/// The geometry a managed X11 window had before it was maximized or made
/// fullscreen, to go back to.
struct Restore(std::cell::Cell<Option<Rectangle<i32, Logical>>>);

impl Heapland {
    /// Starts Xwayland; X11 apps can run once it is ready. Without the
    /// `Xwayland` program (Debian's package `xwayland`), heapland runs
    /// without X11 apps and says so once.
    pub fn start_xwayland(&mut self) {
        // Smithay looks for a free display there, and does not make it; an
        // X server makes it when it is missing (world-writable, sticky),
        // and heapland opens the X server's sockets for it.
        let dir = std::path::Path::new("/tmp/.X11-unix");
        if !dir.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            let made = std::fs::create_dir(dir).and_then(|()| {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
            });
            if let Err(err) = made {
                warn!(
                    "cannot start Xwayland: {} is missing and cannot be made ({err}); X11 apps cannot run",
                    dir.display()
                );
                return;
            }
        }
        let dh = self.display_handle.clone();
        let spawned = XWayland::spawn(
            &dh,
            None,
            std::iter::empty::<(String, String)>(),
            true,
            Stdio::null(),
            Stdio::inherit(),
            |_| (),
        );
        let (xwayland, client) = match spawned {
            Ok(spawned) => spawned,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                info!("no Xwayland (install the package xwayland): X11 apps cannot run");
                return;
            }
            Err(err) => {
                warn!("cannot start Xwayland: {err}; X11 apps cannot run");
                return;
            }
        };
        let x_display = xwayland.display_number();
        self.xwayland.client = Some(client.clone());
        let inserted =
            self.loop_handle
                .insert_source(xwayland, move |event, _, state| match event {
                    XWaylandEvent::Ready { x11_socket, .. } => {
                        match X11Wm::start_wm(state.loop_handle.clone(), x11_socket, client.clone())
                        {
                            Ok(wm) => {
                                info!("Xwayland is ready on DISPLAY=:{x_display}");
                                state.xwayland.wm = Some(wm);
                                state.set_x11_cursor();
                                state.release_held_programs();
                            }
                            Err(err) => {
                                warn!(
                                    "cannot manage Xwayland's windows: {err}; X11 apps cannot run"
                                );
                                state.xwayland.display = None;
                                state.release_held_programs();
                            }
                        }
                    }
                    XWaylandEvent::Error => {
                        warn!("Xwayland exited while starting: X11 apps cannot run");
                        state.xwayland.display = None;
                        state.release_held_programs();
                    }
                });
        match inserted {
            Ok(_) => {
                self.xwayland.display = Some(x_display);
                self.xwayland.held = Some(Vec::new());
                // An Xwayland that neither gets ready nor fails does not
                // keep the session's programs from starting.
                let timer = smithay::reexports::calloop::timer::Timer::from_duration(
                    std::time::Duration::from_secs(HOLD_LIMIT_SECS),
                );
                let held = self.loop_handle.insert_source(timer, |_, _, state| {
                    // Dropped by the return below, not by the release.
                    state.xwayland.hold_timer = None;
                    if state.xwayland.held.is_some() {
                        warn!("Xwayland is not ready after {HOLD_LIMIT_SECS} s: starting programs anyway");
                        state.release_held_programs();
                    }
                    smithay::reexports::calloop::timer::TimeoutAction::Drop
                });
                match held {
                    Ok(token) => self.xwayland.hold_timer = Some(token),
                    Err(err) => {
                        warn!("cannot time Xwayland's start: {}", err.error);
                        self.release_held_programs();
                    }
                }
            }
            Err(err) => warn!("cannot watch Xwayland: {}; X11 apps cannot run", err.error),
        }
    }

    /// Starts the autostart and `--exec` programs now, or once Xwayland
    /// is ready if it is starting.
    pub fn spawn_at_start(&mut self, programs: Vec<String>) {
        match self.xwayland.held.as_mut() {
            Some(held) => held.extend(programs),
            None => {
                for program in &programs {
                    crate::spawn::spawn(program, &self.child_env());
                }
            }
        }
    }

    /// Xwayland is ready, or will not be: the held programs start, and the
    /// timer that would have started them goes.
    fn release_held_programs(&mut self) {
        if let Some(token) = self.xwayland.hold_timer.take() {
            self.loop_handle.remove(token);
        }
        for program in self.xwayland.held.take().unwrap_or_default() {
            crate::spawn::spawn(&program, &self.child_env());
        }
    }

    /// The mapped window showing the X11 window `x11`.
    fn window_of_x11(&self, x11: &X11Surface) -> Option<Window> {
        self.space
            .elements()
            .find(|w| w.x11_surface() == Some(x11))
            .cloned()
    }

    /// Puts a managed X11 window at `geometry` in both heapland's space
    /// and the X server. A window no longer on the screen (unmapped in
    /// the middle of a drag) stays off it.
    pub fn place_x11(
        &mut self,
        window: &Window,
        x11: &X11Surface,
        geometry: Rectangle<i32, Logical>,
    ) {
        if self.space.element_location(window).is_none() {
            return;
        }
        if let Err(err) = x11.configure(geometry) {
            warn!("cannot configure X11 window {}: {err}", x11.window_id());
        }
        self.space.map_element(window.clone(), geometry.loc, false);
        self.queue_redraw_all();
    }

    /// Fills `area` with `window` (maximize, fullscreen), remembering where
    /// it was; `None` puts it back.
    fn fill_x11(&mut self, x11: &X11Surface, area: Option<Rectangle<i32, Logical>>) {
        let Some(window) = self.window_of_x11(x11) else {
            return;
        };
        let restore = window
            .user_data()
            .get_or_insert(|| Restore(std::cell::Cell::new(None)));
        match area {
            Some(area) => {
                if restore.0.get().is_none() {
                    let loc = self.space.element_location(&window).unwrap_or_default();
                    restore
                        .0
                        .set(Some(Rectangle::new(loc, x11.geometry().size)));
                }
                self.place_x11(&window, x11, area);
            }
            None => {
                if let Some(before) = restore.0.take() {
                    self.place_x11(&window, x11, before);
                }
            }
        }
    }

    /// The area a maximized X11 window fills: its output's usable area,
    /// below its title bar.
    fn maximized_area(&self, window: &Window) -> Option<Rectangle<i32, Logical>> {
        let output = self
            .output_of_window(window)
            .or_else(|| self.outputs.first().cloned())?;
        let mut area = self.usable_area_of(&output)?;
        let margin = crate::decoration::top_margin(window);
        area.loc.y += margin;
        area.size.h = (area.size.h - margin).max(1);
        Some(area)
    }

    /// Closes an X11 window the polite way (`WM_DELETE_WINDOW`), or kills
    /// its client when it does not take that.
    pub fn close_x11(x11: &X11Surface) {
        if let Err(err) = x11.close() {
            warn!("cannot close X11 window {}: {err}", x11.window_id());
        }
    }

    /// Toggles fullscreen on an X11 window.
    pub fn toggle_x11_fullscreen(&mut self, x11: &X11Surface) {
        let fullscreen = !x11.is_fullscreen();
        let area = if fullscreen {
            let area = self
                .window_of_x11(x11)
                .and_then(|w| self.fullscreen_area(&w));
            if area.is_none() {
                return;
            }
            area
        } else if x11.is_maximized() {
            // Back to maximized, not to where it was before either.
            self.window_of_x11(x11)
                .and_then(|w| self.maximized_area(&w))
        } else {
            None
        };
        if let Err(err) = x11.set_fullscreen(fullscreen) {
            warn!(
                "cannot tell X11 window {} it is fullscreen: {err}",
                x11.window_id()
            );
        }
        match area {
            Some(area) if !fullscreen => {
                if let Some(window) = self.window_of_x11(x11) {
                    self.place_x11(&window, x11, area);
                }
            }
            area => self.fill_x11(x11, area),
        }
    }

    /// The output an X11 window fills when fullscreen.
    fn fullscreen_area(&self, window: &Window) -> Option<Rectangle<i32, Logical>> {
        let output = self
            .output_of_window(window)
            .or_else(|| self.outputs.first().cloned())?;
        self.space.output_geometry(&output)
    }

    /// After a fullscreen or maximized X11 window moved to another output:
    /// it fills that one.
    pub fn refill_x11(&mut self, window: &Window) {
        let Some(x11) = window.x11_surface().cloned() else {
            return;
        };
        let area = if x11.is_fullscreen() {
            self.fullscreen_area(window)
        } else if x11.is_maximized() {
            self.maximized_area(window)
        } else {
            None
        };
        if let Some(area) = area {
            self.place_x11(window, &x11, area);
        }
    }

    /// Toggles maximized on an X11 window.
    pub fn toggle_x11_maximized(&mut self, x11: &X11Surface) {
        let maximized = !x11.is_maximized();
        let area = if maximized {
            match self
                .window_of_x11(x11)
                .and_then(|w| self.maximized_area(&w))
            {
                Some(area) => Some(area),
                None => return,
            }
        } else {
            None
        };
        if let Err(err) = x11.set_maximized(maximized) {
            warn!(
                "cannot tell X11 window {} it is maximized: {err}",
                x11.window_id()
            );
        }
        if x11.is_fullscreen() {
            // Fullscreen stays over it; leaving fullscreen finds it.
            return;
        }
        self.fill_x11(x11, area);
    }

    /// X11 windows that set no cursor of their own show the theme's arrow.
    pub fn set_x11_cursor(&mut self) {
        let (Some(wm), Some(pixels)) =
            (self.xwayland.live_wm(), self.cursor_theme.pixels("default"))
        else {
            return;
        };
        let size = Size::from(pixels.size);
        let hotspot = Point::from(pixels.hotspot);
        if let Err(err) = wm.set_cursor(&pixels.pixels, size, hotspot) {
            warn!("cannot set X11's cursor: {err}");
        }
    }

    /// Where an X11 window heapland manages sits after a move: X learns it,
    /// so that its menus open under it.
    pub fn x11_moved(&self, window: &Window) {
        if let (Some(x11), Some(loc)) = (window.x11_surface(), self.space.element_location(window))
        {
            if let Err(err) = x11.configure(Rectangle::new(loc, x11.geometry().size)) {
                warn!("cannot configure X11 window {}: {err}", x11.window_id());
            }
        }
    }

    /// Raises an X11 window in the X server's stack as heapland raises it.
    pub fn raise_x11(&mut self, window: &Window) {
        if let (Some(wm), Some(x11)) = (self.xwayland.live_wm(), window.x11_surface()) {
            if let Err(err) = wm.raise_window(x11) {
                warn!("cannot raise X11 window {}: {err}", x11.window_id());
            }
        }
    }

    /// The clipboard (or primary selection) changed on the Wayland side:
    /// X11 clients see it as the owner of theirs.
    pub fn wayland_selection_changed(
        &mut self,
        target: SelectionTarget,
        mime_types: Option<Vec<String>>,
    ) {
        if let Some(wm) = self.xwayland.live_wm() {
            if let Err(err) = wm.new_selection(target, mime_types) {
                warn!("cannot hand the selection to X11: {err}");
            }
            // Smithay 0.7 queues the new owner without sending it: X11
            // clients would ask the old one until the next X11 request. This
            // one (the stacking order, unchanged) flushes the connection.
            let stack: Vec<&X11Surface> = self
                .space
                .elements()
                .filter_map(Window::x11_surface)
                .collect();
            if let Err(err) = wm.update_stacking_order_upwards(stack.into_iter()) {
                warn!("cannot hand the selection to X11: {err}");
            }
        }
    }

    /// A Wayland client pastes what an X11 client owns.
    pub fn send_x11_selection(&mut self, target: SelectionTarget, mime_type: String, fd: OwnedFd) {
        let handle = self.loop_handle.clone();
        if let Some(wm) = self.xwayland.live_wm() {
            if let Err(err) = wm.send_selection(target, mime_type, fd, handle) {
                warn!("cannot read the X11 selection: {err}");
            }
        }
    }

    /// Starts a pointer grab for an X11 window's own move or resize
    /// request (`_NET_WM_MOVERESIZE`): only while a button pressed on
    /// that window is held. The request's button is X11's number (1 to 3,
    /// or 0 for any), not an evdev code: the held one is the grab's.
    fn x11_grab_start(&self, x11: &X11Surface) -> Option<GrabStartData<Heapland>> {
        let pointer = self.seat.get_pointer()?;
        let start = pointer.grab_start_data()?;
        let surface = crate::xwayland_surface::surface_of_x11(x11)?;
        start
            .focus
            .as_ref()
            .is_some_and(|(s, _)| *s == surface)
            .then_some(start)
    }
}

impl XWaylandShellHandler for Heapland {
    fn xwayland_shell_state(&mut self) -> &mut XWaylandShellState {
        &mut self.xwayland.shell
    }

    /// Xwayland 23.1 and later: the window's first commit may have come
    /// before the pairing, and would not have been seen as the window's.
    fn surface_associated(&mut self, _xwm: XwmId, wl_surface: WlSurface, x11: X11Surface) {
        if let Some(window) = self.window_of_x11(&x11) {
            self.x11_surface_paired(&window, &wl_surface);
        }
    }
}

delegate_xwayland_shell!(Heapland);

impl XwmHandler for Heapland {
    fn xwm_state(&mut self, _xwm: XwmId) -> &mut X11Wm {
        self.xwayland
            .wm
            .as_mut()
            .expect("X11Wm calls its handler only while it exists")
    }

    fn new_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    fn new_override_redirect_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    /// A managed window cascades as xdg toplevels do, at the size it asked
    /// for; it takes the keyboard with its first buffer.
    fn map_window_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if let Err(err) = x11.set_mapped(true) {
            warn!("cannot map X11 window {}: {err}", x11.window_id());
            return;
        }
        crate::xwayland_surface::mapped(&x11, self.surfaces_made);
        let window = Window::new_x11_window(x11.clone());
        self.map_toplevel(window.clone());
        let loc = self.space.element_location(&window).unwrap_or_default();
        self.place_x11(&window, &x11, Rectangle::new(loc, x11.geometry().size));
        self.raise_x11(&window);
    }

    /// Menus and tooltips are where they put themselves.
    fn mapped_override_redirect_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        let loc = x11.geometry().loc;
        // Not activated: a menu leaves the focused window the active one.
        self.space
            .map_element(Window::new_x11_window(x11), loc, false);
        self.queue_redraw_all();
    }

    fn unmapped_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        self.forget_x11(&x11);
        if !x11.is_override_redirect() {
            // A withdrawn window is neither maximized nor fullscreen any
            // more (EWMH): mapped again, it starts as a new window.
            let _ = x11.set_maximized(false);
            let _ = x11.set_fullscreen(false);
            if let Err(err) = x11.set_mapped(false) {
                warn!("cannot unmap X11 window {}: {err}", x11.window_id());
            }
        }
    }

    fn destroyed_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        self.forget_x11(&x11);
    }

    /// Managed windows choose their size, heapland their place; windows
    /// not shown yet take both.
    fn configure_request(
        &mut self,
        _xwm: XwmId,
        x11: X11Surface,
        x: Option<i32>,
        y: Option<i32>,
        w: Option<u32>,
        h: Option<u32>,
        _reorder: Option<Reorder>,
    ) {
        let mut geometry = x11.geometry();
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX).max(1);
        if let Some(w) = w {
            geometry.size.w = clamp(w);
        }
        if let Some(h) = h {
            geometry.size.h = clamp(h);
        }
        match self.window_of_x11(&x11) {
            Some(window) => {
                geometry.loc = self.space.element_location(&window).unwrap_or(geometry.loc);
                self.place_x11(&window, &x11, geometry);
            }
            None => {
                geometry.loc.x = x.unwrap_or(geometry.loc.x);
                geometry.loc.y = y.unwrap_or(geometry.loc.y);
                if let Err(err) = x11.configure(geometry) {
                    warn!("cannot configure X11 window {}: {err}", x11.window_id());
                }
            }
        }
    }

    /// Override-redirect windows move themselves.
    fn configure_notify(
        &mut self,
        _xwm: XwmId,
        x11: X11Surface,
        geometry: Rectangle<i32, Logical>,
        _above: Option<u32>,
    ) {
        if !x11.is_override_redirect() {
            return;
        }
        if let Some(window) = self.window_of_x11(&x11) {
            self.space.map_element(window, geometry.loc, false);
            self.queue_redraw_all();
        }
    }

    fn maximize_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if !x11.is_maximized() {
            self.toggle_x11_maximized(&x11);
        }
    }

    fn unmaximize_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if x11.is_maximized() {
            self.toggle_x11_maximized(&x11);
        }
    }

    fn fullscreen_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if !x11.is_fullscreen() {
            self.toggle_x11_fullscreen(&x11);
        }
    }

    fn unfullscreen_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if x11.is_fullscreen() {
            self.toggle_x11_fullscreen(&x11);
        }
    }

    fn resize_request(&mut self, _xwm: XwmId, x11: X11Surface, _button: u32, edge: ResizeEdge) {
        let edges = match edge {
            ResizeEdge::Top => Edges::new(true, false, false, false),
            ResizeEdge::Bottom => Edges::new(false, true, false, false),
            ResizeEdge::Left => Edges::new(false, false, true, false),
            ResizeEdge::Right => Edges::new(false, false, false, true),
            ResizeEdge::TopLeft => Edges::new(true, false, true, false),
            ResizeEdge::TopRight => Edges::new(true, false, false, true),
            ResizeEdge::BottomLeft => Edges::new(false, true, true, false),
            ResizeEdge::BottomRight => Edges::new(false, true, false, true),
        };
        let (Some(window), Some(edges), Some(start)) =
            (self.window_of_x11(&x11), edges, self.x11_grab_start(&x11))
        else {
            return;
        };
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        if let Some(grab) = crate::resize_grab::ResizeGrab::new(self, start, window, edges) {
            pointer.set_grab(self, grab, SERIAL_COUNTER.next_serial(), Focus::Clear);
        }
    }

    fn move_request(&mut self, _xwm: XwmId, x11: X11Surface, _button: u32) {
        if let (Some(window), Some(start)) = (self.window_of_x11(&x11), self.x11_grab_start(&x11)) {
            self.set_move_grab(window, start, SERIAL_COUNTER.next_serial());
        }
    }

    /// X11 clients read the Wayland clipboard only while an X11 window has
    /// the keyboard: the rule Wayland clients live by.
    fn allow_selection_access(&mut self, _xwm: XwmId, _selection: SelectionTarget) -> bool {
        matches!(
            self.seat.get_keyboard().and_then(|k| k.current_focus()),
            Some(KeyboardFocusTarget::X11 { .. })
        )
    }

    fn send_selection(
        &mut self,
        _xwm: XwmId,
        selection: SelectionTarget,
        mime_type: String,
        fd: OwnedFd,
    ) {
        let result = match selection {
            SelectionTarget::Clipboard => {
                request_data_device_client_selection(&self.seat, mime_type, fd)
                    .map_err(|e| e.to_string())
            }
            SelectionTarget::Primary => request_primary_client_selection(&self.seat, mime_type, fd)
                .map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            warn!("an X11 client cannot read the Wayland {selection:?} selection: {err}");
        }
    }

    /// An X11 client took the selection: Wayland clients see heapland as
    /// its owner, and their pastes are answered from X11.
    fn new_selection(&mut self, _xwm: XwmId, selection: SelectionTarget, mime_types: Vec<String>) {
        let dh = self.display_handle.clone();
        match selection {
            SelectionTarget::Clipboard => {
                set_data_device_selection(&dh, &self.seat, mime_types, ())
            }
            SelectionTarget::Primary => set_primary_selection(&dh, &self.seat, mime_types, ()),
        }
    }

    /// The X11 owner gave up its selection: gone for Wayland too, if it
    /// still was X11's.
    fn cleared_selection(&mut self, _xwm: XwmId, selection: SelectionTarget) {
        let dh = self.display_handle.clone();
        match selection {
            SelectionTarget::Clipboard => {
                if current_data_device_selection_userdata(&self.seat).is_some() {
                    clear_data_device_selection(&dh, &self.seat);
                }
            }
            SelectionTarget::Primary => {
                if current_primary_selection_userdata(&self.seat).is_some() {
                    clear_primary_selection(&dh, &self.seat);
                }
            }
        }
    }

    /// Xwayland went away. The window manager stays (dead): transfers
    /// Smithay still has in the event loop call back into it. Its windows
    /// leave the screen and the keyboard.
    fn disconnected(&mut self, _xwm: XwmId) {
        warn!("Xwayland's window manager connection closed: X11 apps cannot run");
        self.xwayland.dead = true;
        self.xwayland.client = None;
        self.xwayland.display = None;
        self.release_held_programs();
        let x11_windows: Vec<Window> = self
            .space
            .elements()
            .filter(|w| w.x11_surface().is_some())
            .cloned()
            .collect();
        for window in &x11_windows {
            self.space.unmap_elem(window);
        }
        if matches!(
            self.seat.get_keyboard().and_then(|k| k.current_focus()),
            Some(KeyboardFocusTarget::X11 { .. })
        ) {
            self.focus_topmost();
        }
        self.queue_redraw_all();
    }
}

impl Heapland {
    /// An X11 window left the screen: it leaves the space, and the
    /// keyboard if it had it.
    fn forget_x11(&mut self, x11: &X11Surface) {
        crate::xwayland_surface::unpair(x11);
        if let Some(window) = self.window_of_x11(x11) {
            self.space.unmap_elem(&window);
            self.queue_redraw_all();
        }
        let had_focus = matches!(
            self.seat.get_keyboard().and_then(|k| k.current_focus()),
            Some(KeyboardFocusTarget::X11 { window, .. }) if *window == *x11
        );
        if had_focus {
            self.focus_topmost();
        }
    }
}
