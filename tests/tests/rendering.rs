//! A client maps xdg toplevels with wl_shm buffers; the headless output
//! (read back from the PNG the compositor writes) shows their pixels in the
//! stacking layout; frame callbacks, presentation feedback and the preferred
//! fractional scale arrive.

mod common;

use std::time::Duration;

use common::{Compositor, BACKGROUND};
use wayland_protocols::wp::{
    fractional_scale::v1::client::wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1,
    presentation_time::client::wp_presentation::WpPresentation,
};

const ORANGE: u32 = 0x00ff_8000;
const ORANGE_RGB: [u8; 3] = [255, 128, 0];
const BLUE: u32 = 0x0020_40ff;
const BLUE_RGB: [u8; 3] = [32, 64, 255];

#[test]
fn shm_toplevel_appears_in_the_output_with_frames_and_presentation() {
    let mut comp = Compositor::start();
    let mut c = comp.connect();
    let presentation: WpPresentation = c.bind(1);
    let scale_mgr: WpFractionalScaleManagerV1 = c.bind(1);

    let (surface, _toplevel) = c.map_toplevel(100, 80, ORANGE);
    let _scale = scale_mgr.get_fractional_scale(&surface, &c.qh, ());
    // Next commit asks for a frame callback and presentation feedback.
    surface.frame(&c.qh, ());
    presentation.feedback(&surface, &c.qh, ());
    surface.damage_buffer(0, 0, 100, 80);
    surface.commit();
    assert!(
        c.dispatch_until(Duration::from_secs(10), |r| r.frames_done >= 1
            && r.presented >= 1),
        "frames_done={} presented={} discarded={}",
        c.rec.frames_done,
        c.rec.presented,
        c.rec.discarded
    );
    assert_eq!(c.rec.discarded, 0);
    assert_eq!(c.rec.preferred_scale, Some(120), "scale 1.0 is 120/120");

    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(50, 40) == ORANGE_RGB);
    assert_eq!((pic.width, pic.height), (comp.width, comp.height));
    // The whole window and nothing else: the first window sits at (0, 0).
    assert_eq!(
        pic.count(0, 0, 100, 80, ORANGE_RGB),
        100 * 80,
        "window pixels"
    );
    assert_eq!(pic.pixel(100, 80), BACKGROUND);
    assert_eq!(pic.pixel(319, 239), BACKGROUND);
    assert_eq!(
        pic.count(0, 0, 320, 240, ORANGE_RGB),
        100 * 80,
        "no orange outside the window"
    );

    // A second client's window stacks on top, cascaded by 48 px.
    let mut c2 = comp.connect();
    let (_s2, _t2) = c2.map_toplevel(60, 60, BLUE);
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(100, 100) == BLUE_RGB);
    assert_eq!(
        pic.count(48, 48, 108, 108, BLUE_RGB),
        60 * 60,
        "second window at (48,48)"
    );
    assert_eq!(pic.pixel(10, 10), ORANGE_RGB, "first window still visible");
    assert_eq!(pic.pixel(60, 60), BLUE_RGB, "second window is on top");

    // When the second client goes away its window disappears.
    drop(_t2);
    drop(_s2);
    drop(c2);
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(100, 100) == BACKGROUND);
    assert_eq!(
        pic.pixel(100, 100),
        BACKGROUND,
        "window of a gone client still drawn"
    );
    assert_eq!(pic.pixel(60, 60), ORANGE_RGB);
    comp.assert_alive();
}

#[test]
fn screenshot_on_sigusr1() {
    let mut comp = Compositor::start_with(200, 100, &[]);
    let mut c = comp.connect();
    let (_s, _t) = c.map_toplevel(40, 30, BLUE);
    // Wait for a frame so the window has been rendered.
    _s.frame(&c.qh, ());
    _s.commit();
    assert!(c.dispatch_until(Duration::from_secs(10), |r| r.frames_done >= 1));
    assert!(
        comp.screenshot().is_none(),
        "no screenshot before it is asked for"
    );
    common::signal(comp.pid(), rustix::process::Signal::USR1);
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(20, 15) == BLUE_RGB);
    assert_eq!((pic.width, pic.height), (200, 100));
    assert_eq!(pic.pixel(20, 15), BLUE_RGB);
    assert_eq!(pic.pixel(150, 50), BACKGROUND);
}

