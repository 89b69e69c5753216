//! Clipboard, drag and drop (`wl_data_device_manager`) and primary selection
//! (`zwp_primary_selection_device_manager_v1`), and the clipboard managers'
//! access to both (`ext_data_control_v1`, and `zwlr_data_control_v1` for
//! Debian 12's wl-clipboard).
//!
//! The compositor holds no data of its own: Smithay relays offers between
//! clients (X11 ones through Xwayland's window manager), and the selection
//! follows keyboard focus as the protocols require. Clients such as foot refuse to start without a data device.
//! Data control reads and sets the selection without focus, so sandboxed
//! clients do not see it: they could read every copy.

use smithay::{
    delegate_data_control, delegate_data_device, delegate_ext_data_control,
    delegate_primary_selection,
    input::Seat,
    reexports::wayland_server::DisplayHandle,
    wayland::selection::{
        data_device::{
            set_data_device_focus, ClientDndGrabHandler, DataDeviceHandler, DataDeviceState,
            ServerDndGrabHandler,
        },
        ext_data_control,
        primary_selection::{set_primary_focus, PrimarySelectionHandler, PrimarySelectionState},
        wlr_data_control, SelectionHandler, SelectionSource, SelectionTarget,
    },
};
use smithay::{
    reexports::wayland_server::protocol::{wl_data_source::WlDataSource, wl_surface::WlSurface},
    utils::{Logical, Point},
    wayland::compositor::{with_states, SurfaceAttributes},
};
use std::os::fd::OwnedFd;

use crate::{security_context::is_sandboxed, state::Heapland};

/// The two data-control globals, for unsandboxed clients.
pub struct DataControl {
    ext: ext_data_control::DataControlState,
    wlr: wlr_data_control::DataControlState,
}

impl DataControl {
    pub fn new(dh: &DisplayHandle, primary: &PrimarySelectionState) -> Self {
        DataControl {
            ext: ext_data_control::DataControlState::new::<Heapland, _>(
                dh,
                Some(primary),
                |client| !is_sandboxed(client),
            ),
            wlr: wlr_data_control::DataControlState::new::<Heapland, _>(
                dh,
                Some(primary),
                |client| !is_sandboxed(client),
            ),
        }
    }
}

impl ext_data_control::DataControlHandler for Heapland {
    fn data_control_state(&self) -> &ext_data_control::DataControlState {
        &self.data_control.ext
    }
}

impl wlr_data_control::DataControlHandler for Heapland {
    fn data_control_state(&self) -> &wlr_data_control::DataControlState {
        &self.data_control.wlr
    }
}

/// The only selections heapland owns are X11 clients': Xwayland's window
/// manager bridges them both ways.
impl SelectionHandler for Heapland {
    type SelectionUserData = ();

    /// A Wayland client (or a clipboard manager) set the selection: X11
    /// clients see it too.
    fn new_selection(
        &mut self,
        ty: SelectionTarget,
        source: Option<SelectionSource>,
        _seat: Seat<Self>,
    ) {
        self.wayland_selection_changed(ty, source.map(|s| s.mime_types()));
    }

    /// A Wayland client pastes what an X11 client copied.
    fn send_selection(
        &mut self,
        ty: SelectionTarget,
        mime_type: String,
        fd: OwnedFd,
        _seat: Seat<Self>,
        _user_data: &(),
    ) {
        self.send_x11_selection(ty, mime_type, fd);
    }
}

impl DataDeviceHandler for Heapland {
    fn data_device_state(&self) -> &DataDeviceState {
        &self.data_device_state
    }
}

/// A drag's icon (the surface a client gave `start_drag`) follows the
/// pointer until the drop.
impl ClientDndGrabHandler for Heapland {
    fn started(
        &mut self,
        _source: Option<WlDataSource>,
        icon: Option<WlSurface>,
        _seat: Seat<Self>,
    ) {
        self.dnd_icon = icon.map(|surface| DndIcon {
            surface,
            offset: Point::default(),
        });
        self.queue_redraw_all();
    }

    fn dropped(&mut self, _target: Option<WlSurface>, _validated: bool, _seat: Seat<Self>) {
        self.dnd_icon = None;
        self.queue_redraw_all();
    }
}

/// The icon of the drag in progress, and where it is relative to the
/// pointer: the sum of the offsets its commits carried (`wl_surface.offset`
/// or `attach`'s x and y).
pub struct DndIcon {
    pub surface: WlSurface,
    pub offset: Point<i32, Logical>,
}

/// A commit of the drag icon moves it by its buffer offset.
pub fn dnd_icon_committed(state: &mut Heapland, surface: &WlSurface) {
    let Some(icon) = state.dnd_icon.as_mut().filter(|i| &i.surface == surface) else {
        return;
    };
    let delta = with_states(surface, |states| {
        states
            .cached_state
            .get::<SurfaceAttributes>()
            .current()
            .buffer_delta
            .take()
    });
    if let Some(delta) = delta {
        icon.offset += delta;
    }
    state.queue_redraw_all();
}

/// The compositor never starts drags itself.
impl ServerDndGrabHandler for Heapland {}

impl PrimarySelectionHandler for Heapland {
    fn primary_selection_state(&self) -> &PrimarySelectionState {
        &self.primary_selection_state
    }
}

/// Moves both selections to the client that now has keyboard focus, which
/// may then read (paste) them.
pub fn focus_changed(
    state: &Heapland,
    seat: &Seat<Heapland>,
    focused: Option<&smithay::reexports::wayland_server::protocol::wl_surface::WlSurface>,
) {
    use smithay::reexports::wayland_server::Resource;
    let client = focused.and_then(|s| state.display_handle.get_client(s.id()).ok());
    set_data_device_focus(&state.display_handle, seat, client.clone());
    set_primary_focus(&state.display_handle, seat, client);
}

delegate_data_device!(Heapland);
delegate_data_control!(Heapland);
delegate_ext_data_control!(Heapland);
delegate_primary_selection!(Heapland);
