//! Other clients' windows, for task bars, docks and window switchers:
//! `ext_foreign_toplevel_list_v1` (the list: title, app id) and
//! `zwlr_foreign_toplevel_manager_v1` version 3 (also state and outputs,
//! and requests to activate, close, maximize and fullscreen).
//!
//! Both follow the mapped windows, compared once per turn of the event loop
//! with what their clients were last told ([`Heapland::update_foreign_toplevels`]):
//! a title that changes ten times in a turn is one event. heapland has no
//! minimized state; minimize requests are ignored, as the protocol allows.
//!
//! Seeing and steering every window is not for sandboxed clients.

use smithay::{
    delegate_foreign_toplevel_list,
    desktop::Window,
    output::Output,
    reexports::{
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_protocols_wlr::foreign_toplevel::v1::server::{
            zwlr_foreign_toplevel_handle_v1::{self, ZwlrForeignToplevelHandleV1},
            zwlr_foreign_toplevel_manager_v1::{self, ZwlrForeignToplevelManagerV1},
        },
        wayland_server::{
            backend::ClientId, protocol::wl_surface::WlSurface, Client, DataInit, Dispatch,
            DisplayHandle, GlobalDispatch, New, Resource,
        },
    },
    wayland::{
        compositor::with_states,
        foreign_toplevel_list::{
            ForeignToplevelHandle, ForeignToplevelListHandler, ForeignToplevelListState,
        },
        shell::xdg::{XdgShellHandler, XdgToplevelSurfaceData},
    },
};

use crate::{security_context::is_sandboxed, state::Heapland, xwayland_surface::surface_of};

/// The two globals and what their clients were told of each window.
#[derive(Debug)]
pub struct ForeignToplevels {
    list: ForeignToplevelListState,
    managers: Vec<ZwlrForeignToplevelManagerV1>,
    windows: Vec<Entry>,
}

/// One mapped window as the clients know it.
#[derive(Debug)]
struct Entry {
    surface: WlSurface,
    list_handle: ForeignToplevelHandle,
    handles: Vec<ZwlrForeignToplevelHandleV1>,
    told: Told,
}

/// What a window's handles last said.
#[derive(Debug, Clone, PartialEq, Default)]
struct Told {
    title: String,
    app_id: String,
    states: Vec<u32>,
    outputs: Vec<Output>,
}

impl ForeignToplevels {
    pub fn new(dh: &DisplayHandle) -> Self {
        dh.create_global::<Heapland, ZwlrForeignToplevelManagerV1, ()>(3, ());
        ForeignToplevels {
            list: ForeignToplevelListState::new_with_filter::<Heapland>(dh, |client| {
                !is_sandboxed(client)
            }),
            managers: Vec::new(),
            windows: Vec::new(),
        }
    }
}

/// `zwlr_foreign_toplevel_handle_v1.state` values.
const MAXIMIZED: u32 = 0;
const ACTIVATED: u32 = 2;
const FULLSCREEN: u32 = 3;

impl Heapland {
    /// What `window`, shown in `surface`, shows the world now.
    fn told_of(&self, window: &Window, surface: &WlSurface) -> Told {
        let focused = self
            .seat
            .get_keyboard()
            .and_then(|k| k.current_focus())
            .is_some_and(|f| f.surface() == surface);
        let (title, app_id, maximized, fullscreen) = match (window.toplevel(), window.x11_surface())
        {
            (Some(toplevel), _) => {
                let (title, app_id) = with_states(toplevel.wl_surface(), |states| {
                    states
                        .data_map
                        .get::<XdgToplevelSurfaceData>()
                        .and_then(|d| d.lock().ok())
                        .map(|d| {
                            (
                                d.title.clone().unwrap_or_default(),
                                d.app_id.clone().unwrap_or_default(),
                            )
                        })
                        .unwrap_or_default()
                });
                let current = toplevel.current_state();
                (
                    title,
                    app_id,
                    current.states.contains(xdg_toplevel::State::Maximized),
                    current.states.contains(xdg_toplevel::State::Fullscreen),
                )
            }
            // An X11 window's class (WM_CLASS) is what task bars match
            // with desktop files, as they do app ids.
            (None, Some(x11)) => (
                x11.title(),
                x11.class(),
                x11.is_maximized(),
                x11.is_fullscreen(),
            ),
            (None, None) => Default::default(),
        };
        let mut states = Vec::new();
        if maximized {
            states.push(MAXIMIZED);
        }
        if focused {
            states.push(ACTIVATED);
        }
        if fullscreen {
            states.push(FULLSCREEN);
        }
        Told {
            title,
            app_id,
            states,
            outputs: self.space.outputs_for_element(window),
        }
    }

