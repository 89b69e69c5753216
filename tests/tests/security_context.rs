//! `wp_security_context_v1`: an unsandboxed client creates a context (a
//! listening socket and a close fd), sandboxed clients connect through that
//! socket and are served like others, except that the manager global is
//! hidden from them and their heap tranches hold accounted heaps only (on
//! this host, which has no heaps, `no_heaps` like everyone's). Closing the
//! close fd stops new connections; bad requests get Smithay's exact protocol
//! errors (or heapland's `invalid_listen_fd`) and the compositor keeps
//! serving other clients.

mod common;

use std::{
    io::ErrorKind,
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::{UnixDatagram, UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{heap_batch, heap_batches, host_has_heaps, Client, Compositor};
use heapland_allocator::DeviceNumber;
use heapland_protocols::client::xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1;
use wayland_client::{
    protocol::{wl_compositor::WlCompositor, wl_display},
    Proxy,
};
use wayland_protocols::wp::security_context::v1::client::{
    wp_security_context_manager_v1::{self, WpSecurityContextManagerV1},
    wp_security_context_v1::{self, WpSecurityContextV1},
};

const MANAGER: &str = "wp_security_context_manager_v1";
/// `xx_dmabuf_heap_feedback_v1.no_heap_reason`.
const NO_HEAPS: u32 = 0;
const UNACCOUNTED: u32 = 3;

/// A committed security context: where sandboxed clients connect, and the
/// creator's end of the close fd (dropping it closes the context).
struct Context {
    path: PathBuf,
    close: Option<UnixStream>,
}

/// Creates and commits a context through `creator`, listening at
/// `<runtime dir>/<name>`. The close fd is one end of a socket pair: the
/// compositor sees a hangup when the other end is closed, as with a pipe.
fn create_context(comp: &Compositor, creator: &mut Client, name: &str) -> Context {
    let manager: WpSecurityContextManagerV1 = creator.bind(1);
    let path = comp.dir.join(name);
    let listener = UnixListener::bind(&path).expect("bind the context socket");
    let (close, close_theirs) = UnixStream::pair().expect("socketpair");
    let context = manager.create_listener(listener.as_fd(), close_theirs.as_fd(), &creator.qh, ());
    context.set_sandbox_engine("org.example.heapland-test".into());
    context.set_app_id(format!("org.example.{name}"));
    context.set_instance_id("1".into());
    context.commit();
    creator.roundtrip().expect("context committed");
    // The compositor holds the socket now; our copies would keep a closed
    // context's socket connectable.
    drop(listener);
    drop(close_theirs);
    Context {
        path,
        close: Some(close),
    }
}

/// A wl_compositor request answered: the client is served.
fn served(c: &mut Client) {
    let compositor: WlCompositor = c.bind(5);
    let surface = compositor.create_surface(&c.qh, ());
    c.roundtrip().expect("roundtrip with wl_compositor");
    surface.destroy();
    c.roundtrip()
        .expect("roundtrip after destroying the surface");
}

/// Waits until connecting to `path` is refused (the compositor closed the
/// context's socket); connections accepted meanwhile are dropped.
fn wait_refused(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect {}: {e}, expected ECONNREFUSED", path.display()),
            Ok(stream) => drop(stream),
        }
        assert!(
            Instant::now() < deadline,
            "{} still accepts connections",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_manager_is_offered_to_unsandboxed_clients_only() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut creator = comp.connect();
    assert!(creator.has_global(MANAGER), "normal clients see {MANAGER}");
    let name = creator.global_name(MANAGER).expect("global name");
    let ctx = create_context(&comp, &mut creator, "sandbox-globals");

    let mut sandboxed = Client::connect(&ctx.path);
    assert!(
        !sandboxed.has_global(MANAGER),
        "a sandboxed client must not see {MANAGER}"
    );
    for interface in [
        "wl_compositor",
        "xdg_wm_base",
        "zwp_linux_dmabuf_v1",
        "xx_dmabuf_heap_manager_v1",
    ] {
        assert!(sandboxed.has_global(interface), "sandboxed: no {interface}");
    }
    // Clipboard managers read every copy, a locker could lock the user out,
    // screen capture sees every window, power control blanks the display,
    // output configuration rearranges it, task bars see and steer every
    // window: not from a sandbox.
    for interface in [
        "ext_data_control_manager_v1",
        "zwlr_data_control_manager_v1",
        "ext_session_lock_manager_v1",
        "zwlr_screencopy_manager_v1",
        "ext_image_copy_capture_manager_v1",
        "ext_output_image_capture_source_manager_v1",
        "zwlr_output_power_manager_v1",
        "zwlr_output_manager_v1",
        "zwlr_foreign_toplevel_manager_v1",
        "ext_foreign_toplevel_list_v1",
    ] {
        assert!(creator.has_global(interface), "unsandboxed: no {interface}");
        assert!(
            !sandboxed.has_global(interface),
            "a sandboxed client must not see {interface}"
        );
    }
    served(&mut sandboxed);

    // Binding the hidden global by the name others see is an invalid bind.
    let _: WpSecurityContextManagerV1 =
        sandboxed
            .globals
            .registry()
            .bind(name, 1, &sandboxed.qh, ());
    let msg = sandboxed.expect_error("wl_display", wl_display::Error::InvalidObject as u32);
    assert!(msg.contains(MANAGER), "{msg}");
    comp.assert_alive();

    // Clients of the main socket, and other sandboxed clients, go on.
    served(&mut creator);
    let mut other = Client::connect(&ctx.path);
    assert!(!other.has_global(MANAGER));
    served(&mut other);
}

/// What one client was told for one feedback scope, as the allocator
/// library joined linux-dmabuf and the heap batch (the collector refuses a
/// heap batch out of step with linux-dmabuf).
#[derive(Debug)]
struct Told {
    main_device: Option<DeviceNumber>,
    tranches: Vec<ToldTranche>,
}

#[derive(Debug, PartialEq)]
struct ToldTranche {
    target: DeviceNumber,
    scanout: bool,
    formats: Vec<(u32, u64)>,
    devices: Vec<DeviceNumber>,
    /// Ok((heap name, whether it charges the allocating process's cgroup))
    /// or Err((reason, message)).
    heap: Result<(String, bool), (u32, String)>,
}

impl ToldTranche {
    /// Everything but the heap part, which may differ between clients.
    fn frame(&self) -> (DeviceNumber, bool, &[(u32, u64)], &[DeviceNumber]) {
        (self.target, self.scanout, &self.formats, &self.devices)
    }
}

/// Default feedback on both protocols, waited for.
fn default_feedback(c: &mut Client) -> Told {
    told(c, None)
}

/// Surface feedback on both protocols for a new surface, waited for.
fn surface_feedback(c: &mut Client) -> Told {
    let compositor: WlCompositor = c.bind(5);
    let surface = compositor.create_surface(&c.qh, ());
    told(c, Some(&surface))
}

/// The default (`None`) or a surface's feedback on both protocols; without
/// a render node linux-dmabuf has no feedback (version 3), and the heap
/// batch, which mirrors it, no tranche.
fn told(c: &mut Client, surface: Option<&wayland_client::protocol::wl_surface::WlSurface>) -> Told {
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let hid = c.heap_scope(&heaps, surface).heap.id();
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| heap_batches(r, &hid) == 1),
        "no feedback"
    );
    let joined = heap_batch(&c.rec, &hid);
    Told {
        main_device: joined.main_device,
        tranches: joined
            .tranches
            .iter()
            .map(|t| ToldTranche {
                target: t.target_device,
                scanout: t.scanout,
                formats: t.formats.iter().map(|f| (f.format, f.modifier)).collect(),
                devices: t.devices.clone(),
                heap: match &t.heap {
                    Ok(h) => Ok((h.name.clone(), h.accounted)),
                    Err(no) => Err((no.reason.map_or(u32::MAX, |r| r as u32), no.message.clone())),
                },
            })
            .collect(),
    }
}

