//! The desktop protocols everyday clients rely on, driven by the test
//! client: what each does on screen, and the exact protocol error a client
//! that misuses it gets while another client goes on being served.

mod common;

use std::time::Duration;

use common::{
    desktop::{CopyEvent, PowerEvent},
    Client, Compositor, Picture, BACKGROUND,
};
use wayland_client::{
    protocol::{wl_compositor::WlCompositor, wl_seat::WlSeat, wl_shm::WlShm},
    Proxy, WEnum,
};
use wayland_protocols::{
    wp::{
        keyboard_shortcuts_inhibit::zv1::client::zwp_keyboard_shortcuts_inhibit_manager_v1::ZwpKeyboardShortcutsInhibitManagerV1,
        pointer_constraints::zv1::client::zwp_pointer_constraints_v1::{
            Lifetime, ZwpPointerConstraintsV1,
        },
        single_pixel_buffer::v1::client::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1,
        viewporter::client::wp_viewporter::WpViewporter,
    },
    xdg::{
        activation::v1::client::xdg_activation_v1::XdgActivationV1,
        decoration::zv1::client::{
            zxdg_decoration_manager_v1::ZxdgDecorationManagerV1, zxdg_toplevel_decoration_v1::Mode,
        },
        shell::client::xdg_wm_base::XdgWmBase,
    },
};
use wayland_protocols_wlr::{
    layer_shell::v1::client::{
        zwlr_layer_shell_v1::{self, Layer, ZwlrLayerShellV1},
        zwlr_layer_surface_v1::{Anchor, KeyboardInteractivity, ZwlrLayerSurfaceV1},
    },
    output_power_management::v1::client::{
        zwlr_output_power_manager_v1::ZwlrOutputPowerManagerV1,
        zwlr_output_power_v1::{self, Mode as PowerMode, ZwlrOutputPowerV1},
    },
    screencopy::v1::client::{
        zwlr_screencopy_frame_v1::{self, ZwlrScreencopyFrameV1},
        zwlr_screencopy_manager_v1::ZwlrScreencopyManagerV1,
    },
};

const RED: u32 = 0x00ff_0000;
const RED_RGB: [u8; 3] = [255, 0, 0];
const GREEN: u32 = 0x0000_ff00;
const GREEN_RGB: [u8; 3] = [0, 255, 0];
const BLUE: u32 = 0x0000_00ff;
const BLUE_RGB: [u8; 3] = [0, 0, 255];
/// heapland's title bar of the focused window (compositor/src/decoration.rs)
/// and its close button, within rounding.
const TITLE_FOCUSED_RGB: [u8; 3] = [56, 84, 128];
const CLOSE_RGB: [u8; 3] = [191, 51, 51];
const TITLE_HEIGHT: u32 = 24;

const WAIT: Duration = Duration::from_secs(10);

/// Another client can still map a window after a bad one was disconnected:
/// a 40x40 green square at the first free cascade slot.
fn another_client_is_served(comp: &mut Compositor) {
    comp.assert_alive();
    let mut good = comp.connect();
    let _window = good.map_toplevel(40, 40, GREEN);
    let pic = comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, GREEN_RGB) >= 1600);
    assert!(
        pic.count(0, 0, 320, 240, GREEN_RGB) >= 1600,
        "a well-behaved client's window did not appear after the bad client"
    );
}

#[test]
fn every_desktop_global_is_advertised() {
    let comp = Compositor::start();
    let client = comp.connect();
    for interface in [
        "wl_data_device_manager",
        "zwp_primary_selection_device_manager_v1",
        "zxdg_decoration_manager_v1",
        "zwlr_layer_shell_v1",
        "xdg_activation_v1",
        "wp_cursor_shape_manager_v1",
        "wp_single_pixel_buffer_manager_v1",
        "zwp_pointer_constraints_v1",
        "zwp_relative_pointer_manager_v1",
        "zwp_keyboard_shortcuts_inhibit_manager_v1",
        "ext_idle_notifier_v1",
        "zwp_idle_inhibit_manager_v1",
        "ext_session_lock_manager_v1",
        "ext_data_control_manager_v1",
        "zwlr_data_control_manager_v1",
        "zwlr_screencopy_manager_v1",
        "ext_image_copy_capture_manager_v1",
        "ext_output_image_capture_source_manager_v1",
        "zwlr_output_power_manager_v1",
        "zwlr_output_manager_v1",
        "zwlr_foreign_toplevel_manager_v1",
        "ext_foreign_toplevel_list_v1",
    ] {
        assert!(
            client.has_global(interface),
            "{interface} is not advertised"
        );
    }
}

/// Maps a toplevel that asked for `mode` decorations, with a `w`x`h`
/// buffer of `xrgb`; returns the modes the compositor configured.
fn map_decorated(client: &mut Client, mode: Mode, w: i32, h: i32, xrgb: u32) -> Vec<u32> {
    let compositor: WlCompositor = client.bind(5);
    let wm: XdgWmBase = client.bind(1);
    let shm: WlShm = client.bind(1);
    let decorations: ZxdgDecorationManagerV1 = client.bind(1);
    let surface = compositor.create_surface(&client.qh, ());
    let xdg = wm.get_xdg_surface(&surface, &client.qh, ());
    let toplevel = xdg.get_toplevel(&client.qh, ());
    let decoration = decorations.get_toplevel_decoration(&toplevel, &client.qh, ());
    decoration.set_mode(mode);
    surface.commit();
    assert!(
        client.dispatch_until(WAIT, |r| !r.configures.is_empty()),
        "no configure"
    );
    let buffer = client.shm_buffer(&shm, w, h, xrgb);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w, h);
    surface.commit();
    client.roundtrip().expect("roundtrip");
    std::mem::forget((surface, xdg, toplevel, decoration));
    client.rec.decoration_modes.clone()
}