#[test]
fn several_outputs_are_advertised() {
    let comp = Compositor::start_with(320, 240, &["--output", "640x480@30"]);
    let c = comp.connect();
    let outputs = c
        .globals
        .contents()
        .clone_list()
        .into_iter()
        .filter(|g| g.interface == "wl_output")
        .count();
    assert_eq!(outputs, 2);
}

#[test]
fn viewporter_scales_the_buffer_to_its_destination_size() {
    use wayland_protocols::wp::viewporter::client::wp_viewporter::WpViewporter;
    let mut comp = Compositor::start();
    let mut c = comp.connect();
    let viewporter: WpViewporter = c.bind(1);
    let (surface, _t) = c.map_toplevel(50, 40, ORANGE);
    let viewport = viewporter.get_viewport(&surface, &c.qh, ());
    viewport.set_destination(150, 120);
    surface.commit();
    c.roundtrip().expect("roundtrip");
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(140, 110) == ORANGE_RGB);
    // Bilinear filtering blends the outermost pixel ring with the outside;
    // everything inside is exact, and nothing beyond 150x120 is the window.
    assert_eq!(
        pic.count(1, 1, 149, 119, ORANGE_RGB),
        148 * 118,
        "scaled window"
    );
    assert_eq!(
        pic.count(0, 0, 320, 240, ORANGE_RGB),
        pic.count(0, 0, 150, 120, ORANGE_RGB)
    );
    assert_eq!(pic.pixel(151, 60), BACKGROUND);
    assert_eq!(pic.pixel(60, 121), BACKGROUND);
}

#[test]
fn subsurface_is_drawn_above_its_parent_at_its_offset() {
    use wayland_client::protocol::{
        wl_compositor::WlCompositor, wl_shm::WlShm, wl_subcompositor::WlSubcompositor,
    };
    let mut comp = Compositor::start();
    let mut c = comp.connect();
    let compositor: WlCompositor = c.bind(5);
    let subcompositor: WlSubcompositor = c.bind(1);
    let shm: WlShm = c.bind(1);
    let (parent, _t) = c.map_toplevel(100, 80, ORANGE);
    let child = compositor.create_surface(&c.qh, ());
    let sub = subcompositor.get_subsurface(&child, &parent, &c.qh, ());
    sub.set_position(30, 20);
    let buffer = c.shm_buffer(&shm, 20, 10, BLUE);
    child.attach(Some(&buffer), 0, 0);
    child.damage_buffer(0, 0, 20, 10);
    child.commit();
    // Synchronized subsurface state applies with the parent's commit.
    parent.commit();
    c.roundtrip().expect("roundtrip");
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| p.pixel(35, 25) == BLUE_RGB);
    assert_eq!(
        pic.count(30, 20, 50, 30, BLUE_RGB),
        20 * 10,
        "subsurface pixels"
    );
    assert_eq!(
        pic.count(0, 0, 320, 240, BLUE_RGB),
        20 * 10,
        "no blue elsewhere"
    );
    assert_eq!(pic.pixel(10, 10), ORANGE_RGB);
    assert_eq!(pic.pixel(60, 40), ORANGE_RGB);
}

#[test]
fn xdg_output_reports_name_and_logical_geometry() {
    use wayland_client::protocol::wl_output::WlOutput;
    use wayland_protocols::xdg::xdg_output::zv1::client::zxdg_output_manager_v1::ZxdgOutputManagerV1;
    let comp = Compositor::start_with(320, 240, &["--output", "200x100@30"]);
    let mut c = comp.connect();
    let manager: ZxdgOutputManagerV1 = c.bind(3);
    let outputs: Vec<u32> = c
        .globals
        .contents()
        .clone_list()
        .into_iter()
        .filter(|g| g.interface == "wl_output")
        .map(|g| g.name)
        .collect();
    let mut seen = Vec::new();
    for name in outputs {
        let output: WlOutput = c.globals.registry().bind(name, 4, &c.qh, ());
        let _xdg = manager.get_xdg_output(&output, &c.qh, ());
        c.rec.xdg_output = None;
        c.rec.xdg_output_pending = Default::default();
        assert!(c.dispatch_until(Duration::from_secs(10), |r| r.xdg_output.is_some()));
        seen.push(c.rec.xdg_output.take().unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("HEADLESS-1".to_string(), (0, 0), (320, 240)),
            ("HEADLESS-2".to_string(), (320, 0), (200, 100)),
        ]
    );
}
