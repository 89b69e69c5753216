//! Pointer input on the drm backend and what it does to windows: a uinput
//! absolute pointer (udev calls it a mouse, as it does QEMU's tablet) and
//! Debian's foot, started by a key binding and resized by a drag on the
//! border heapland leaves around the windows it decorates. What is on screen
//! is read with Debian's grim.

use std::time::{Duration, Instant};

use rustix::ioctl::{ioctl, opcode, IntegerSetter, Opcode, Setter};

use super::{
    compositor::{self, Heapland},
    input::{
        described_keyboard, described_node, Uinput, EV_KEY, EV_SYN, KEY_ENTER, KEY_LEFTMETA,
        SYN_REPORT, UI_SET_EVBIT, UI_SET_KEYBIT,
    },
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "pointer::a_binding_starts_foot_and_a_border_drag_resizes_it",
        run: a_binding_starts_foot_and_a_border_drag_resizes_it,
    }]
}

/// linux/input-event-codes.h
const EV_ABS: u16 = 3;
const ABS_X: u16 = 0;
const ABS_Y: u16 = 1;
const BTN_LEFT: u16 = 0x110;

/// linux/uinput.h
const UI_SET_ABSBIT: Opcode = opcode::write::<i32>(b'U', 103);
const UI_ABS_SETUP: Opcode = opcode::write::<UinputAbsSetup>(b'U', 4);
pub(super) const NAME: &str = "heapland test pointer";

/// The output, vkms's default mode; the pointer's axes cover it one unit a
/// pixel.
const OUT: (i32, i32) = (1024, 768);
/// heapland's clear colour as pixman draws it.
const BACKGROUND: [u8; 3] = [25, 30, 40];

/// `struct input_absinfo`.
#[repr(C)]
#[derive(Clone, Copy)]
struct InputAbsinfo {
    value: i32,
    minimum: i32,
    maximum: i32,
    fuzz: i32,
    flat: i32,
    resolution: i32,
}

/// `struct uinput_abs_setup`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UinputAbsSetup {
    code: u16,
    absinfo: InputAbsinfo,
}

/// A virtual absolute pointer with a left button.
pub(super) struct Pointer {
    dev: Uinput,
}

impl Pointer {
    pub(super) fn create() -> Result<Pointer, String> {
        let fd = Uinput::open()?;
        let call = |what: &str, r: rustix::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
        for (bit, kind) in [(EV_KEY, "EV_KEY"), (EV_ABS, "EV_ABS")] {
            // SAFETY: UI_SET_EVBIT takes the bit number by value.
            call(kind, unsafe {
                ioctl(&fd, IntegerSetter::<UI_SET_EVBIT>::new_usize(bit.into()))
            })?;
        }
        // SAFETY: UI_SET_KEYBIT takes the key number by value.
        call("UI_SET_KEYBIT BTN_LEFT", unsafe {
            ioctl(
                &fd,
                IntegerSetter::<UI_SET_KEYBIT>::new_usize(BTN_LEFT.into()),
            )
        })?;
        for (axis, max) in [(ABS_X, OUT.0 - 1), (ABS_Y, OUT.1 - 1)] {
            // SAFETY: UI_SET_ABSBIT takes the axis number by value.
            call("UI_SET_ABSBIT", unsafe {
                ioctl(&fd, IntegerSetter::<UI_SET_ABSBIT>::new_usize(axis.into()))
            })?;
            let setup = UinputAbsSetup {
                code: axis,
                absinfo: InputAbsinfo {
                    value: 0,
                    minimum: 0,
                    maximum: max,
                    fuzz: 0,
                    flat: 0,
                    resolution: 0,
                },
            };
            // SAFETY: UI_ABS_SETUP reads a struct uinput_abs_setup.
            call("UI_ABS_SETUP", unsafe {
                ioctl(&fd, Setter::<UI_ABS_SETUP, UinputAbsSetup>::new(setup))
            })?;
        }
        Ok(Pointer {
            dev: Uinput::create(fd, NAME, 0x5679)?,
        })
    }

    pub(super) fn move_to(&self, (x, y): (i32, i32)) -> Result<(), String> {
        self.dev.event(EV_ABS, ABS_X, x)?;
        self.dev.event(EV_ABS, ABS_Y, y)?;
        self.dev.event(EV_SYN, SYN_REPORT, 0)?;
        std::thread::sleep(Duration::from_millis(30));
        Ok(())
    }