#[test]
fn server_side_decorations_draw_a_title_bar_with_a_close_button() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let modes = map_decorated(&mut client, Mode::ServerSide, 100, 60, RED);
    assert_eq!(
        modes.last(),
        Some(&u32::from(Mode::ServerSide)),
        "{modes:?}"
    );
    // The window moves down so its title bar stays on screen.
    let shown = |p: &Picture| p.count(0, TITLE_HEIGHT, 100, TITLE_HEIGHT + 60, RED_RGB) == 6000;
    let pic = comp.wait_for_picture(WAIT, shown);
    assert!(shown(&pic), "window not below its title bar");
    let bar = pic.count_near((0, 0, 76, TITLE_HEIGHT), TITLE_FOCUSED_RGB, 2);
    assert_eq!(bar, 76 * TITLE_HEIGHT as usize, "focused title bar");
    let close = pic.count_near((76, 0, 100, TITLE_HEIGHT), CLOSE_RGB, 2);
    assert_eq!(close, 24 * TITLE_HEIGHT as usize, "close button");
    assert_eq!(pic.pixel(150, 10), BACKGROUND);
}

#[test]
fn client_side_decorations_are_honoured() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let modes = map_decorated(&mut client, Mode::ClientSide, 100, 60, RED);
    assert_eq!(
        modes.last(),
        Some(&u32::from(Mode::ClientSide)),
        "{modes:?}"
    );
    let shown = |p: &Picture| p.count(0, 0, 100, 60, RED_RGB) == 6000;
    let pic = comp.wait_for_picture(WAIT, shown);
    assert!(shown(&pic), "window not at the top left, undecorated");
}

#[test]
fn a_second_decoration_object_for_one_toplevel_is_already_constructed() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let compositor: WlCompositor = bad.bind(5);
    let wm: XdgWmBase = bad.bind(1);
    let decorations: ZxdgDecorationManagerV1 = bad.bind(1);
    let surface = compositor.create_surface(&bad.qh, ());
    let xdg = wm.get_xdg_surface(&surface, &bad.qh, ());
    let toplevel = xdg.get_toplevel(&bad.qh, ());
    let _first = decorations.get_toplevel_decoration(&toplevel, &bad.qh, ());
    let _second = decorations.get_toplevel_decoration(&toplevel, &bad.qh, ());
    // Smithay posts zxdg_toplevel_decoration_v1.error.already_constructed
    // (1) on the manager, the object the request was sent to.
    bad.expect_error("zxdg_decoration_manager_v1", 1);
    another_client_is_served(&mut comp);
}

#[test]
fn a_panel_reserves_its_zone_and_new_windows_open_below_it() {
    let mut comp = Compositor::start();
    let mut panel = comp.connect();
    let compositor: WlCompositor = panel.bind(5);
    let shm: WlShm = panel.bind(1);
    let layers: ZwlrLayerShellV1 = panel.bind(4);
    let surface = compositor.create_surface(&panel.qh, ());
    let layer = layers.get_layer_surface(&surface, None, Layer::Top, "panel".into(), &panel.qh, ());
    layer.set_anchor(Anchor::Top | Anchor::Left | Anchor::Right);
    layer.set_size(0, 30);
    layer.set_exclusive_zone(30);
    surface.commit();
    assert!(
        panel.dispatch_until(WAIT, |r| !r.layer_configures.is_empty()),
        "no layer configure"
    );
    let (_, width, height) = panel.rec.layer_configures[0];
    assert_eq!((width, height), (320, 30), "the panel spans the output");
    let buffer = panel.shm_buffer(&shm, 320, 30, BLUE);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, 320, 30);
    surface.commit();
    panel.roundtrip().expect("roundtrip");

    let mut app = comp.connect();
    let _window = app.map_toplevel(100, 60, RED);
    let shown = |p: &Picture| {
        p.count(0, 0, 320, 30, BLUE_RGB) == 320 * 30 && p.count(0, 30, 100, 90, RED_RGB) == 6000
    };
    let pic = comp.wait_for_picture(WAIT, shown);
    assert!(
        shown(&pic),
        "panel at the top and the window below it: panel {} px, window {} px",
        pic.count(0, 0, 320, 30, BLUE_RGB),
        pic.count(0, 30, 100, 90, RED_RGB)
    );
    assert!(!panel.rec.layer_closed);
}

#[test]
fn a_layer_surface_on_an_unknown_layer_is_invalid_layer() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let compositor: WlCompositor = bad.bind(5);
    let layers: ZwlrLayerShellV1 = bad.bind(4);
    let surface = compositor.create_surface(&bad.qh, ());
    // Layers are 0..=3. The typed request cannot carry 7, so send it in
    // its wire form.
    let request = zwlr_layer_shell_v1::Request::GetLayerSurface {
        surface: surface.clone(),
        output: None,
        layer: WEnum::Unknown(7),
        namespace: "bad".into(),
    };
    let data = bad.qh.make_data::<ZwlrLayerSurfaceV1, ()>(());
    let _layer: ZwlrLayerSurfaceV1 = layers
        .send_constructor(request, data)
        .expect("send get_layer_surface");
    bad.expect_error("zwlr_layer_shell_v1", 1);
    another_client_is_served(&mut comp);
}

#[test]
fn a_layer_surface_of_height_zero_without_both_anchors_is_invalid_size() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let compositor: WlCompositor = bad.bind(5);
    let layers: ZwlrLayerShellV1 = bad.bind(4);
    let surface = compositor.create_surface(&bad.qh, ());
    let layer = layers.get_layer_surface(&surface, None, Layer::Top, "bad".into(), &bad.qh, ());
    layer.set_anchor(Anchor::Top);
    layer.set_size(100, 0);
    surface.commit();
    bad.expect_error("zwlr_layer_surface_v1", 1);
    another_client_is_served(&mut comp);
}

#[test]
fn locking_the_pointer_twice_is_already_constrained() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let (surface, _toplevel) = bad.map_toplevel(50, 50, RED);
    let seat: WlSeat = bad.bind(5);
    let pointer = seat.get_pointer(&bad.qh, ());
    let constraints: ZwpPointerConstraintsV1 = bad.bind(1);
    let _lock =
        constraints.lock_pointer(&surface, &pointer, None, Lifetime::Persistent, &bad.qh, ());
    bad.roundtrip().expect("one lock is fine");
    let _again =
        constraints.lock_pointer(&surface, &pointer, None, Lifetime::Persistent, &bad.qh, ());
    bad.expect_error("zwp_pointer_constraints_v1", 1);
    another_client_is_served(&mut comp);
}