    /// Brings both protocols' clients up to date with the mapped windows:
    /// new ones announced, gone ones closed, changes sent. Called once at
    /// the end of each turn of the event loop.
    pub fn update_foreign_toplevels(&mut self) {
        let dh = self.display_handle.clone();
        // xdg toplevels, and the X11 windows heapland manages once they
        // show.
        let windows: Vec<(Window, WlSurface)> = self
            .space
            .elements()
            .filter(|w| {
                // Not menus, tooltips, notifications or splash screens.
                !w.x11_surface().is_some_and(|x| {
                    use smithay::xwayland::xwm::WmWindowType as T;
                    x.is_override_redirect()
                        || matches!(
                            x.window_type(),
                            Some(
                                T::Notification
                                    | T::Splash
                                    | T::Tooltip
                                    | T::Menu
                                    | T::PopupMenu
                                    | T::DropdownMenu
                            )
                        )
                })
            })
            .filter_map(|w| Some((w.clone(), surface_of(w)?)))
            .collect();
        let mut list = std::mem::take(&mut self.foreign_toplevels.windows);
        list.retain(|entry| {
            let mapped = windows.iter().any(|(_, s)| *s == entry.surface);
            if !mapped {
                for handle in entry.handles.iter().filter(|h| h.is_alive()) {
                    handle.closed();
                }
                self.foreign_toplevels
                    .list
                    .remove_toplevel(&entry.list_handle);
            }
            mapped
        });
        self.foreign_toplevels.managers.retain(|m| m.is_alive());
        for (window, surface) in &windows {
            let now = self.told_of(window, surface);
            match list.iter_mut().find(|e| e.surface == *surface) {
                Some(entry) => {
                    if entry.told != now {
                        send_changes(entry, &now);
                        entry.told = now;
                    }
                }
                None => {
                    // The list handle and each manager's handle start with
                    // the window as it is now.
                    let list_handle = self
                        .foreign_toplevels
                        .list
                        .new_toplevel::<Heapland>(now.title.clone(), now.app_id.clone());
                    let mut entry = Entry {
                        surface: surface.clone(),
                        list_handle,
                        handles: Vec::new(),
                        told: now,
                    };
                    for manager in &self.foreign_toplevels.managers {
                        announce(&dh, manager, &mut entry);
                    }
                    list.push(entry);
                }
            }
        }
        self.foreign_toplevels.windows = list;
    }

    /// The mapped window of `surface`, for a handle's request.
    fn foreign_target(&self, surface: &WlSurface) -> Option<Window> {
        self.window_of_surface(surface).cloned()
    }
}

/// Creates `manager`'s handle of `entry`'s window and tells it the window
/// as the other handles know it.
fn announce(dh: &DisplayHandle, manager: &ZwlrForeignToplevelManagerV1, entry: &mut Entry) {
    let Some(client) = manager.client() else {
        return;
    };
    if let Ok(handle) = client.create_resource::<ZwlrForeignToplevelHandleV1, WlSurface, Heapland>(
        dh,
        manager.version(),
        entry.surface.clone(),
    ) {
        manager.toplevel(&handle);
        // The new handle has heard nothing: tell it everything.
        send_all(&handle, &entry.told, &Told::default());
        entry.handles.push(handle);
    }
}

/// Sends each handle of `entry` what changed from its last state to `now`.
fn send_changes(entry: &Entry, now: &Told) {
    for handle in entry.handles.iter().filter(|h| h.is_alive()) {
        send_all(handle, now, &entry.told);
    }
    // The list carries only titles and app ids.
    let title = now.title != entry.told.title;
    let app_id = now.app_id != entry.told.app_id;
    if title {
        entry.list_handle.send_title(&now.title);
    }
    if app_id {
        entry.list_handle.send_app_id(&now.app_id);
    }
    if title || app_id {
        entry.list_handle.send_done();
    }
}