    pub(super) fn button(&self, pressed: bool) -> Result<(), String> {
        self.dev.event(EV_KEY, BTN_LEFT, i32::from(pressed))?;
        self.dev.event(EV_SYN, SYN_REPORT, 0)?;
        std::thread::sleep(Duration::from_millis(30));
        Ok(())
    }

    /// Presses at `from`, moves to `to` in steps, releases there.
    fn drag(&self, from: (i32, i32), to: (i32, i32)) -> Result<(), String> {
        self.move_to(from)?;
        self.button(true)?;
        let steps = 10;
        for i in 1..=steps {
            self.move_to((
                from.0 + (to.0 - from.0) * i / steps,
                from.1 + (to.1 - from.1) * i / steps,
            ))?;
        }
        std::thread::sleep(Duration::from_millis(200));
        self.button(false)
    }
}

/// The smallest rectangle holding every pixel grim captures that is not
/// the background: (x0, y0, x1, y1), exclusive ends.
fn drawn_bounds(comp: &mut Heapland) -> Result<Option<(i32, i32, i32, i32)>, String> {
    let (w, rgb) = compositor::grim(comp)?;
    let w = w as i32;
    let mut bounds: Option<(i32, i32, i32, i32)> = None;
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if px != BACKGROUND {
            let (x, y) = (i as i32 % w, i as i32 / w);
            let b = bounds.get_or_insert((x, y, x + 1, y + 1));
            *b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
        }
    }
    Ok(bounds)
}

/// The first frame of the `default` xcursor theme's image for the first
/// of `names` it has, at the size nearest 24 (heapland's default).
fn theme_cursor(names: &[&str]) -> Result<xcursor::parser::Image, String> {
    let theme = xcursor::CursorTheme::load("default");
    let path = names
        .iter()
        .find_map(|n| theme.load_icon(n))
        .ok_or_else(|| format!("no {names:?} cursor in the default theme (adwaita-icon-theme)"))?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let images = xcursor::parser::parse_xcursor(&bytes)
        .ok_or_else(|| format!("{}: not an xcursor file", path.display()))?;
    let nearest = images
        .iter()
        .map(|i| i.size)
        .min_by_key(|s| s.abs_diff(24))
        .ok_or_else(|| format!("{}: no image", path.display()))?;
    images
        .into_iter()
        .find(|i| i.size == nearest)
        .ok_or_else(|| "no image".to_owned())
}

