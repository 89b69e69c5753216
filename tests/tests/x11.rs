//! X11 apps through Xwayland (Debian 12's, 22.1: the surface comes by
//! `WL_SURFACE_ID`, which heapland pairs itself): Debian's `xterm` and
//! `xeyes` open as windows heapland decorates and focuses, started by
//! `--exec` with the DISPLAY heapland gives them; they close; the
//! clipboard crosses between X11 (`xclip`) and Wayland (`wl-copy`,
//! `wl-paste`) both ways. Packages xwayland, xterm, x11-apps, xclip and
//! wl-clipboard must be installed; a missing one fails the test.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Compositor, Picture, BACKGROUND};

const TITLE_HEIGHT: u32 = 24;
const TITLE_FOCUSED_RGB: [u8; 3] = [56, 84, 128];
/// xterm's background in these tests.
const RED: [u8; 3] = [255, 0, 0];

fn tool(name: &str) -> Command {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is not installed (apt-get install xwayland xterm x11-apps xclip wl-clipboard)"
    );
    Command::new(path)
}

/// The X11 display heapland's Xwayland serves, once it says it is ready.
fn x_display(comp: &mut Compositor) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        comp.assert_alive();
        let log = comp.log_text();
        if let Some(rest) = log.split("Xwayland is ready on DISPLAY=").nth(1) {
            return rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "Xwayland never became ready:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An xterm with a red background (20x5 cells), started by heapland's
/// `--exec`; it runs until `stop` exists.
fn start_with_xterm(stop: &Path) -> Compositor {
    let exec = format!(
        "xterm -fa Monospace -bg red -geometry 20x5 -e sh -c 'while [ ! -e {} ]; do sleep 0.1; done'",
        stop.display()
    );
    let mut comp = Compositor::start_with(320, 240, &["--screenshot-every-frame", "--exec", &exec]);
    x_display(&mut comp);
    comp
}

/// The bounding box of `rgb` in `pic`: (x0, y0, x1, y1), exclusive ends.
fn bounds(pic: &Picture, rgb: [u8; 3]) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for y in 0..pic.height {
        for x in 0..pic.width {
            if pic.pixel(x, y) == rgb {
                let r = b.get_or_insert((x, y, x + 1, y + 1));
                *r = (r.0.min(x), r.1.min(y), r.2.max(x + 1), r.3.max(y + 1));
            }
        }
    }
    b
}

/// xterm (started by `--exec`, so with heapland's DISPLAY) is a window:
/// its red background under a focused title bar as wide as it, at the
/// cascade's first place. When it exits, the output is the background
/// again.
#[test]
fn xterm_opens_decorated_and_focused_and_closes() {
    let dir = common::private_dir("xterm");
    let stop = dir.join("stop");
    let mut comp = start_with_xterm(&stop);
    let pic = comp.wait_for_picture(Duration::from_secs(20), |p| {
        bounds(p, RED).is_some_and(|(_, y0, x1, _)| {
            y0 >= TITLE_HEIGHT && p.count_near((0, 0, x1, TITLE_HEIGHT), TITLE_FOCUSED_RGB, 2) > 0
        })
    });
    let Some((x0, y0, x1, y1)) = bounds(&pic, RED) else {
        panic!("no xterm on the output:\n{}", comp.log_text());
    };
    assert_eq!(
        (x0, y0),
        (0, TITLE_HEIGHT),
        "xterm is not below its title bar at the top left:\n{}",
        comp.log_text()
    );
    assert!(x1 > 100 && y1 - y0 > 40, "xterm is {x0},{y0}..{x1},{y1}");
    let bar = pic.count_near((0, 0, x1, TITLE_HEIGHT), TITLE_FOCUSED_RGB, 2) as u32;
    // The bar less its close button (a square as high as the bar).
    assert!(
        bar >= (x1 - TITLE_HEIGHT) * TITLE_HEIGHT,
        "xterm's title bar is not drawn focused ({bar} pixels)"
    );

    std::fs::write(&stop, b"").expect("write the stop file");
    let gone = comp.wait_for_picture(Duration::from_secs(20), |p| {
        p.count(0, 0, p.width, p.height, BACKGROUND) == (p.width * p.height) as usize
    });
    assert_eq!(
        gone.count(0, 0, gone.width, gone.height, BACKGROUND),
        (gone.width * gone.height) as usize,
        "xterm's window stayed after it exited:\n{}",
        comp.log_text()
    );
    comp.assert_alive();
}

