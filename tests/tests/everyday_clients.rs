//! Debian's own everyday clients in heapland's headless output, checked by
//! their pixels: foot (server-side decorations, text), weston-terminal
//! (client-side decorations), weston-simple-egl (Mesa's EGL on Wayland) and
//! a GTK4 program (tests/clients/gtk4-window.py). Every one must be
//! installed (tests/deps); a missing one fails its test.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{Compositor, Picture, BACKGROUND};

const WAIT: Duration = Duration::from_secs(30);
/// heapland's focused title bar (compositor/src/decoration.rs).
const TITLE_FOCUSED_RGB: [u8; 3] = [56, 84, 128];
const TITLE_HEIGHT: u32 = 24;

fn program(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is not installed: run tests/deps (foot, weston, python3-gi, gir1.2-gtk-4.0)"
    );
    path
}

/// A client of `comp`, its output kept in a file for failure messages.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(comp: &Compositor, mut cmd: Command, tag: &str) -> Running {
        let log = comp.dir.join(format!("{tag}.log"));
        let file = std::fs::File::create(&log).expect("client log");
        let child = cmd
            .env("XDG_RUNTIME_DIR", &comp.dir)
            .env("WAYLAND_DISPLAY", &comp.socket)
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {tag}: {e}"));
        Running { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the client already exited (it crashed or refused to run).
    fn assert_running(&mut self, tag: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{tag} exited with {status}:\n{}", self.output());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pixels of a rectangle for which `pred` holds.
fn count_where(p: &Picture, rect: (u32, u32, u32, u32), pred: impl Fn([u8; 3]) -> bool) -> usize {
    let (x0, y0, x1, y1) = rect;
    (y0..y1.min(p.height))
        .flat_map(|y| (x0..x1.min(p.width)).map(move |x| (x, y)))
        .filter(|&(x, y)| pred(p.pixel(x, y)))
        .count()
}

#[test]
fn foot_shows_its_text_under_a_server_side_title_bar() {
    let mut comp = Compositor::start_with(640, 480, &["--screenshot-every-frame"]);
    let mut cmd = Command::new(program("foot"));
    cmd.args([
        "-o",
        "colors.background=00ff00",
        "-o",
        "colors.foreground=000000",
        "sh",
        "-c",
        "echo heapland; sleep 60",
    ]);
    let mut foot = Running::start(&comp, cmd, "foot");
    let green = |p: [u8; 3]| p == [0, 255, 0];
    // foot's window, below heapland's title bar, mostly its green
    // background, with the black text of its first line.
    let body = (0, TITLE_HEIGHT, 400, 300);
    let text = (0, TITLE_HEIGHT, 80, TITLE_HEIGHT + 20);
    let ready = |p: &Picture| {
        count_where(p, body, green) > 100_000 && count_where(p, text, |c| c[1] < 100) > 20
    };
    let pic = comp.wait_for_picture(WAIT, ready);
    foot.assert_running("foot");
    assert!(
        ready(&pic),
        "foot's window: {} green px, {} text px\n{}",
        count_where(&pic, body, green),
        count_where(&pic, text, |c| c[1] < 100),
        foot.output()
    );
    let bar = pic.count_near((0, 0, 300, TITLE_HEIGHT), TITLE_FOCUSED_RGB, 2);
    assert!(
        bar > 250 * TITLE_HEIGHT as usize,
        "no focused title bar over foot ({bar} px)"
    );
    assert!(
        foot.output().contains("using SSD decorations"),
        "{}",
        foot.output()
    );
}

#[test]
fn weston_terminal_draws_its_own_frame_and_a_prompt() {
    let mut comp = Compositor::start_with(640, 480, &["--screenshot-every-frame"]);
    let mut cmd = Command::new(program("weston-terminal"));
    cmd.arg("--shell=/bin/sh").env("PS1", "heapland$ ");
    let mut term = Running::start(&comp, cmd, "weston-terminal");
    let black = |p: [u8; 3]| p == [0, 0, 0];
    let light = |p: [u8; 3]| p.iter().all(|&c| c > 180);
    let body = (20, 60, 620, 400);
    let ready = |p: &Picture| {
        count_where(p, body, black) > 150_000
            && count_where(p, (0, 0, 640, 30), light) > 5_000
            && count_where(p, (5, 25, 120, 50), |c| c.iter().all(|&v| v > 150)) > 20
    };
    let pic = comp.wait_for_picture(WAIT, ready);
    term.assert_running("weston-terminal");
    assert!(
        ready(&pic),
        "weston-terminal: {} black px in the body, {} light px in its frame, {} prompt px\n{}",
        count_where(&pic, body, black),
        count_where(&pic, (0, 0, 640, 30), light),
        count_where(&pic, (5, 25, 120, 50), |c| c.iter().all(|&v| v > 150)),
        term.output()
    );
}

#[test]
fn weston_simple_egl_renders_its_triangle() {
    let mut comp = Compositor::start_with(640, 480, &["--screenshot-every-frame"]);
    let mut egl = Running::start(
        &comp,
        Command::new(program("weston-simple-egl")),
        "simple-egl",
    );
    // The triangle's corners are red, green and blue, over the window's
    // half-transparent black (simple-egl draws with alpha unless -o).
    let area = (0, 0, 250, 250);
    let reddish = |c: [u8; 3]| c[0] > 150 && c[1] < 90 && c[2] < 90;
    let greenish = |c: [u8; 3]| c[1] > 150 && c[0] < 90 && c[2] < 90;
    let blueish = |c: [u8; 3]| c[2] > 150 && c[0] < 90 && c[1] < 90;
    let ready = |p: &Picture| {
        count_where(p, area, reddish) > 10
            && count_where(p, area, greenish) > 10
            && count_where(p, area, blueish) > 10
    };
    let pic = comp.wait_for_picture(WAIT, ready);
    egl.assert_running("weston-simple-egl");
    assert!(
        ready(&pic),
        "weston-simple-egl: red {}, green {}, blue {}\n{}",
        count_where(&pic, area, reddish),
        count_where(&pic, area, greenish),
        count_where(&pic, area, blueish),
        egl.output()
    );
    // Its translucent window darkens the background; beyond it, none.
    let dark = |c: [u8; 3]| c.iter().zip(BACKGROUND).all(|(&v, b)| v < b);
    assert!(dark(pic.pixel(5, 5)), "window corner {:?}", pic.pixel(5, 5));
    assert_eq!(pic.pixel(600, 400), BACKGROUND);
}

#[test]
fn a_gtk4_window_shows_its_colour_under_its_header_bar() {
    let mut comp = Compositor::start_with(640, 480, &["--screenshot-every-frame"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/gtk4-window.py");
    let mut cmd = Command::new(program("python3"));
    cmd.arg(&script)
        .arg("ff00ff")
        // No session bus or accessibility bus in the test: GTK would wait for them.
        .env("NO_AT_BRIDGE", "1")
        .env("GDK_BACKEND", "wayland");
    let mut gtk = Running::start(&comp, cmd, "gtk4");
    let magenta = |c: [u8; 3]| c == [255, 0, 255];
    let light = |c: [u8; 3]| c.iter().all(|&v| v > 200);
    let ready = |p: &Picture| {
        count_where(p, (0, 0, 640, 480), magenta) > 250 * 120
            && count_where(p, (0, 0, 300, 40), light) > 3_000
    };
    let pic = comp.wait_for_picture(WAIT, ready);
    gtk.assert_running("gtk4-window.py");
    assert!(
        ready(&pic),
        "GTK4 window: {} magenta px, {} header bar px\n{}",
        count_where(&pic, (0, 0, 640, 480), magenta),
        count_where(&pic, (0, 0, 300, 40), light),
        gtk.output()
    );
}