/// What `handle` must hear to go from `before` to `now`, then `done`. A
/// new handle (`before` empty) hears everything, even an empty title: it
/// must get its first `done`.
fn send_all(handle: &ZwlrForeignToplevelHandleV1, now: &Told, before: &Told) {
    if now.title != before.title || before == &Told::default() {
        handle.title(now.title.clone());
    }
    if now.app_id != before.app_id || before == &Told::default() {
        handle.app_id(now.app_id.clone());
    }
    if let Some(client) = handle.client() {
        for output in before.outputs.iter().filter(|o| !now.outputs.contains(o)) {
            for wl_output in output.client_outputs(&client) {
                handle.output_leave(&wl_output);
            }
        }
        for output in now.outputs.iter().filter(|o| !before.outputs.contains(o)) {
            for wl_output in output.client_outputs(&client) {
                handle.output_enter(&wl_output);
            }
        }
    }
    let bytes: Vec<u8> = now.states.iter().flat_map(|s| s.to_ne_bytes()).collect();
    handle.state(bytes);
    handle.done();
}

impl GlobalDispatch<ZwlrForeignToplevelManagerV1, ()> for Heapland {
    fn bind(
        state: &mut Self,
        dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwlrForeignToplevelManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        let manager = data_init.init(resource, ());
        // Each window as the other managers know it.
        for entry in &mut state.foreign_toplevels.windows {
            announce(dh, &manager, entry);
        }
        state.foreign_toplevels.managers.push(manager);
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

impl Dispatch<ZwlrForeignToplevelManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        manager: &ZwlrForeignToplevelManagerV1,
        request: zwlr_foreign_toplevel_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        if let zwlr_foreign_toplevel_manager_v1::Request::Stop = request {
            manager.finished();
            state.foreign_toplevels.managers.retain(|m| m != manager);
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: ClientId,
        manager: &ZwlrForeignToplevelManagerV1,
        _data: &(),
    ) {
        state.foreign_toplevels.managers.retain(|m| m != manager);
    }
}

impl Dispatch<ZwlrForeignToplevelHandleV1, WlSurface> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        _handle: &ZwlrForeignToplevelHandleV1,
        request: zwlr_foreign_toplevel_handle_v1::Request,
        surface: &WlSurface,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use zwlr_foreign_toplevel_handle_v1::Request;
        // A closed window's handle: its requests change nothing.
        let Some(window) = state.foreign_target(surface) else {
            return;
        };
        if let Some(x11) = window.x11_surface().cloned() {
            match request {
                Request::Activate { .. } => state.focus_surface(surface),
                Request::Close => Heapland::close_x11(&x11),
                Request::SetMaximized if !x11.is_maximized() => state.toggle_x11_maximized(&x11),
                Request::UnsetMaximized if x11.is_maximized() => state.toggle_x11_maximized(&x11),
                Request::SetFullscreen { .. } if !x11.is_fullscreen() => {
                    state.toggle_x11_fullscreen(&x11)
                }
                Request::UnsetFullscreen if x11.is_fullscreen() => {
                    state.toggle_x11_fullscreen(&x11)
                }
                _ => {}
            }
            return;
        }
        let Some(toplevel) = window.toplevel().cloned() else {
            return;
        };
        match request {
            Request::Activate { .. } => state.focus_surface(toplevel.wl_surface()),
            Request::Close => toplevel.send_close(),
            Request::SetMaximized => state.maximize_request(toplevel),
            Request::UnsetMaximized => state.unmaximize_request(toplevel),
            Request::SetFullscreen { output } => state.fullscreen_request(toplevel, output),
            Request::UnsetFullscreen => state.unfullscreen_request(toplevel),
            // No minimized state; set_rectangle is a hint for it.
            _ => {}
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: ClientId,
        handle: &ZwlrForeignToplevelHandleV1,
        _data: &WlSurface,
    ) {
        for entry in &mut state.foreign_toplevels.windows {
            entry.handles.retain(|h| h != handle);
        }
    }
}

impl ForeignToplevelListHandler for Heapland {
    fn foreign_toplevel_list_state(&mut self) -> &mut ForeignToplevelListState {
        &mut self.foreign_toplevels.list
    }
}

delegate_foreign_toplevel_list!(Heapland);