/// xeyes (a shaped X11 window) draws its eyes where heapland put it.
#[test]
fn xeyes_opens() {
    let mut comp = Compositor::start_with(320, 240, &["--screenshot-every-frame"]);
    let display = x_display(&mut comp);
    let mut xeyes = tool("xeyes")
        .args(["-geometry", "100x80"])
        .env("DISPLAY", &display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run xeyes");
    let pic = comp.wait_for_picture(Duration::from_secs(20), |p| {
        p.count(0, TITLE_HEIGHT, 100, TITLE_HEIGHT + 80, [255, 255, 255]) > 500
    });
    let white = pic.count(0, TITLE_HEIGHT, 100, TITLE_HEIGHT + 80, [255, 255, 255]);
    let black = pic.count(0, TITLE_HEIGHT, 100, TITLE_HEIGHT + 80, [0, 0, 0]);
    let _ = xeyes.kill();
    let _ = xeyes.wait();
    assert!(
        white > 500 && black > 100,
        "no eyes in xeyes' window: {white} white and {black} black pixels:\n{}",
        comp.log_text()
    );
    comp.assert_alive();
}

/// Polls `command` until it prints `expected`, for at most 10 s: a copy
/// reaches the other side asynchronously.
fn output_until(mut command: impl FnMut() -> Command, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = command()
            .stdin(Stdio::null())
            .output()
            .expect("run the paste tool");
        let got = String::from_utf8_lossy(&out.stdout);
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "printed {got:?}, not {expected:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With an X11 window focused (X11 clients read the clipboard only then),
/// a Wayland copy pastes in X11 and an X11 copy pastes in Wayland.
#[test]
fn the_clipboard_crosses_between_x11_and_wayland() {
    let dir = common::private_dir("xclip");
    let stop = dir.join("stop");
    let mut comp = start_with_xterm(&stop);
    let display = x_display(&mut comp);
    comp.wait_for_picture(Duration::from_secs(20), |p| bounds(p, RED).is_some());
    let wayland = |name: &str| {
        let mut c = tool(name);
        c.env("XDG_RUNTIME_DIR", &comp.dir)
            .env("WAYLAND_DISPLAY", &comp.socket)
            .env_remove("DISPLAY");
        c
    };
    let x11 = |args: &[&str]| {
        let mut c = tool("xclip");
        c.args(args)
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY");
        c
    };

    let status = wayland("wl-copy")
        .arg("from wayland")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run wl-copy");
    assert!(status.success(), "wl-copy: {status}");
    output_until(|| x11(&["-o", "-selection", "clipboard"]), "from wayland");

    // xclip -i stays in the background serving its copy.
    let mut copy = x11(&["-i", "-selection", "clipboard"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run xclip -i");
    {
        use std::io::Write;
        let mut stdin = copy.stdin.take().expect("xclip's stdin");
        stdin.write_all(b"from x11").expect("write to xclip");
    }
    let status = copy.wait().expect("wait for xclip -i");
    assert!(status.success(), "xclip -i: {status}");
    output_until(
        || {
            let mut c = wayland("wl-paste");
            c.arg("--no-newline");
            c
        },
        "from x11",
    );
    std::fs::write(&stop, b"").expect("write the stop file");
    comp.assert_alive();
}

/// A task bar (wlr-foreign-toplevel-management) lists xterm with its
/// title and class (what task bars match desktop files with), activated;
/// the bar's close closes it (`WM_DELETE_WINDOW`), and the bar hears
/// `closed`.
#[test]
fn a_task_bar_lists_and_closes_xterm() {
    use wayland_protocols_wlr::foreign_toplevel::v1::client::zwlr_foreign_toplevel_manager_v1::ZwlrForeignToplevelManagerV1;
    let dir = common::private_dir("xterm-bar");
    let stop = dir.join("stop");
    let mut comp = start_with_xterm(&stop);
    comp.wait_for_picture(Duration::from_secs(20), |p| bounds(p, RED).is_some());
    let mut bar = comp.connect();
    let _output: wayland_client::protocol::wl_output::WlOutput = bar.bind(4);
    let _manager: ZwlrForeignToplevelManagerV1 = bar.bind(3);
    let listed = |r: &common::Recorder| r.foreign_windows.iter().any(|(_, w)| w.app_id == "XTerm");
    assert!(
        bar.dispatch_until(Duration::from_secs(10), listed),
        "no handle of xterm: {:?}",
        bar.rec.foreign_windows
    );
    let (handle, told) = bar
        .rec
        .foreign_windows
        .iter()
        .find(|(_, w)| w.app_id == "XTerm")
        .cloned()
        .expect("xterm's handle");
    // xterm titles itself with the program it runs (`-e sh ...`).
    assert_eq!(told.title, "sh", "{told:?}");
    assert!(told.states.contains(&2), "xterm is not activated: {told:?}");
    assert_eq!(told.outputs, 1, "{told:?}");

    handle.close();
    bar.roundtrip().expect("roundtrip");
    let gone = comp.wait_for_picture(Duration::from_secs(20), |p| bounds(p, RED).is_none());
    assert!(
        bounds(&gone, RED).is_none(),
        "xterm did not close:\n{}",
        comp.log_text()
    );
    assert!(
        bar.dispatch_until(Duration::from_secs(10), |r| r
            .foreign_windows
            .iter()
            .any(|(_, w)| w.app_id == "XTerm" && w.closed)),
        "the bar did not hear closed"
    );
    comp.assert_alive();
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Once Xwayland is ready and nothing happens, heapland sleeps, until 25 s
/// after its start: past the 20 s at which it would start held programs if
/// Xwayland never got ready. (The guest's GLES idle test is the one that saw
/// that timer fire after Xwayland was ready; on this host it did not.)
#[test]
fn heapland_with_xwayland_ready_stays_asleep() {
    let started = Instant::now();
    let mut comp = Compositor::start_with(320, 240, &[]);
    x_display(&mut comp);
    // Xwayland's last words after it said it was ready.
    std::thread::sleep(Duration::from_secs(2));
    let pid = comp.pid();
    let before = context_switches(pid);
    let until = Duration::from_secs(25);
    std::thread::sleep(
        until
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(5)),
    );
    let woke = context_switches(pid) - before;
    assert_eq!(
        woke,
        0,
        "heapland woke {woke} times with nothing to do (until {:?} after its start)",
        started.elapsed()
    );
    comp.assert_alive();
}
