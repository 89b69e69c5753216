//! Debian's own Wayland clients against heapland: `wayland-info` (package
//! wayland-utils), `weston-simple-shm` (package weston), `wl-copy` and
//! `wl-paste` (package wl-clipboard), `grim` (package grim) and `wlr-randr`
//! (package wlr-randr). They must be installed; a missing tool fails the
//! test.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{Compositor, BACKGROUND};

fn tool(name: &str) -> Command {
    let path = ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (apt-get install wayland-utils weston wl-clipboard grim wlr-randr)"
            )
        });
    Command::new(path)
}

#[test]
fn wayland_info_lists_the_heap_global_and_the_linux_dmabuf_formats() {
    let comp = Compositor::start_with(320, 240, &[]);
    let out = tool("wayland-info")
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .env("WAYLAND_DISPLAY", &comp.socket)
        .output()
        .expect("run wayland-info");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wayland-info failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("'xx_dmabuf_heap_manager_v1',"), "{stdout}");
    let dmabuf = stdout
        .split("interface: ")
        .find(|s| s.starts_with("'zwp_linux_dmabuf_v1'"))
        .expect("linux-dmabuf section");
    if common::render_node().is_some() {
        assert!(dmabuf.contains("main device: 0x"), "{dmabuf}");
        assert!(dmabuf.contains("\ttranche"), "{dmabuf}");
        assert!(dmabuf.contains("target device: 0x"), "{dmabuf}");
    } else {
        // No DRM device a client could open: version 3, no feedback.
        assert!(dmabuf.contains("version:  3"), "{dmabuf}");
        assert!(!dmabuf.contains("main device"), "{dmabuf}");
    }
    assert!(
        dmabuf.contains("'XR24'; 0x0000000000000000 = LINEAR"),
        "{dmabuf}"
    );
    assert!(
        dmabuf.contains("'AR24'; 0x0000000000000000 = LINEAR"),
        "{dmabuf}"
    );
}