#[test]
fn a_shortcut_inhibitor_is_granted_and_a_second_one_is_already_inhibited() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let (surface, _toplevel) = client.map_toplevel(50, 50, RED);
    let seat: WlSeat = client.bind(5);
    let manager: ZwpKeyboardShortcutsInhibitManagerV1 = client.bind(1);
    let _inhibitor = manager.inhibit_shortcuts(&surface, &seat, &client.qh, ());
    assert!(
        client.dispatch_until(WAIT, |r| r.inhibitor_active),
        "the inhibitor was not activated"
    );
    let _second = manager.inhibit_shortcuts(&surface, &seat, &client.qh, ());
    client.expect_error("zwp_keyboard_shortcuts_inhibit_manager_v1", 0);
    another_client_is_served(&mut comp);
}

#[test]
fn a_single_pixel_buffer_fills_its_viewport() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let compositor: WlCompositor = client.bind(5);
    let wm: XdgWmBase = client.bind(1);
    let pixels: WpSinglePixelBufferManagerV1 = client.bind(1);
    let viewporter: WpViewporter = client.bind(1);
    let surface = compositor.create_surface(&client.qh, ());
    let xdg = wm.get_xdg_surface(&surface, &client.qh, ());
    let _toplevel = xdg.get_toplevel(&client.qh, ());
    surface.commit();
    assert!(client.dispatch_until(WAIT, |r| !r.configures.is_empty()));
    let buffer = pixels.create_u32_rgba_buffer(0, u32::MAX, 0, u32::MAX, &client.qh, ());
    let viewport = viewporter.get_viewport(&surface, &client.qh, ());
    viewport.set_destination(90, 70);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, 1, 1);
    surface.commit();
    client.roundtrip().expect("roundtrip");
    let shown = |p: &Picture| p.count(0, 0, 90, 70, GREEN_RGB) == 90 * 70;
    let pic = comp.wait_for_picture(WAIT, shown);
    assert!(
        shown(&pic),
        "single-pixel buffer: {} of {} px green",
        pic.count(0, 0, 90, 70, GREEN_RGB),
        90 * 70
    );
    assert_eq!(pic.pixel(95, 35), BACKGROUND);
}

#[test]
fn activation_with_a_made_up_token_changes_nothing() {
    let mut comp = Compositor::start();
    let mut first = comp.connect();
    let (first_surface, _t1) = first.map_toplevel(60, 60, RED);
    let mut second = comp.connect();
    let _t2 = second.map_toplevel(60, 60, BLUE);
    // The second window is on top at (48,48), overlapping the first.
    let stacked = |p: &Picture| p.pixel(50, 50) == BLUE_RGB;
    assert!(stacked(&comp.wait_for_picture(WAIT, stacked)));
    let activation: XdgActivationV1 = first.bind(1);
    activation.activate("not-a-token".into(), &first_surface);
    // A token asked for without any input serial is never valid either.
    let token = activation.get_activation_token(&first.qh, ());
    token.commit();
    assert!(first.dispatch_until(WAIT, |r| !r.activation_tokens.is_empty()));
    activation.activate(first.rec.activation_tokens[0].clone(), &first_surface);
    first.roundtrip().expect("no protocol error");
    std::thread::sleep(Duration::from_millis(200));
    let pic = comp.screenshot().expect("screenshot");
    assert_eq!(pic.pixel(50, 50), BLUE_RGB, "the first window was raised");
    comp.assert_alive();
}

/// A token asked for by the focused client with the serial of its
/// keyboard focus (what a terminal does before opening a link) raises and
/// focuses the window another client activates with it.
#[test]
fn activation_with_a_focused_clients_token_raises_and_focuses() {
    let mut comp = Compositor::start();
    let mut first = comp.connect();
    let (first_surface, t1) = first.map_toplevel(60, 60, RED);
    let mut second = comp.connect();
    let seat: WlSeat = second.bind(5);
    let _keyboard = seat.get_keyboard(&second.qh, ());
    let _t2 = second.map_toplevel(60, 60, BLUE);
    let stacked = |p: &Picture| p.pixel(50, 50) == BLUE_RGB;
    assert!(stacked(&comp.wait_for_picture(WAIT, stacked)));
    assert!(
        second.dispatch_until(WAIT, |r| !r.keyboard_enter_serials.is_empty()),
        "the newest window got no keyboard focus"
    );
    let serial = *second.rec.keyboard_enter_serials.last().expect("serial");
    let id1 = t1.id();
    assert!(
        first.dispatch_until(WAIT, |r| r.activated.get(&id1) == Some(&false)),
        "the first window was not told it lost activation"
    );
    let activation: XdgActivationV1 = second.bind(1);
    let token = activation.get_activation_token(&second.qh, ());
    token.set_serial(serial, &seat);
    token.commit();
    assert!(second.dispatch_until(WAIT, |r| !r.activation_tokens.is_empty()));
    let token = second.rec.activation_tokens[0].clone();
    // The first client is handed the token, as a launched program is.
    let first_activation: XdgActivationV1 = first.bind(1);
    first_activation.activate(token, &first_surface);
    first.roundtrip().expect("no protocol error");
    let raised = |p: &Picture| p.pixel(50, 50) == RED_RGB;
    assert!(
        raised(&comp.wait_for_picture(WAIT, raised)),
        "the activated window was not raised"
    );
    assert!(
        first.dispatch_until(WAIT, |r| r.activated.get(&id1) == Some(&true)),
        "the activated window was not told it is active"
    );
    comp.assert_alive();
}

#[test]
fn a_closed_window_frees_its_cascade_slot() {
    let mut comp = Compositor::start();
    let mut first = comp.connect();
    let (s1, t1) = first.map_toplevel(40, 40, RED);
    let mut second = comp.connect();
    let _w2 = second.map_toplevel(40, 40, BLUE);
    let two = |p: &Picture| {
        p.count(0, 0, 40, 40, RED_RGB) == 1600 && p.count(48, 48, 88, 88, BLUE_RGB) == 1600
    };
    assert!(two(&comp.wait_for_picture(WAIT, two)), "cascade of two");
    // The configure that deactivates the first window comes first: the
    // test client acks every configure, which must not follow the destroy.
    let id1 = t1.id();
    assert!(first.dispatch_until(WAIT, |r| r.activated.get(&id1) == Some(&false)));
    t1.destroy();
    s1.destroy();
    first.roundtrip().expect("roundtrip");
    let mut third = comp.connect();
    let _w3 = third.map_toplevel(40, 40, GREEN);
    let reused = |p: &Picture| p.count(0, 0, 40, 40, GREEN_RGB) == 1600;
    assert!(
        reused(&comp.wait_for_picture(WAIT, reused)),
        "the third window did not take the first one's place"
    );
}