/// Both clients were told the same tranches on both protocols; only the
/// heap part differs, and for the sandboxed client by the policy: an
/// accounted heap, or `unaccounted` where the unsandboxed client got an
/// uncharged one, or the same reason where it got none.
fn check_in_step(normal: &Told, sandboxed: &Told) {
    assert_eq!(
        normal.main_device, sandboxed.main_device,
        "main device differs"
    );
    assert_eq!(
        normal.tranches.len(),
        sandboxed.tranches.len(),
        "tranche count"
    );
    for (n, s) in normal.tranches.iter().zip(&sandboxed.tranches) {
        assert_eq!(n.frame(), s.frame(), "tranches differ beyond the heap");
        match (&n.heap, &s.heap) {
            (_, Ok((_, accounted))) => assert!(
                accounted,
                "sandboxed client handed an uncharged heap: {s:?}"
            ),
            (Ok((name, accounted)), Err((reason, message))) => {
                assert!(!accounted, "{name} charges but was withheld");
                assert_eq!(*reason, UNACCOUNTED, "{message}");
                assert!(message.contains(name.as_str()), "{message}");
            }
            (Err((a, _)), Err((b, _))) => assert_eq!(a, b, "no_heap reasons differ"),
        }
        if !host_has_heaps() {
            assert_eq!(n.heap.as_ref().err().map(|e| e.0), Some(NO_HEAPS));
            assert_eq!(s.heap.as_ref().err().map(|e| e.0), Some(NO_HEAPS));
        }
    }
}

