//! Debian's own Wayland clients against heapland: `wayland-info` (package
//! wayland-utils) and `weston-simple-shm` (package weston). Both must be
//! installed; a missing tool fails the test.

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
            panic!("{name} is not installed (apt-get install wayland-utils weston)")
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