#[test]
fn the_newest_window_is_activated_and_the_previous_one_told_it_is_not() {
    let mut comp = Compositor::start();
    let mut first = comp.connect();
    let (_s1, t1) = first.map_toplevel(40, 40, RED);
    let id1 = t1.id();
    assert!(
        first.dispatch_until(WAIT, |r| r.activated.get(&id1) == Some(&true)),
        "the first window was not activated"
    );
    let mut second = comp.connect();
    let (_s2, t2) = second.map_toplevel(40, 40, BLUE);
    let id2 = t2.id();
    assert!(
        second.dispatch_until(WAIT, |r| r.activated.get(&id2) == Some(&true)),
        "the second window was not activated"
    );
    assert!(
        first.dispatch_until(WAIT, |r| r.activated.get(&id1) == Some(&false)),
        "the first window was not told it lost activation"
    );
    comp.assert_alive();
}

#[test]
fn a_panel_gets_frame_callbacks() {
    let comp = Compositor::start();
    let mut panel = comp.connect();
    let compositor: WlCompositor = panel.bind(5);
    let shm: WlShm = panel.bind(1);
    let layers: ZwlrLayerShellV1 = panel.bind(4);
    let surface = compositor.create_surface(&panel.qh, ());
    let layer =
        layers.get_layer_surface(&surface, None, Layer::Bottom, "panel".into(), &panel.qh, ());
    layer.set_anchor(Anchor::Bottom | Anchor::Left | Anchor::Right);
    layer.set_size(0, 20);
    surface.commit();
    assert!(panel.dispatch_until(WAIT, |r| !r.layer_configures.is_empty()));
    for round in 1..=3 {
        let buffer = panel.shm_buffer(&shm, 320, 20, GREEN);
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, 320, 20);
        surface.frame(&panel.qh, ());
        surface.commit();
        assert!(
            panel.dispatch_until(WAIT, |r| r.frames_done >= round),
            "frame callback {round} of a layer surface never came"
        );
    }
}

#[test]
fn an_exclusive_overlay_keeps_the_keyboard_while_a_window_opens() {
    let mut comp = Compositor::start();
    let mut launcher = comp.connect();
    let compositor: WlCompositor = launcher.bind(5);
    let shm: WlShm = launcher.bind(1);
    let layers: ZwlrLayerShellV1 = launcher.bind(4);
    let surface = compositor.create_surface(&launcher.qh, ());
    let layer = layers.get_layer_surface(
        &surface,
        None,
        Layer::Overlay,
        "launcher".into(),
        &launcher.qh,
        (),
    );
    layer.set_size(100, 50);
    layer.set_keyboard_interactivity(KeyboardInteractivity::Exclusive);
    surface.commit();
    assert!(
        launcher.dispatch_until(WAIT, |r| !r.layer_configures.is_empty()),
        "no layer configure"
    );
    let buffer = launcher.shm_buffer(&shm, 100, 50, GREEN);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, 100, 50);
    surface.commit();
    launcher.roundtrip().expect("roundtrip");

    // The window shows, but the keyboard stays with the launcher.
    let mut app = comp.connect();
    let (_window, toplevel) = app.map_toplevel(40, 40, RED);
    let id = toplevel.id();
    assert!(
        !app.dispatch_until(Duration::from_secs(2), |r| r.activated.get(&id)
            == Some(&true)),
        "a new window took the keyboard from an exclusive overlay"
    );
    // Once the launcher goes, the window has it.
    layer.destroy();
    surface.destroy();
    launcher.roundtrip().expect("roundtrip");
    assert!(
        app.dispatch_until(WAIT, |r| r.activated.get(&id) == Some(&true)),
        "the window did not get the keyboard after the overlay went"
    );
    comp.assert_alive();
}

/// swayidle's protocol: with no input, a client asking to be told after
/// 200 ms of idleness is told (headless has no input devices, so the seat
/// idles at once); while a window it inhibits from is shown, a new
/// notification stays quiet, and fires once the inhibitor goes.
#[test]
fn idle_notifications_fire_unless_a_shown_surface_inhibits_them() {
    use wayland_protocols::{
        ext::idle_notify::v1::client::ext_idle_notifier_v1::ExtIdleNotifierV1,
        wp::idle_inhibit::zv1::client::zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1,
    };
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let notifier: ExtIdleNotifierV1 = client.bind(1);
    let seat: WlSeat = client.bind(5);
    let first = notifier.get_idle_notification(200, &seat, &client.qh, ());
    assert!(
        client.dispatch_until(WAIT, |r| r.idle_events == [true]),
        "no idled after 200 ms without input: {:?}",
        client.rec.idle_events
    );
    first.destroy();

    let (surface, _toplevel) = client.map_toplevel(40, 40, GREEN);
    let inhibits: ZwpIdleInhibitManagerV1 = client.bind(1);
    let inhibitor = inhibits.create_inhibitor(&surface, &client.qh, ());
    client.roundtrip().expect("roundtrip");
    client.rec.idle_events.clear();
    let second = notifier.get_idle_notification(200, &seat, &client.qh, ());
    let early = client.dispatch_until(Duration::from_secs(1), |r| !r.idle_events.is_empty());
    assert!(
        !early,
        "idled while a shown window inhibits it: {:?}",
        client.rec.idle_events
    );
    inhibitor.destroy();
    assert!(
        client.dispatch_until(WAIT, |r| r.idle_events == [true]),
        "no idled once the inhibitor went: {:?}",
        client.rec.idle_events
    );
    second.destroy();
    comp.assert_alive();
}

