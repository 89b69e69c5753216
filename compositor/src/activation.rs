//! `xdg_activation_v1`: a client hands focus to another window (a terminal
//! opening a link in a browser, a launcher starting an application).
//!
//! Policy: a token is honoured if it is recent and was asked for by a
//! client that had keyboard focus when it asked, with a serial of that
//! focus; anything else could steal focus from the window the user is
//! typing in, so it only marks the window as wanting attention (which this
//! compositor does not draw) and is otherwise ignored.

use std::time::Duration;

use smithay::reexports::wayland_server::Resource;
use smithay::{
    delegate_xdg_activation,
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    wayland::xdg_activation::{
        XdgActivationHandler, XdgActivationState, XdgActivationToken, XdgActivationTokenData,
    },
};
use tracing::debug;

use crate::state::Heapland;

/// How long a token stays good for activation.
const TOKEN_LIFETIME: Duration = Duration::from_secs(10);

/// Live tokens one client may hold: a launcher starting a few programs at
/// once needs a handful; more only grows the compositor's memory.
const MAX_LIVE_TOKENS: usize = 16;

impl XdgActivationHandler for Heapland {
    fn activation_state(&mut self) -> &mut XdgActivationState {
        &mut self.activation_state
    }

    fn token_created(&mut self, _token: XdgActivationToken, data: XdgActivationTokenData) -> bool {
        // Tokens too old to be honoured go; a client minting more than
        // [`MAX_LIVE_TOKENS`] within their lifetime gets no more.
        self.activation_state
            .retain_tokens(|_, d| d.timestamp.elapsed() <= TOKEN_LIFETIME);
        let live = self
            .activation_state
            .tokens()
            .filter(|(_, d)| d.client_id == data.client_id)
            .count();
        if live >= MAX_LIVE_TOKENS {
            debug!("activation token refused: {live} live tokens of this client");
            return false;
        }
        // A token may only be created by the client with keyboard focus,
        // from input it really got since it was given that focus.
        let Some((serial, seat)) = data.serial else {
            return false;
        };
        let Some(seat) = smithay::input::Seat::<Self>::from_resource(&seat) else {
            return false;
        };
        let Some(keyboard) = seat.get_keyboard() else {
            return false;
        };
        let focused_client = keyboard
            .current_focus()
            .and_then(|f| self.display_handle.get_client(f.surface().id()).ok())
            .map(|c| c.id());
        let recent = keyboard
            .last_enter()
            .is_some_and(|enter| serial.is_no_older_than(&enter));
        recent && focused_client.is_some() && focused_client == data.client_id
    }

    fn request_activation(
        &mut self,
        token: XdgActivationToken,
        token_data: XdgActivationTokenData,
        surface: WlSurface,
    ) {
        if token_data.timestamp.elapsed() > TOKEN_LIFETIME {
            debug!("activation token expired");
            self.activation_state.remove_token(&token);
            return;
        }
        // Only a window that is showing can be activated.
        if self.is_mapped_toplevel(&surface) {
            self.focus_surface(&surface);
        }
        self.activation_state.remove_token(&token);
    }
}

delegate_xdg_activation!(Heapland);
