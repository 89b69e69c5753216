//! Clipboard, drag and drop (`wl_data_device_manager`) and primary selection
//! (`zwp_primary_selection_device_manager_v1`).
//!
//! The compositor holds no data of its own: Smithay relays offers between
//! clients, and the selection follows keyboard focus as the protocols
//! require. Clients such as foot refuse to start without a data device.

use smithay::{
    delegate_data_device, delegate_primary_selection,
    input::Seat,
    wayland::selection::{
        data_device::{
            set_data_device_focus, ClientDndGrabHandler, DataDeviceHandler, DataDeviceState,
            ServerDndGrabHandler,
        },
        primary_selection::{set_primary_focus, PrimarySelectionHandler, PrimarySelectionState},
        SelectionHandler,
    },
};

use crate::state::Heapland;

impl SelectionHandler for Heapland {
    // No compositor-owned selections (no XWayland to bridge).
    type SelectionUserData = ();
}

impl DataDeviceHandler for Heapland {
    fn data_device_state(&self) -> &DataDeviceState {
        &self.data_device_state
    }
}

/// Client-initiated drags need nothing beyond Smithay's grab.
impl ClientDndGrabHandler for Heapland {}

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
delegate_primary_selection!(Heapland);