/// swaylock's protocol: once locked, the output shows only the lock surface
/// (the window behind it and a window opened meanwhile show nothing), the
/// keyboard goes to the lock surface, and unlocking brings the desktop
/// back.
#[test]
fn a_locked_session_shows_only_the_lock_surface_until_it_unlocks() {
    use wayland_client::protocol::wl_output::WlOutput;
    use wayland_protocols::ext::session_lock::v1::client::ext_session_lock_manager_v1::ExtSessionLockManagerV1;
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let _red = app.map_toplevel(40, 40, RED);
    comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) >= 1600);

    let mut locker = comp.connect();
    let manager: ExtSessionLockManagerV1 = locker.bind(1);
    let output: WlOutput = locker.bind(4);
    let compositor: WlCompositor = locker.bind(5);
    let shm: WlShm = locker.bind(1);
    let seat: WlSeat = locker.bind(5);
    let _keyboard = seat.get_keyboard(&locker.qh, ());
    let lock = manager.lock(&locker.qh, ());
    let surface = compositor.create_surface(&locker.qh, ());
    let _lock_surface = lock.get_lock_surface(&surface, &output, &locker.qh, ());
    assert!(
        locker.dispatch_until(WAIT, |r| !r.lock_configures.is_empty()),
        "no lock surface configure"
    );
    let (_, w, h) = locker.rec.lock_configures[0];
    assert_eq!((w, h), (320, 240), "the lock surface is not output-sized");
    let buffer = locker.shm_buffer(&shm, w as i32, h as i32, BLUE);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w as i32, h as i32);
    surface.commit();
    locker
        .roundtrip()
        .expect("roundtrip after the lock surface's commit");
    assert!(
        locker.dispatch_until(WAIT, |r| r.lock_answer.is_some()),
        "neither locked nor finished"
    );
    assert_eq!(locker.rec.lock_answer, Some(true), "the lock was refused");
    let pic = comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, BLUE_RGB) == 320 * 240);
    assert_eq!(
        pic.count(0, 0, 320, 240, BLUE_RGB),
        320 * 240,
        "not all lock surface:\n{}",
        comp.log_text()
    );
    assert!(
        locker.dispatch_until(WAIT, |r| r.keyboard_enters.contains(&surface.id())),
        "the keyboard did not go to the lock surface"
    );

    // A window opened while locked shows nothing and gets no keyboard.
    let mut late = comp.connect();
    let late_seat: WlSeat = late.bind(5);
    let _late_keyboard = late_seat.get_keyboard(&late.qh, ());
    let (late_surface, _late) = late.map_toplevel(40, 40, GREEN);
    late.roundtrip().expect("roundtrip");
    std::thread::sleep(Duration::from_millis(300));
    late.roundtrip().expect("roundtrip");
    assert!(
        !late.rec.keyboard_enters.contains(&late_surface.id()),
        "a window opened under the lock got the keyboard"
    );
    let pic = comp.wait_for_picture(WAIT, |_| true);
    assert_eq!(
        pic.count(0, 0, 320, 240, GREEN_RGB),
        0,
        "a window shows under the lock"
    );
    assert_eq!(
        pic.count(0, 0, 320, 240, RED_RGB),
        0,
        "a window shows under the lock"
    );

    lock.unlock_and_destroy();
    locker.roundtrip().expect("roundtrip");
    let pic = comp.wait_for_picture(WAIT, |p| {
        p.count(0, 0, 320, 240, RED_RGB) >= 1600 && p.count(0, 0, 320, 240, GREEN_RGB) >= 1600
    });
    assert_eq!(
        pic.count(0, 0, 320, 240, BLUE_RGB),
        0,
        "the lock surface stays after unlock"
    );
    comp.assert_alive();
}

/// Asks for a screencopy frame of the client's first output (all of it, or
/// the logical `region`) and waits for the offered layout.
fn screencopy_frame(
    client: &mut Client,
    manager: &ZwlrScreencopyManagerV1,
    region: Option<(i32, i32, i32, i32)>,
) -> (ZwlrScreencopyFrameV1, Vec<CopyEvent>) {
    let output: wayland_client::protocol::wl_output::WlOutput = client.bind(4);
    let frame = match region {
        None => manager.capture_output(0, &output, &client.qh, ()),
        Some((x, y, w, h)) => manager.capture_output_region(0, &output, x, y, w, h, &client.qh, ()),
    };
    let id = frame.id();
    let done = |r: &common::Recorder| {
        r.copies
            .get(&id)
            .is_some_and(|e| e.contains(&CopyEvent::BufferDone) || e.contains(&CopyEvent::Failed))
    };
    assert!(client.dispatch_until(WAIT, done), "no buffer_done");
    let events = client.rec.copies.get(&id).cloned().unwrap_or_default();
    (frame, events)
}

/// Waits until `frame` is ready or failed; returns its events.
fn copy_result(
    client: &mut Client,
    frame: &ZwlrScreencopyFrameV1,
    timeout: Duration,
) -> Vec<CopyEvent> {
    let id = frame.id();
    client.dispatch_until(timeout, |r| {
        r.copies
            .get(&id)
            .is_some_and(|e| e.contains(&CopyEvent::Ready) || e.contains(&CopyEvent::Failed))
    });
    client.rec.copies.get(&id).cloned().unwrap_or_default()
}