#[test]
#[cfg_attr(
    not(all(host_render_node, host_dma_heaps)),
    ignore = "needs a DRM render node and DMA-BUF heaps (the guest's sandbox tests check the same)"
)]
fn a_sandboxed_client_is_served_with_the_same_tranches() {
    let mut comp = Compositor::start();
    let mut normal = comp.connect();
    let ctx = create_context(&comp, &mut normal, "sandbox-served");
    let mut sandboxed = Client::connect(&ctx.path);

    check_in_step(
        &default_feedback(&mut normal),
        &default_feedback(&mut sandboxed),
    );
    check_in_step(
        &surface_feedback(&mut normal),
        &surface_feedback(&mut sandboxed),
    );

    // A sandboxed window is composited like any other.
    let (_surface, _toplevel) = sandboxed.map_toplevel(40, 30, 0x00ff_0000);
    let picture = comp.wait_for_picture(Duration::from_secs(10), |p| {
        p.count(0, 0, 40, 30, [0xff, 0, 0]) == 40 * 30
    });
    assert_eq!(picture.count(0, 0, 40, 30, [0xff, 0, 0]), 40 * 30);
    comp.assert_alive();
}

#[test]
fn closing_the_close_fd_stops_new_connections() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut creator = comp.connect();
    let mut ctx = create_context(&comp, &mut creator, "sandbox-close");
    let mut first = Client::connect(&ctx.path);
    served(&mut first);

    // The context outlives its creator's connection.
    drop(creator);
    let mut second = Client::connect(&ctx.path);
    served(&mut second);

    drop(ctx.close.take());
    wait_refused(&ctx.path);
    comp.assert_alive();
    // Clients already connected through it stay connected and served.
    served(&mut first);
    served(&mut second);
    served(&mut comp.connect());
}

/// Runs `bad` on a fresh client, expects the protocol error, and checks
/// that a bystander connected before is still served.
fn case(interface: &str, code: u32, bad: impl FnOnce(&Compositor, &mut Client)) -> String {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut bystander = comp.connect();
    served(&mut bystander);
    let mut client = comp.connect();
    bad(&comp, &mut client);
    let msg = client.expect_error(interface, code);
    comp.assert_alive();
    served(&mut bystander);
    served(&mut comp.connect());
    msg
}

fn memfd() -> OwnedFd {
    rustix::fs::memfd_create(
        "heapland-test-not-a-socket",
        rustix::fs::MemfdFlags::CLOEXEC,
    )
    .expect("memfd")
}

/// create_listener with `listen` as the listening socket.
fn create_listener_with(client: &mut Client, listen: std::os::fd::BorrowedFd<'_>) {
    let manager: WpSecurityContextManagerV1 = client.bind(1);
    let (_close, close_theirs) = UnixStream::pair().expect("socketpair");
    let context = manager.create_listener(listen, close_theirs.as_fd(), &client.qh, ());
    context.commit();
}