#[test]
fn weston_simple_shm_maps_a_window_that_appears_in_the_output() {
    let mut comp = Compositor::start();
    let mut child = tool("weston-simple-shm")
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .env("WAYLAND_DISPLAY", &comp.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weston-simple-shm");
    // simple-shm draws a 250x250 window; its animated pattern fills the
    // square from (20,20) to (230,230) with anything but our background.
    let inside = |p: &common::Picture| p.count(30, 30, 220, 220, BACKGROUND) == 0;
    let pic = comp.wait_for_picture(Duration::from_secs(15), inside);
    let _ = child.kill();
    let _ = child.wait();
    assert!(inside(&pic), "weston-simple-shm window not in the output");
    // Outside the window, the background.
    assert_eq!(pic.pixel(300, 20), BACKGROUND);
    assert_eq!(pic.pixel(300, 230), BACKGROUND);
    // Many distinct colours: the client's pattern, not a flat fill.
    let mut colours = std::collections::HashSet::new();
    for y in (30..220).step_by(7) {
        for x in (30..220).step_by(7) {
            colours.insert(pic.pixel(x, y));
        }
    }
    assert!(
        colours.len() > 20,
        "only {} colours in the window",
        colours.len()
    );
    comp.assert_alive();
}

/// Runs wl-copy with `args`: its background half keeps serving the copy, so
/// nothing waits for its output.
fn wl_copy(comp: &Compositor, args: &[&str]) {
    let status = tool("wl-copy")
        .args(args)
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .env("WAYLAND_DISPLAY", &comp.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run wl-copy");
    assert!(status.success(), "wl-copy {args:?}: {status}");
}

/// wl-paste with `args` until it prints `expected` (wl-copy's background half
/// may take a moment to offer it), for at most 10 s.
fn paste_until(comp: &Compositor, args: &[&str], expected: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = tool("wl-paste")
            .args(args)
            .env("XDG_RUNTIME_DIR", &comp.dir)
            .env("WAYLAND_DISPLAY", &comp.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run wl-paste");
        let got = String::from_utf8_lossy(&out.stdout);
        if got == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wl-paste {args:?} printed {got:?}, not {expected:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// wl-clipboard needs no window: it sets and reads the clipboard and the
/// primary selection through data control. wl-copy stays in the background
/// serving its copy until another copy replaces it.
#[test]
fn wl_copy_and_wl_paste_round_trip_both_selections() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    wl_copy(&comp, &["heapland clipboard"]);
    wl_copy(&comp, &["--primary", "heapland primary"]);
    paste_until(&comp, &["--no-newline"], "heapland clipboard");
    paste_until(&comp, &["--primary", "--no-newline"], "heapland primary");
    // A second copy replaces the first (whose wl-copy then exits).
    wl_copy(&comp, &["second"]);
    paste_until(&comp, &["--no-newline"], "second");
    wl_copy(&comp, &["--clear"]);
    wl_copy(&comp, &["--primary", "--clear"]);
    comp.assert_alive();
}

/// grim (wlr-screencopy): its PNG of the output is, pixel for pixel, the
/// compositor's own screenshot of it, with two windows on it; `grim -g`
/// gives that part of it.
#[test]
fn grim_captures_the_output_as_heapland_draws_it() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let _red = client.map_toplevel(70, 50, 0x00ff_0000);
    let _green = client.map_toplevel(50, 30, 0x0000_ff00);
    let shown = comp.wait_for_picture(Duration::from_secs(15), |p| {
        p.count(0, 0, 320, 240, [255, 0, 0]) > 0 && p.count(0, 0, 320, 240, [0, 255, 0]) == 1500
    });
    assert_eq!(
        shown.count(0, 0, 320, 240, [0, 255, 0]),
        1500,
        "the windows are not shown"
    );
    let whole = common::grim(&comp, &[], "grim.png");
    assert_eq!((whole.width, whole.height), (320, 240));
    let differing = (0..240)
        .flat_map(|y| (0..320).map(move |x| (x, y)))
        .filter(|&(x, y)| whole.pixel(x, y) != shown.pixel(x, y))
        .count();
    assert_eq!(
        differing, 0,
        "grim's PNG differs from the output in {differing} pixels"
    );

    let part = common::grim(&comp, &["-g", "10,20 30x50"], "grim-region.png");
    assert_eq!((part.width, part.height), (30, 50));
    for y in 0..50 {
        for x in 0..30 {
            assert_eq!(
                part.pixel(x, y),
                shown.pixel(x + 10, y + 20),
                "pixel ({x},{y})"
            );
        }
    }
    comp.assert_alive();
}

/// wlr-randr (wlr-output-management) lists the output with its mode, sets
/// another size on it (the picture follows), moves and scales it; what
/// heapland cannot do (turning the output off) fails and changes nothing.
#[test]
fn wlr_randr_lists_and_changes_the_output() {
    let mut comp = Compositor::start();
    let (ok, listed, err) = common::wlr_randr(&comp, &[]);
    assert!(ok, "wlr-randr: {err}");
    assert!(listed.contains("HEADLESS-1"), "{listed}");
    assert!(
        listed.contains("320x240 px, 60.000000 Hz (preferred, current)"),
        "{listed}"
    );
    assert!(listed.contains("Enabled: yes"), "{listed}");

    let (ok, _, err) = common::wlr_randr(
        &comp,
        &["--output", "HEADLESS-1", "--custom-mode", "640x480"],
    );
    assert!(ok, "--custom-mode 640x480: {err}\n{}", comp.log_text());
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| {
        (p.width, p.height) == (640, 480)
    });
    assert_eq!(
        (pic.width, pic.height),
        (640, 480),
        "the output was not resized"
    );
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(
        listed.contains("640x480 px, 60.000000 Hz (current)"),
        "{listed}"
    );

    let (ok, _, err) = common::wlr_randr(
        &comp,
        &["--output", "HEADLESS-1", "--pos", "100,50", "--scale", "2"],
    );
    assert!(ok, "--pos --scale: {err}");
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(listed.contains("Position: 100,50"), "{listed}");
    assert!(listed.contains("Scale: 2.000000"), "{listed}");

    let (ok, _, _) = common::wlr_randr(&comp, &["--output", "HEADLESS-1", "--off"]);
    assert!(!ok, "wlr-randr --off succeeded");
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(listed.contains("Enabled: yes"), "{listed}");
    comp.assert_alive();
}

/// `wlr-randr --transform 90` rotates the output: heapland's picture of
/// its pixels stays 320x240 with a window at the upright top left showing
/// at the pixels' top right, and grim (which turns a capture upright with
/// the output's transform) gives a 240x320 picture with the window at its
/// top left; `grim -g` of a region is that part of it. `normal` turns it
/// back.
#[test]
fn wlr_randr_rotates_the_output() {
    let mut comp = Compositor::start();
    let mut client = comp.connect();
    let _red = client.map_toplevel(60, 40, 0x00ff_0000);
    comp.wait_for_picture(Duration::from_secs(10), |p| {
        p.count(0, 0, 60, 40, [255, 0, 0]) == 2400
    });
    let (ok, _, err) = common::wlr_randr(&comp, &["--output", "HEADLESS-1", "--transform", "90"]);
    assert!(ok, "--transform 90: {err}\n{}", comp.log_text());
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(listed.contains("Transform: 90"), "{listed}");
    client.roundtrip().expect("roundtrip");

    // The pixels: a 90 degree turn (counter-clockwise, as wl_output
    // numbers it) puts the upright top left at the bottom left of the
    // mode's picture, the window 40 wide and 60 high there.
    let pixels = comp.wait_for_picture(Duration::from_secs(10), |p| {
        p.count(0, 240 - 60, 40, 240, [255, 0, 0]) == 2400
    });
    let red: Vec<(u32, u32)> = (0..240)
        .flat_map(|y| (0..320).map(move |x| (x, y)))
        .filter(|&(x, y)| pixels.pixel(x, y) == [255, 0, 0])
        .collect();
    assert_eq!(
        pixels.count(0, 240 - 60, 40, 240, [255, 0, 0]),
        2400,
        "the window is not where a 90 degree turn puts it: {} red pixels from {:?} to {:?}",
        red.len(),
        red.first(),
        red.last()
    );

    let upright = common::grim(&comp, &[], "rotated.png");
    assert_eq!((upright.width, upright.height), (240, 320));
    assert_eq!(
        upright.count(0, 0, 60, 40, [255, 0, 0]),
        2400,
        "grim's picture is not upright"
    );
    let part = common::grim(&comp, &["-g", "30,20 100x50"], "rotated-region.png");
    assert_eq!((part.width, part.height), (100, 50));
    for (y, x) in (0..50).flat_map(|y| (0..100).map(move |x| (y, x))) {
        assert_eq!(
            part.pixel(x, y),
            upright.pixel(x + 30, y + 20),
            "region pixel ({x},{y})"
        );
    }

    let (ok, _, err) =
        common::wlr_randr(&comp, &["--output", "HEADLESS-1", "--transform", "normal"]);
    assert!(ok, "--transform normal: {err}");
    comp.wait_for_picture(Duration::from_secs(10), |p| {
        p.count(0, 0, 60, 40, [255, 0, 0]) == 2400
    });
    let back = common::grim(&comp, &[], "back.png");
    assert_eq!((back.width, back.height), (320, 240));
    assert_eq!(back.count(0, 0, 60, 40, [255, 0, 0]), 2400);
    comp.assert_alive();
}

/// `[outputs."HEADLESS-1"]` in the configuration sets the output's mode
/// and position at start (wlr-randr reads them back), and a change to the
/// file sets them again; a bad scale is refused with its line and changes
/// nothing.
#[test]
fn the_configuration_sets_an_outputs_mode_and_position() {
    let dir = common::private_dir("outputs-config");
    let config = dir.join("config.toml");
    let write = |text: &str| std::fs::write(&config, text).expect("write the config");
    write("[outputs.\"HEADLESS-1\"]\nmode = \"400x300\"\nposition = [10, 20]\n");
    let config_arg = config.to_string_lossy().into_owned();
    let mut comp = Compositor::start_with(
        320,
        240,
        &["--screenshot-every-frame", "--config", &config_arg],
    );
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| {
        (p.width, p.height) == (400, 300)
    });
    assert_eq!((pic.width, pic.height), (400, 300), "{}", comp.log_text());
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(listed.contains("Position: 10,20"), "{listed}");

    write("[outputs.\"HEADLESS-1\"]\nmode = \"500x200@30\"\n");
    let pic = comp.wait_for_picture(Duration::from_secs(10), |p| {
        (p.width, p.height) == (500, 200)
    });
    assert_eq!((pic.width, pic.height), (500, 200), "{}", comp.log_text());
    let (_, listed, _) = common::wlr_randr(&comp, &[]);
    assert!(
        listed.contains("500x200 px, 30.000000 Hz (current)"),
        "{listed}"
    );

    write("[outputs.\"HEADLESS-1\"]\nmode = \"640x480\"\nscale = -1\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !comp.log_text().contains("config.toml, line 3:") {
        assert!(
            std::time::Instant::now() < deadline,
            "no error naming line 3:\n{}",
            comp.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pic = comp.screenshot().expect("screenshot");
    assert_eq!(
        (pic.width, pic.height),
        (500, 200),
        "a bad configuration changed the output"
    );
    comp.assert_alive();
}