/// grim's protocol: the output is offered as one 320x240 XRGB8888 wl_shm
/// layout, and `copy` fills the client's buffer with what the output shows,
/// pixel for pixel the compositor's own screenshot; a region is that part
/// of it. `copy_with_damage` is due at once the first time, then only once
/// the output changed.
#[test]
fn screencopy_copies_what_the_output_shows() {
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let (surface, _toplevel) = app.map_toplevel(60, 40, RED);
    let pic = comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) >= 2400);
    assert!(
        pic.count(0, 0, 320, 240, RED_RGB) >= 2400,
        "the window is not shown"
    );

    let mut grabber = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = grabber.bind(3);
    let shm: WlShm = grabber.bind(1);
    let (frame, offered) = screencopy_frame(&mut grabber, &manager, None);
    assert_eq!(
        offered,
        vec![
            CopyEvent::Buffer(
                u32::from(wayland_client::protocol::wl_shm::Format::Xrgb8888),
                320,
                240,
                1280
            ),
            CopyEvent::BufferDone
        ]
    );
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0x00ff_00ff);
    frame.copy(&buffer);
    let events = copy_result(&mut grabber, &frame, WAIT);
    assert!(
        events.contains(&CopyEvent::Ready),
        "copy not ready: {events:?}"
    );
    assert!(events.contains(&CopyEvent::Flags(0)), "{events:?}");
    let copied = common::rgb_of(&file, 320, 240);
    let shown = comp.screenshot().expect("screenshot");
    assert!(
        copied.rgb == shown.rgb,
        "the copy differs from the output's picture"
    );

    // A region: logical (10,20) 30x50 of the output.
    let (frame, offered) = screencopy_frame(&mut grabber, &manager, Some((10, 20, 30, 50)));
    assert_eq!(offered[0], CopyEvent::Buffer(1, 30, 50, 120), "{offered:?}");
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 30, 50, 0);
    frame.copy(&buffer);
    assert!(copy_result(&mut grabber, &frame, WAIT).contains(&CopyEvent::Ready));
    let part = common::rgb_of(&file, 30, 50);
    for (y, x) in (0..50).flat_map(|y| (0..30).map(move |x| (y, x))) {
        assert_eq!(
            part.pixel(x, y),
            shown.pixel(x + 10, y + 20),
            "region pixel ({x},{y})"
        );
    }

    // copy_with_damage: due at once the first time, with damage...
    let (frame, _) = screencopy_frame(&mut grabber, &manager, None);
    let (buffer, _file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0);
    frame.copy_with_damage(&buffer);
    let events = copy_result(&mut grabber, &frame, WAIT);
    assert!(events.contains(&CopyEvent::Ready), "{events:?}");
    assert!(
        events.contains(&CopyEvent::Damage(0, 0, 320, 240)),
        "{events:?}"
    );
    // ...then not while nothing changes...
    let (frame, _) = screencopy_frame(&mut grabber, &manager, None);
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0);
    frame.copy_with_damage(&buffer);
    let events = copy_result(&mut grabber, &frame, Duration::from_millis(500));
    assert!(
        events.iter().all(|e| *e != CopyEvent::Ready),
        "a copy of an unchanged output: {events:?}"
    );
    // ...and once the window turns blue.
    let shm_app: WlShm = app.bind(1);
    let blue = app.shm_buffer(&shm_app, 60, 40, BLUE);
    surface.attach(Some(&blue), 0, 0);
    surface.damage_buffer(0, 0, 60, 40);
    surface.commit();
    app.roundtrip().expect("roundtrip");
    let events = copy_result(&mut grabber, &frame, WAIT);
    assert!(
        events.contains(&CopyEvent::Ready),
        "no copy after the change: {events:?}"
    );
    assert_eq!(
        common::rgb_of(&file, 320, 240).count(0, 0, 320, 240, BLUE_RGB),
        2400
    );
    comp.assert_alive();
}

/// On an output turned 90 degrees (wlr-randr), a region is offered in the
/// display's pixels: 30x50 logical is 50x30, and it holds the part of the
/// window (60x40 at the upright top left) that the region covers.
#[test]
fn screencopy_maps_a_region_of_a_rotated_output() {
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let _window = app.map_toplevel(60, 40, RED);
    comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) == 2400);
    let (ok, _, err) = common::wlr_randr(&comp, &["--output", "HEADLESS-1", "--transform", "90"]);
    assert!(ok, "wlr-randr: {err}");
    comp.wait_for_picture(WAIT, |p| p.count(0, 240 - 60, 40, 240, RED_RGB) == 2400);

    let mut grabber = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = grabber.bind(3);
    let shm: WlShm = grabber.bind(1);
    let (frame, offered) = screencopy_frame(&mut grabber, &manager, Some((10, 20, 30, 50)));
    assert_eq!(offered[0], CopyEvent::Buffer(1, 50, 30, 200), "{offered:?}");
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 50, 30, 0);
    frame.copy(&buffer);
    assert!(copy_result(&mut grabber, &frame, WAIT).contains(&CopyEvent::Ready));
    // The window covers x 10..40 and y 20..40 of the region: 30x20.
    assert_eq!(
        common::rgb_of(&file, 50, 30).count(0, 0, 50, 30, RED_RGB),
        600,
        "the region is not the part of the output asked for"
    );
    comp.assert_alive();
}

/// A buffer of another size is invalid_buffer, a second copy of one frame
/// already_used; other clients go on being served.
#[test]
fn screencopy_rejects_a_wrong_buffer_and_a_second_copy() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = bad.bind(3);
    let shm: WlShm = bad.bind(1);
    let (frame, _) = screencopy_frame(&mut bad, &manager, None);
    let small = bad.shm_buffer(&shm, 100, 100, 0);
    frame.copy(&small);
    let message = bad.expect_error(
        "zwlr_screencopy_frame_v1",
        zwlr_screencopy_frame_v1::Error::InvalidBuffer as u32,
    );
    assert!(message.contains("100x100"), "{message}");
    another_client_is_served(&mut comp);

    let mut twice = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = twice.bind(3);
    let shm: WlShm = twice.bind(1);
    let (frame, _) = screencopy_frame(&mut twice, &manager, None);
    let buffer = twice.shm_buffer(&shm, 320, 240, 0);
    frame.copy(&buffer);
    frame.copy(&buffer);
    twice.expect_error(
        "zwlr_screencopy_frame_v1",
        zwlr_screencopy_frame_v1::Error::AlreadyUsed as u32,
    );
    // A region outside the output fails, without an error.
    let mut outside = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = outside.bind(3);
    let (_frame, events) = screencopy_frame(&mut outside, &manager, Some((400, 300, 10, 10)));
    assert_eq!(events, vec![CopyEvent::Failed]);
    another_client_is_served(&mut comp);
}

/// A power control of the client's first output; waits for its first mode.
fn power_control(client: &mut Client) -> ZwlrOutputPowerV1 {
    let manager: ZwlrOutputPowerManagerV1 = client.bind(1);
    let output: wayland_client::protocol::wl_output::WlOutput = client.bind(4);
    let power = manager.get_output_power(&output, &client.qh, ());
    let id = power.id();
    assert!(
        client.dispatch_until(WAIT, |r| r.power.get(&id).is_some_and(|e| !e.is_empty())),
        "no mode event"
    );
    power
}

/// The last event of a power object.
fn last_power_event(client: &Client, power: &ZwlrOutputPowerV1) -> Option<PowerEvent> {
    client
        .rec
        .power
        .get(&power.id())
        .and_then(|e| e.last().copied())
}