const INVALID_LISTEN_FD: u32 = wp_security_context_manager_v1::Error::InvalidListenFd as u32;
const ALREADY_USED: u32 = wp_security_context_v1::Error::AlreadyUsed as u32;
const ALREADY_SET: u32 = wp_security_context_v1::Error::AlreadySet as u32;

#[test]
fn a_listen_fd_that_is_not_a_socket_is_invalid_listen_fd() {
    let msg = case(MANAGER, INVALID_LISTEN_FD, |_, c| {
        let fd = memfd();
        create_listener_with(c, fd.as_fd());
    });
    assert!(msg.contains("not a socket"), "{msg}");
}

#[test]
fn a_listen_fd_that_does_not_listen_is_invalid_listen_fd() {
    let msg = case(MANAGER, INVALID_LISTEN_FD, |_, c| {
        let (ours, _theirs) = UnixStream::pair().expect("socketpair");
        create_listener_with(c, ours.as_fd());
    });
    assert!(msg.contains("not listening"), "{msg}");
}

#[test]
fn a_datagram_listen_fd_is_invalid_listen_fd() {
    let msg = case(MANAGER, INVALID_LISTEN_FD, |_, c| {
        let socket = UnixDatagram::unbound().expect("datagram socket");
        create_listener_with(c, socket.as_fd());
    });
    assert!(msg.contains("SOCK_STREAM"), "{msg}");
}

/// A fresh context on a real listening socket, not yet committed.
fn uncommitted(comp: &Compositor, c: &mut Client, name: &str) -> WpSecurityContextV1 {
    let manager: WpSecurityContextManagerV1 = c.bind(1);
    let listener = UnixListener::bind(comp.dir.join(name)).expect("bind");
    let (_close, close_theirs) = UnixStream::pair().expect("socketpair");
    manager.create_listener(listener.as_fd(), close_theirs.as_fd(), &c.qh, ())
}

#[test]
fn committing_twice_is_already_used() {
    case("wp_security_context_v1", ALREADY_USED, |comp, c| {
        let ctx = uncommitted(comp, c, "sandbox-commit-twice");
        ctx.commit();
        ctx.commit();
    });
}

#[test]
fn metadata_after_commit_is_already_used() {
    case("wp_security_context_v1", ALREADY_USED, |comp, c| {
        let ctx = uncommitted(comp, c, "sandbox-late-app-id");
        ctx.commit();
        ctx.set_app_id("org.example.late".into());
    });
}

#[test]
fn setting_metadata_twice_is_already_set() {
    type Set = fn(&WpSecurityContextV1);
    let setters: [(&str, Set); 3] = [
        ("sandbox engine", |ctx| {
            ctx.set_sandbox_engine("org.example.engine".into())
        }),
        ("app id", |ctx| ctx.set_app_id("org.example.app".into())),
        ("instance id", |ctx| ctx.set_instance_id("1".into())),
    ];
    for (what, set) in setters {
        let msg = case("wp_security_context_v1", ALREADY_SET, |comp, c| {
            let ctx = uncommitted(comp, c, "sandbox-twice");
            set(&ctx);
            set(&ctx);
        });
        assert!(msg.contains(what), "{what}: {msg}");
    }
}

/// A close fd the compositor cannot poll (a memfd) has no protocol error
/// of its own: the context is refused (its socket closed) and logged, and
/// the compositor goes on.
#[test]
fn a_close_fd_that_cannot_be_polled_refuses_the_context() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut c = comp.connect();
    let manager: WpSecurityContextManagerV1 = c.bind(1);
    let path = comp.dir.join("sandbox-bad-close");
    let listener = UnixListener::bind(&path).expect("bind");
    let close = memfd();
    let ctx = manager.create_listener(listener.as_fd(), close.as_fd(), &c.qh, ());
    ctx.commit();
    c.roundtrip().expect("the creator is not disconnected");
    drop(listener);
    wait_refused(&path);
    comp.assert_alive();
    served(&mut c);
    assert!(
        comp.log_text().contains("security context not installed"),
        "{}",
        comp.log_text()
    );
}