/// Polls `grim -c` for up to 10 s until every opaque pixel of the theme's
/// cursor `names`, its hotspot at `at`, is in the capture; returns how
/// many there are.
fn wait_for_cursor(comp: &mut Heapland, at: (i32, i32), names: &[&str]) -> Result<usize, String> {
    let image = theme_cursor(names)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (w, rgb) = compositor::grim_with(comp, &["-c"])?;
        let (w, h) = (w as i32, (rgb.len() / 3) as i32 / w as i32);
        let (mut opaque, mut wrong) = (0, Vec::new());
        for y in 0..image.height as i32 {
            for x in 0..image.width as i32 {
                let i = ((y * image.width as i32 + x) * 4) as usize;
                // The file's order: little-endian ARGB32, so B, G, R, A.
                let px = &image.pixels_rgba[i..i + 4];
                let expected = [px[2], px[1], px[0]];
                let (gx, gy) = (at.0 - image.xhot as i32 + x, at.1 - image.yhot as i32 + y);
                if px[3] != 255 || gx < 0 || gy < 0 || gx >= w || gy >= h {
                    continue;
                }
                opaque += 1;
                let g = ((gy * w + gx) * 3) as usize;
                if rgb[g..g + 3] != expected {
                    wrong.push(((gx, gy), rgb[g..g + 3].to_vec(), expected.to_vec()));
                }
            }
        }
        if opaque > 20 && wrong.is_empty() {
            return Ok(opaque);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the {names:?} cursor at {at:?}: {} of {opaque} opaque pixels differ, e.g. {:?}:\n{}",
                wrong.len(),
                wrong.iter().take(4).collect::<Vec<_>>(),
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Polls grim for up to 60 s until the drawn area satisfies `done`.
fn wait_for_bounds(
    comp: &mut Heapland,
    what: &str,
    done: impl Fn((i32, i32, i32, i32)) -> bool,
) -> Result<(i32, i32, i32, i32), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bounds = drawn_bounds(comp)?;
        if let Some(b) = bounds.filter(|b| done(*b)) {
            return Ok(b);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: drawn area {bounds:?} after 60 s:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Super+Return, bound in the config to foot, opens a foot window (title
/// bar and all, as grim captures it); a drag from just outside its
/// bottom-right corner grows it by the drag, a drag of its title bar moves
/// it, and a drag from its left edge shrinks it from the left while its
/// right edge stays.
fn a_binding_starts_foot_and_a_border_drag_resizes_it() -> Result<(), String> {
    let (_udevd, keyboard, key_node) = described_keyboard()?;
    let probe = super::input::probe(&key_node)?;
    let pointer = Pointer::create()?;
    let node = described_node(NAME, "ID_INPUT_MOUSE=1")?;
    let dir = "/tmp/heapland-foot";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    let fonts = compositor::fonts_conf(dir)?;
    let config = format!("{dir}/config.toml");
    std::fs::write(
        &config,
        format!(
            "[bindings]\n\"Super+Return\" = {{ spawn = \"FONTCONFIG_FILE={fonts} /usr/bin/foot 2>{dir}/foot.log\" }}\n"
        ),
    )
    .map_err(|e| format!("{config}: {e}"))?;
    let mode = format!("{}x{}@60", OUT.0, OUT.1);
    let mut comp =
        Heapland::start_with(&["--backend", "drm", "--output", &mode, "--config", &config])?;
    let foot_log = || std::fs::read_to_string(format!("{dir}/foot.log")).unwrap_or_default();
    super::input::keyboard_reaches_heapland(&mut comp, &keyboard, &probe, &key_node)?;
    keyboard.chord(KEY_LEFTMETA, KEY_ENTER)?;
    let before = wait_for_bounds(&mut comp, "foot's window", |(x0, y0, x1, y1)| {
        x1 - x0 > 100 && y1 - y0 > 100
    })
    .map_err(|e| format!("{e}\nfoot: {}", foot_log()))?;
    // Let foot settle on its first size before the drag.
    std::thread::sleep(Duration::from_secs(1));
    let before = drawn_bounds(&mut comp)?.unwrap_or(before);
    let (x0, y0, x1, y1) = before;
    println!("INFO pointer: Super+Return started foot: its frame is {before:?} ({node})");

    let grab = (x1 + 3, y1 + 3);
    pointer.drag(grab, (grab.0 + 150, grab.1 + 100))?;
    let after = wait_for_bounds(&mut comp, "foot after the drag", |(ax0, ay0, ax1, ay1)| {
        (ax0, ay0) == (x0, y0) && ax1 - x1 >= 120 && ay1 - y1 >= 70
    })?;
    println!(
        "INFO pointer: a drag of (150, 100) on the bottom-right corner resized foot's frame to {after:?}"
    );

    // The title bar moves it clear of the output's left edge...
    let (ax0, ay0, ax1, ay1) = after;
    pointer.drag((ax0 + 100, ay0 + 12), (ax0 + 250, ay0 + 62))?;
    let moved = wait_for_bounds(&mut comp, "foot after a drag of its title bar", |b| {
        b == (ax0 + 150, ay0 + 50, ax1 + 150, ay1 + 50)
    })?;
    println!("INFO pointer: a drag of (150, 50) on the title bar moved foot's frame to {moved:?}");
    // ...and a drag of its left edge shrinks it from the left.
    let (mx0, my0, mx1, my1) = moved;
    let left = (mx0 - 3, (my0 + my1) / 2);
    pointer.drag(left, (left.0 + 200, left.1))?;
    let shrunk = wait_for_bounds(
        &mut comp,
        "foot after a drag of its left edge",
        |(sx0, _, sx1, _)| sx1 == mx1 && sx0 - mx0 >= 170,
    )?;
    println!(
        "INFO pointer: a drag of 200 px on the left edge shrank foot from the left: {shrunk:?}"
    );

    // heapland's own cursor, from Debian's theme: the arrow over the
    // background, the corner's resize shape on a window's border.
    let (_, _, sx1, sy1) = shrunk;
    for (at, names) in [
        ((100, sy1 + 40), &["default", "left_ptr"][..]),
        (
            (sx1 + 3, sy1 + 3),
            &["se-resize", "bottom_right_corner"][..],
        ),
    ] {
        pointer.move_to(at)?;
        let opaque = wait_for_cursor(&mut comp, at, names)?;
        println!(
            "INFO pointer: at {at:?} grim -c shows the theme's {:?} cursor ({opaque} opaque pixels, all equal)",
            names[0]
        );
    }
    drop(pointer);
    drop(keyboard);
    comp.stop()
}