/// swayidle's commands (through heapland-power): an output turned off draws
/// nothing (a commit meanwhile is not shown, and gets no frame callback)
/// until it is turned on; every power object of it hears each change;
/// heapland-power turns it off and on and toggles it; a made-up mode is
/// invalid_mode.
#[test]
fn an_output_turned_off_draws_nothing_until_it_is_turned_on() {
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let (surface, _toplevel) = app.map_toplevel(60, 40, RED);
    comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) == 2400);

    let mut daemon = comp.connect();
    let power = power_control(&mut daemon);
    assert_eq!(last_power_event(&daemon, &power), Some(PowerEvent::Mode(1)));
    let mut watcher = comp.connect();
    let watched = power_control(&mut watcher);

    power.set_mode(PowerMode::Off);
    daemon.roundtrip().expect("roundtrip");
    assert_eq!(last_power_event(&daemon, &power), Some(PowerEvent::Mode(0)));
    assert!(
        watcher.dispatch_until(WAIT, |r| r.power.get(&watched.id()).and_then(|e| e.last())
            == Some(&PowerEvent::Mode(0))),
        "another power object of the output did not hear it turn off"
    );
    // A change while off: not drawn, no frame callback.
    let shm: WlShm = app.bind(1);
    let blue = app.shm_buffer(&shm, 60, 40, BLUE);
    surface.attach(Some(&blue), 0, 0);
    surface.damage_buffer(0, 0, 60, 40);
    surface.frame(&app.qh, ());
    surface.commit();
    let frames = app.rec.frames_done;
    app.roundtrip().expect("roundtrip");
    std::thread::sleep(Duration::from_millis(400));
    app.roundtrip().expect("roundtrip");
    assert_eq!(
        app.rec.frames_done, frames,
        "a frame callback while the output is off"
    );
    let pic = comp.screenshot().expect("screenshot");
    assert_eq!(pic.count(0, 0, 320, 240, BLUE_RGB), 0, "drawn while off");

    power.set_mode(PowerMode::On);
    daemon.roundtrip().expect("roundtrip");
    assert_eq!(last_power_event(&daemon, &power), Some(PowerEvent::Mode(1)));
    let pic = comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, BLUE_RGB) == 2400);
    assert_eq!(
        pic.count(0, 0, 320, 240, BLUE_RGB),
        2400,
        "not drawn once on"
    );
    assert!(
        app.dispatch_until(WAIT, |r| r.frames_done > frames),
        "no frame callback once on"
    );

    // heapland-power, as swayidle runs it.
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new(common::heapland_bin().with_file_name("heapland-power"))
                .args(args)
                .env("XDG_RUNTIME_DIR", &comp.dir)
                .env("WAYLAND_DISPLAY", &comp.socket)
                .output()
                .expect("run heapland-power");
        assert!(
            out.status.success(),
            "heapland-power {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mode_is = |watcher: &mut Client, mode: u32| {
        watcher.dispatch_until(WAIT, |r| {
            r.power.get(&watched.id()).and_then(|e| e.last()) == Some(&PowerEvent::Mode(mode))
        })
    };
    run(&["off"]);
    assert!(mode_is(&mut watcher, 0), "heapland-power off");
    run(&["toggle"]);
    assert!(mode_is(&mut watcher, 1), "heapland-power toggle");
    run(&["off", "--output", "HEADLESS-1"]);
    assert!(mode_is(&mut watcher, 0), "heapland-power off --output");
    run(&["on"]);
    assert!(mode_is(&mut watcher, 1), "heapland-power on");

    comp.assert_alive();
}

/// A mode that is neither off nor on is invalid_mode; others go on.
#[test]
fn a_power_mode_other_than_off_and_on_is_invalid_mode() {
    let mut comp = Compositor::start();
    let mut bad = comp.connect();
    let power = power_control(&mut bad);
    // The typed request cannot carry 7: send it in its wire form.
    power
        .send_request(zwlr_output_power_v1::Request::SetMode {
            mode: WEnum::Unknown(7),
        })
        .expect("send set_mode");
    bad.expect_error(
        "zwlr_output_power_v1",
        zwlr_output_power_v1::Error::InvalidMode as u32,
    );
    another_client_is_served(&mut comp);
}

/// swaylock run after the display was blanked: with every output off,
/// nothing shows a client, so the lock is confirmed at once (it would
/// otherwise wait for a frame an output that is off never draws); a
/// recorder's copy of an output that is off fails rather than waiting.
#[test]
fn locking_and_capturing_an_output_that_is_off_do_not_wait() {
    use wayland_protocols::ext::session_lock::v1::client::ext_session_lock_manager_v1::ExtSessionLockManagerV1;
    let mut comp = Compositor::start();
    let mut daemon = comp.connect();
    let power = power_control(&mut daemon);
    power.set_mode(PowerMode::Off);
    daemon.roundtrip().expect("roundtrip");
    assert_eq!(last_power_event(&daemon, &power), Some(PowerEvent::Mode(0)));

    let mut locker = comp.connect();
    let manager: ExtSessionLockManagerV1 = locker.bind(1);
    let lock = manager.lock(&locker.qh, ());
    assert!(
        locker.dispatch_until(WAIT, |r| r.lock_answer.is_some()),
        "no answer to the lock while the output is off"
    );
    assert_eq!(locker.rec.lock_answer, Some(true));

    let mut grabber = comp.connect();
    let manager: ZwlrScreencopyManagerV1 = grabber.bind(3);
    let shm: WlShm = grabber.bind(1);
    let (frame, _) = screencopy_frame(&mut grabber, &manager, None);
    let buffer = grabber.shm_buffer(&shm, 320, 240, 0);
    frame.copy_with_damage(&buffer);
    let events = copy_result(&mut grabber, &frame, WAIT);
    assert!(events.contains(&CopyEvent::Failed), "{events:?}");

    lock.unlock_and_destroy();
    locker.roundtrip().expect("roundtrip");
    comp.assert_alive();
}

/// A configuration may set a head only to one of its own modes: another
/// head's is invalid_mode.
#[test]
fn a_mode_of_another_head_is_invalid_mode() {
    use wayland_protocols_wlr::output_management::v1::client::{
        zwlr_output_configuration_head_v1, zwlr_output_manager_v1::ZwlrOutputManagerV1,
    };
    let mut comp = Compositor::start_with(
        320,
        240,
        &["--output", "200x100@60", "--screenshot-every-frame"],
    );
    let mut bad = comp.connect();
    let manager: ZwlrOutputManagerV1 = bad.bind(4);
    assert!(
        bad.dispatch_until(WAIT, |r| r.output_heads.len() == 2
            && r.output_serial.is_some()),
        "no two heads"
    );
    let (first, _) = bad.rec.output_heads[0].clone();
    let (_, second_modes) = bad.rec.output_heads[1].clone();
    let serial = bad.rec.output_serial.expect("serial");
    let configuration = manager.create_configuration(serial, &bad.qh, ());
    let head = configuration.enable_head(&first, &bad.qh, ());
    head.set_mode(&second_modes[0]);
    bad.expect_error(
        "zwlr_output_configuration_head_v1",
        zwlr_output_configuration_head_v1::Error::InvalidMode as u32,
    );
    another_client_is_served(&mut comp);
}

