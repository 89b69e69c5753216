//! What every heapland test client needs, whichever harness runs it: the
//! host tests (`tests/tests/`, a compositor on this machine) and the guest
//! runner (`tests/src/guest/`, in the QEMU guests) use the same code to
//! connect, bind globals, ignore the events a test does not look at and
//! make solid-colour `wl_shm` buffers.
//!
//! Errors are strings that say what failed, for the guest runner's reports;
//! the host tests unwrap them.

use std::{os::unix::net::UnixStream, path::Path};

pub use wayland_client;
use wayland_client::{
    globals::{registry_queue_init, GlobalList, GlobalListContents},
    protocol::wl_registry::WlRegistry,
    Connection, Dispatch, EventQueue, Proxy, QueueHandle,
};

pub mod shm;

/// Connects to the compositor socket at `socket`, with the globals it
/// announced and a queue for the state type `S`.
pub fn connect<S>(socket: &Path) -> Result<(Connection, GlobalList, EventQueue<S>), String>
where
    S: Dispatch<WlRegistry, GlobalListContents> + 'static,
{
    let stream =
        UnixStream::connect(socket).map_err(|e| format!("connect to {}: {e}", socket.display()))?;
    let conn = Connection::from_socket(stream).map_err(|e| format!("wayland connection: {e}"))?;
    let (globals, queue) = registry_queue_init::<S>(&conn).map_err(|e| format!("registry: {e}"))?;
    Ok((conn, globals, queue))
}

/// Binds the global `I` at a version in `versions`, with user data `()`;
/// the error names the interface.
pub fn bind<I, S>(
    globals: &GlobalList,
    qh: &QueueHandle<S>,
    versions: std::ops::RangeInclusive<u32>,
) -> Result<I, String>
where
    I: Proxy + 'static,
    S: Dispatch<I, ()> + 'static,
{
    globals
        .bind(qh, versions.clone(), ())
        .map_err(|e| format!("bind {} at {versions:?}: {e}", I::interface().name))
}

/// Implements `Dispatch<I, ()>` for a state type, doing nothing, for each
/// interface `I` listed: objects whose events the test does not look at.
/// Not for interfaces with events that create objects (`wl_data_device`'s
/// `data_offer`): wayland-client needs `event_created_child!` for those.
///
/// ```text
/// heapland_test_client::ignore_events!(State: WlCompositor, WlShm);
/// ```
#[macro_export]
macro_rules! ignore_events {
    ($state:ty: $($ty:ty),* $(,)?) => {$(
        impl $crate::wayland_client::Dispatch<$ty, ()> for $state {
            fn event(
                _: &mut Self,
                _: &$ty,
                _: <$ty as $crate::wayland_client::Proxy>::Event,
                _: &(),
                _: &$crate::wayland_client::Connection,
                _: &$crate::wayland_client::QueueHandle<Self>,
            ) {
            }
        }
    )*};
}

/// Implements the registry's `Dispatch` for a state type: the
/// `GlobalList` of [`connect`] keeps the globals, the state nothing.
#[macro_export]
macro_rules! registry_events {
    ($state:ty) => {
        impl
            $crate::wayland_client::Dispatch<
                $crate::wayland_client::protocol::wl_registry::WlRegistry,
                $crate::wayland_client::globals::GlobalListContents,
            > for $state
        {
            fn event(
                _: &mut Self,
                _: &$crate::wayland_client::protocol::wl_registry::WlRegistry,
                _: $crate::wayland_client::protocol::wl_registry::Event,
                _: &$crate::wayland_client::globals::GlobalListContents,
                _: &$crate::wayland_client::Connection,
                _: &$crate::wayland_client::QueueHandle<Self>,
            ) {
            }
        }
    };
}
