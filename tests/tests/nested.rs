//! The nested backend: `heapland --backend winit` in a window on an X server
//! (Xvfb, rendering with Mesa's software GL), a wl_shm client maps a window,
//! and the X server's own picture of the screen (`xwd -root`) shows the
//! client's pixels, as grim's capture of the output does. Xvfb, xwd and grim
//! come from the `xvfb`, `x11-apps` and `grim` packages that tests/deps
//! installs; their absence fails the test.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Compositor, Picture};

const GREEN: u32 = 0x0030_c050;
const GREEN_RGB: [u8; 3] = [0x30, 0xc0, 0x50];
/// heapland's nested window size (winit's default inner size).
const WINDOW: (u32, u32) = (1280, 800);

/// An Xvfb server on a display number nobody uses, killed on drop.
struct XServer {
    child: Child,
    display: String,
}

impl XServer {
    fn start() -> XServer {
        let n = (60 + std::process::id() % 200..)
            .find(|n| !PathBuf::from(format!("/tmp/.X{n}-lock")).exists())
            .expect("a free X display number");
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb (package xvfb, installed by tests/deps)");
        let mut server = XServer { child, display };
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("Xvfb exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "Xvfb never created {socket:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The whole screen as the X server has it.
    fn grab(&mut self) -> Picture {
        let out = Command::new("xwd")
            .args(["-root", "-silent", "-display", &self.display])
            .output()
            .expect("run xwd (package x11-apps, installed by tests/deps)");
        assert!(out.status.success(), "xwd failed: {out:?}");
        parse_xwd(&out.stdout)
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes a 24/32-bit TrueColor ZPixmap XWD dump (what `xwd -root` writes
/// for Xvfb's default visual) into RGB rows.
fn parse_xwd(data: &[u8]) -> Picture {
    let field = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap());
    let (header_size, format, width, height) = (field(0), field(2), field(4), field(5));
    let (byte_order, bits_per_pixel, bytes_per_line) = (field(7), field(11), field(12));
    let (red_mask, green_mask, blue_mask, ncolors) = (field(14), field(15), field(16), field(19));
    assert_eq!(format, 2, "xwd: not a ZPixmap");
    assert_eq!(bits_per_pixel, 32, "xwd: not 32 bits per pixel");
    assert_eq!(
        (red_mask, green_mask, blue_mask),
        (0xff_0000, 0xff00, 0xff),
        "xwd: unexpected visual"
    );
    let start = header_size as usize + ncolors as usize * 12;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let row = &data[start + y * bytes_per_line as usize..][..width as usize * 4];
        for px in row.chunks_exact(4) {
            let v = if byte_order == 0 {
                u32::from_le_bytes(px.try_into().unwrap())
            } else {
                u32::from_be_bytes(px.try_into().unwrap())
            };
            rgb.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    Picture { width, height, rgb }
}

#[test]
fn nested_window_shows_a_client() {
    let mut x = XServer::start();
    let mut comp = Compositor::start_nested(&x.display, WINDOW);
    let mut c = comp.connect();
    let (_surface, _toplevel) = c.map_toplevel(120, 90, GREEN);

    // No window manager: heapland's window sits at the root's origin, and
    // the first client window at the output's origin.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pic = loop {
        comp.assert_alive();
        c.roundtrip().expect("roundtrip");
        let pic = x.grab();
        if pic.count(0, 0, 120, 90, GREEN_RGB) == 120 * 90 || Instant::now() > deadline {
            break pic;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        pic.count(0, 0, 120, 90, GREEN_RGB),
        120 * 90,
        "the client's window is not on the X screen:\n{}",
        comp.log_text()
    );
    assert_eq!(
        pic.count(0, 0, pic.width, pic.height, GREEN_RGB),
        120 * 90,
        "green outside the client's window"
    );
    // grim, through wlr-screencopy, reads the GLES renderer's own picture:
    // the same pixels as the X server's, the right way up.
    let grabbed = common::grim(&comp, &[], "grim.png");
    assert_eq!((grabbed.width, grabbed.height), WINDOW);
    let differing = (0..WINDOW.1)
        .flat_map(|y| (0..WINDOW.0).map(move |x| (x, y)))
        .filter(|&(x, y)| grabbed.pixel(x, y) != pic.pixel(x, y))
        .count();
    assert_eq!(
        differing, 0,
        "grim and the X screen differ in {differing} pixels"
    );
    assert!(
        comp.log_text().contains("in a window (winit, GLES)"),
        "not the nested backend:\n{}",
        comp.log_text()
    );
    assert!(comp.terminate().success(), "{}", comp.log_text());
}
