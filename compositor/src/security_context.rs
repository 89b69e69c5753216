//! `wp_security_context_v1`: sandboxed clients and the sockets they come
//! through.
//!
//! A sandbox engine (Flatpak, ...) creates a context with a listening socket
//! and a close fd; every client that connects through that socket is a
//! *sandboxed* client, and its [`ClientState`] records the context (sandbox
//! engine, app id, instance id). Closing the close fd (or writing to it)
//! stops the compositor accepting on the socket.
//!
//! As in Smithay's anvil, the manager global is offered only to clients that
//! are not sandboxed, so a sandboxed client cannot create a context of its
//! own; a client that gets hold of the manager anyway gets the `nested`
//! error. Sandboxed clients are handed accounted heaps only, on top of the
//! rule for every client (`heaps`, protocols/README.md "Security model").
//! Like every client, each records the credentials it connected with
//! (`peer`).
//!
//! Smithay takes `listen_fd` on trust: an fd that is not a listening
//! `AF_UNIX` stream socket would make its listener fail on `accept` and
//! end the compositor's event loop. Such an fd gets `invalid_listen_fd` here
//! before Smithay sees it, and the listener is wrapped so that an `accept`
//! error closes that context alone. That includes transient ones (EMFILE,
//! ENOBUFS): the listener is level-triggered, so going on would spin on the
//! same error, and the sandbox engine can create a new context; the log
//! says which context closed and why.

use std::{
    io,
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::Arc,
};

use calloop::{EventSource, Poll, PostAction, Readiness, Token, TokenFactory};
use rustix::{
    fs::FileType,
    net::{sockopt, AddressFamily, SocketType},
};
use smithay::{
    reexports::{
        wayland_protocols::wp::security_context::v1::server::{
            wp_security_context_manager_v1::{self, WpSecurityContextManagerV1},
            wp_security_context_v1::WpSecurityContextV1,
        },
        wayland_server::{
            delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle,
            Resource,
        },
    },
    wayland::security_context::{
        SecurityContext, SecurityContextGlobalData, SecurityContextHandler,
        SecurityContextListenerSource, SecurityContextState, SecurityContextUserData,
    },
};
use tracing::{debug, info, warn};

use crate::{
    peer::Peer,
    state::{ClientState, Heapland},
};

/// True if the client connected through a security context's socket.
///
/// Every client heapland accepts carries [`ClientState`]; one that does not
/// is treated as sandboxed, so that a mistake withholds rather than grants.
/// That includes Xwayland: it needs none of the privileged globals.
pub fn is_sandboxed(client: &Client) -> bool {
    client
        .get_data::<ClientState>()
        .is_none_or(|s| s.security_context.is_some())
}

/// Creates the `wp_security_context_manager_v1` global, visible to
/// unsandboxed clients only.
pub fn create_global(dh: &DisplayHandle) -> SecurityContextState {
    SecurityContextState::new::<Heapland, _>(dh, |client| !is_sandboxed(client))
}

/// Why `fd` cannot be a context's listening socket, if it cannot.
fn listen_fd_problem(fd: BorrowedFd<'_>) -> Option<String> {
    let stat = match rustix::fs::fstat(fd) {
        Ok(st) => st,
        Err(e) => return Some(format!("fstat: {e}")),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Some("not a socket".into());
    }
    match sockopt::socket_domain(fd) {
        Ok(AddressFamily::UNIX) => {}
        Ok(other) => return Some(format!("address family {other:?}, not AF_UNIX")),
        Err(e) => return Some(format!("SO_DOMAIN: {e}")),
    }
    match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        Ok(other) => return Some(format!("socket type {other:?}, not SOCK_STREAM")),
        Err(e) => return Some(format!("SO_TYPE: {e}")),
    }
    match sockopt::socket_acceptconn(fd) {
        Ok(true) => None,
        Ok(false) => Some("not listening (call listen(2) before sending it)".into()),
        Err(e) => Some(format!("SO_ACCEPTCONN: {e}")),
    }
}

/// The manager: checks what Smithay does not, then lets Smithay handle it.
impl Dispatch<WpSecurityContextManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        manager: &WpSecurityContextManagerV1,
        request: wp_security_context_manager_v1::Request,
        data: &(),
        dhandle: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let wp_security_context_manager_v1::Request::CreateListener { listen_fd, .. } = &request
        {
            if is_sandboxed(client) {
                info!(client = ?client.id(), "sandboxed client tried to create a security context");
                manager.post_error(
                    wp_security_context_manager_v1::Error::Nested,
                    "a client inside a security context cannot create another",
                );
                return;
            }
            if let Some(problem) = listen_fd_problem(listen_fd.as_fd()) {
                info!(client = ?client.id(), "create_listener with a bad listen_fd: {problem}");
                manager.post_error(
                    wp_security_context_manager_v1::Error::InvalidListenFd,
                    format!("listen_fd must be a listening AF_UNIX stream socket: {problem}"),
                );
                return;
            }
        }
        <SecurityContextState as Dispatch<WpSecurityContextManagerV1, (), Self>>::request(
            state, client, manager, request, data, dhandle, data_init,
        );
    }
}

delegate_global_dispatch!(Heapland: [WpSecurityContextManagerV1: SecurityContextGlobalData] => SecurityContextState);
delegate_dispatch!(Heapland: [WpSecurityContextV1: SecurityContextUserData] => SecurityContextState);

impl SecurityContextHandler for Heapland {
    fn context_created(&mut self, source: SecurityContextListenerSource, context: SecurityContext) {
        info!(
            engine = ?context.sandbox_engine,
            app_id = ?context.app_id,
            instance_id = ?context.instance_id,
            creator = ?context.creator_client_id,
            "security context created"
        );
        let listener = ContextListener { inner: source };
        let inserted =
            self.loop_handle
                .insert_source(listener, move |stream, _, state: &mut Heapland| {
                    let client_state = ClientState {
                        security_context: Some(context.clone()),
                        peer: Peer::accepted(&stream),
                        ..ClientState::default()
                    };
                    let peer = client_state.peer.clone();
                    match state
                        .display_handle
                        .insert_client(stream, Arc::new(client_state))
                    {
                        Ok(client) => debug!(
                            client = ?client.id(),
                            app_id = ?context.app_id,
                            pid = ?peer.as_ref().and_then(|p| p.pid),
                            uid = ?peer.as_ref().map(|p| p.uid),
                            groups = ?peer.as_ref().map(|p| &p.groups),
                            "sandboxed client connected"
                        ),
                        Err(err) => warn!("cannot add sandboxed client: {err}"),
                    }
                });
        if let Err(err) = inserted {
            // E.g. a close fd that cannot be polled (a regular file): the
            // context would never end, so it never starts.
            warn!("security context not installed: {}", err.error);
        }
    }
}

/// Smithay's listener, ending only its own context on an `accept` error
/// instead of the event loop.
struct ContextListener {
    inner: SecurityContextListenerSource,
}

impl EventSource for ContextListener {
    type Event = UnixStream;
    type Metadata = ();
    type Ret = ();
    type Error = io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        callback: F,
    ) -> Result<PostAction, io::Error>
    where
        F: FnMut(UnixStream, &mut ()),
    {
        match self.inner.process_events(readiness, token, callback) {
            Ok(action) => {
                if matches!(action, PostAction::Remove) {
                    info!("security context closed: no longer accepting on its socket");
                }
                Ok(action)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(PostAction::Continue)
            }
            Err(e) => {
                warn!("security context socket failed ({e}): closing the context");
                Ok(PostAction::Remove)
            }
        }
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.inner.register(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.inner.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.inner.unregister(poll)
    }
}