/// A menu whose positioner puts it past the output's right and bottom
/// edges is slid back on screen, as its constraint adjustment allows; one
/// that allows nothing stays where its positioner says.
#[test]
fn a_popup_is_slid_back_onto_its_output() {
    use wayland_protocols::xdg::shell::client::xdg_positioner::{
        Anchor as PopupAnchor, ConstraintAdjustment, Gravity,
    };
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let wm: XdgWmBase = client.bind(1);
    let compositor: WlCompositor = client.bind(5);
    let shm: WlShm = client.bind(1);
    let surface = compositor.create_surface(&client.qh, ());
    let parent = wm.get_xdg_surface(&surface, &client.qh, ());
    let _toplevel = parent.get_toplevel(&client.qh, ());
    surface.commit();
    assert!(
        client.dispatch_until(WAIT, |r| !r.configures.is_empty()),
        "no configure"
    );
    let buffer = client.shm_buffer(&shm, 100, 80, RED);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, 100, 80);
    surface.commit();
    client.roundtrip().expect("roundtrip");
    let pic = comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) == 8000);
    let (wx, wy) = red_origin(&pic);

    let mut popup_at = |adjustment: ConstraintAdjustment| {
        let positioner = wm.create_positioner(&client.qh, ());
        positioner.set_size(120, 90);
        // Anchored at the window's bottom-right corner and pushed further:
        // past both edges of the 320x240 output.
        positioner.set_anchor_rect(0, 0, 100, 80);
        positioner.set_anchor(PopupAnchor::BottomRight);
        positioner.set_gravity(Gravity::BottomRight);
        positioner.set_offset(200, 120);
        positioner.set_constraint_adjustment(adjustment);
        let popup_surface = compositor.create_surface(&client.qh, ());
        let xdg = wm.get_xdg_surface(&popup_surface, &client.qh, ());
        let popup = xdg.get_popup(Some(&parent), &positioner, &client.qh, ());
        let before = client.rec.popup_configures.len();
        popup_surface.commit();
        assert!(
            client.dispatch_until(WAIT, |r| r.popup_configures.len() > before),
            "no popup configure"
        );
        let configured = *client.rec.popup_configures.last().expect("configure");
        popup.destroy();
        xdg.destroy();
        popup_surface.destroy();
        positioner.destroy();
        configured
    };
    assert_eq!(
        popup_at(ConstraintAdjustment::empty()),
        (300, 200, 120, 90),
        "no adjustment allowed: as positioned"
    );
    let (x, y, w, h) = popup_at(ConstraintAdjustment::SlideX | ConstraintAdjustment::SlideY);
    assert_eq!((w, h), (120, 90));
    // Slid: it ends at the output's right and bottom edges.
    assert_eq!(
        (wx + x + w, wy + y + h),
        (320, 240),
        "popup at ({x},{y}) of a window at ({wx},{wy})"
    );
    comp.assert_alive();
}

/// The top-left corner of the red pixels in `pic`.
fn red_origin(pic: &Picture) -> (i32, i32) {
    for y in 0..pic.height {
        for x in 0..pic.width {
            if pic.pixel(x, y) == RED_RGB {
                return (x as i32, y as i32);
            }
        }
    }
    panic!("no red window");
}

/// A task bar's protocol: each window's title and state (activated), a
/// title change, activating an older window, closing one (its client is
/// asked to close) and a window gone (closed).
#[test]
fn a_task_bar_sees_windows_and_activates_and_closes_them() {
    use wayland_protocols_wlr::foreign_toplevel::v1::client::zwlr_foreign_toplevel_manager_v1::ZwlrForeignToplevelManagerV1;
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let (_first_surface, first) = app.map_toplevel(40, 40, RED);
    comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) == 1600);

    let mut bar = comp.connect();
    // output_enter names the bar's own wl_output: bound first.
    let _output: wayland_client::protocol::wl_output::WlOutput = bar.bind(4);
    let _manager: ZwlrForeignToplevelManagerV1 = bar.bind(3);
    let titled =
        |r: &common::Recorder, title: &str| r.foreign_windows.iter().any(|(_, w)| w.title == title);
    assert!(
        bar.dispatch_until(WAIT, |r| titled(r, "heapland-test")),
        "no handle of the window: {:?}",
        bar.rec.foreign_windows
    );
    let (handle, told) = bar.rec.foreign_windows[0].clone();
    assert!(
        told.states.contains(&2),
        "the focused window is not activated: {told:?}"
    );
    assert_eq!(told.outputs, 1, "{told:?}");

    first.set_title("renamed".into());
    app.roundtrip().expect("roundtrip");
    assert!(
        bar.dispatch_until(WAIT, |r| titled(r, "renamed")),
        "no new title"
    );

    // A second window takes the focus; the bar activates the first again.
    let (_second_surface, second) = app.map_toplevel(40, 40, GREEN);
    assert!(
        bar.dispatch_until(WAIT, |r| r.foreign_windows.len() == 2
            && r.foreign_windows[0].1.states.is_empty()),
        "the first window still activated: {:?}",
        bar.rec.foreign_windows
    );
    handle.activate(&bar.bind::<WlSeat>(5));
    bar.roundtrip().expect("roundtrip");
    assert!(
        bar.dispatch_until(WAIT, |r| r.foreign_windows[0].1.states.contains(&2)),
        "not activated: {:?}",
        bar.rec.foreign_windows
    );
    let first_id = first.id();
    assert!(
        app.dispatch_until(WAIT, |r| r.activated.get(&first_id) == Some(&true)),
        "the client was not told its window is activated"
    );

    handle.close();
    bar.roundtrip().expect("roundtrip");
    assert!(
        app.dispatch_until(WAIT, |r| r.closes == 1),
        "the client was not asked to close"
    );
    second.destroy();
    app.roundtrip().expect("roundtrip");
    assert!(
        bar.dispatch_until(WAIT, |r| r.foreign_windows.len() == 2
            && r.foreign_windows[1].1.closed),
        "the gone window's handle is not closed: {:?}",
        bar.rec.foreign_windows
    );
    comp.assert_alive();
}
