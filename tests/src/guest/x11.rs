//! An X11 app on the drm backend: Debian's xterm through Debian's Xwayland
//! (22.1, from the host's /usr), started by heapland's `--exec`. Keys typed
//! on a uinput keyboard reach the shell inside it through the X server's
//! input focus, which heapland as window manager sets; the close binding
//! closes it (`WM_DELETE_WINDOW`). What is on screen is read with grim.
//! Meanwhile wl-copy and wl-paste round-trip both selections, and the
//! clipboard crosses between X11 (xclip) and Wayland.

use std::time::{Duration, Instant};

use super::{
    compositor::{self, Heapland},
    input::{
        described_keyboard, keyboard_reaches_heapland, probe, wait_for_file, Keyboard, KEY_ENTER,
        KEY_LEFTMETA,
    },
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "x11::xterm_takes_keys_through_xwayland_and_closes",
        run: xterm_takes_keys_through_xwayland_and_closes,
    }]
}

/// xterm's background in this test.
const RED: [u8; 3] = [255, 0, 0];

/// linux/input-event-codes.h
const KEY_X: u16 = 45;
const KEY_1: u16 = 2;
const KEY_SPACE: u16 = 57;
const KEY_O: u16 = 24;
const KEY_K: u16 = 37;
const KEY_C: u16 = 46;

/// How many of grim's pixels are xterm's red.
fn red_pixels(comp: &mut Heapland) -> Result<usize, String> {
    let (_, rgb) = compositor::grim(comp)?;
    Ok(rgb.chunks_exact(3).filter(|p| *p == RED).count())
}

/// Polls grim for up to 60 s until `done(red pixels)`.
fn wait_for_red(
    comp: &mut Heapland,
    what: &str,
    done: impl Fn(usize) -> bool,
    xterm_log: &str,
) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let red = red_pixels(comp)?;
        if done(red) {
            return Ok(red);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: {red} red pixels after 60 s\nxterm: {}\n{}",
                std::fs::read_to_string(xterm_log).unwrap_or_default(),
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `program` with `args` as a client of heapland, and of its
/// Xwayland on `display`, for at most 10 s; its stdout.
fn run(program: &str, args: &[&str], display: &str) -> Result<String, String> {
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env("XDG_RUNTIME_DIR", compositor::RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", compositor::SOCKET)
        .env("DISPLAY", display);
    let out = compositor::run_bounded(&mut command, Duration::from_secs(10))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a copying `program` (wl-copy, xclip -i) with `input` on its
/// stdin, for at most 10 s. It forks a half that serves the copy until
/// the next one: no pipe is left for that half to hold open.
fn copy(program: &str, args: &[&str], display: &str, input: &str) -> Result<(), String> {
    let path = "/tmp/heapland-copy-input";
    std::fs::write(path, input).map_err(|e| format!("{path}: {e}"))?;
    let stdin = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("XDG_RUNTIME_DIR", compositor::RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", compositor::SOCKET)
        .env("DISPLAY", display)
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("run {program} (installed by tests/deps): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("wait for {program}: {e}"))?
        {
            if !status.success() {
                return Err(format!("{program} {args:?}: {status}"));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} {args:?} did not finish in 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `program` for up to 20 s until it prints `expected`: a copy
/// reaches the other side asynchronously.
fn paste_until(
    comp: &mut Heapland,
    program: &str,
    args: &[&str],
    display: &str,
    expected: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        comp.alive()?;
        let got = run(program, args, display);
        if got.as_deref() == Ok(expected) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{program} {args:?}: {got:?}, not {expected:?}:\n{}\n{}",
                comp.log_text(),
                super::input::where_it_waits(comp.pid())
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Debian's wl-copy and wl-paste round-trip the clipboard and the
/// primary selection on the drm session; with xterm focused, a Wayland
/// copy pastes in X11 (xclip) and an X11 copy in Wayland.
fn clipboard_round_trips(comp: &mut Heapland, display: &str) -> Result<(), String> {
    copy("/usr/bin/wl-copy", &[], display, "heapland clipboard")?;
    copy(
        "/usr/bin/wl-copy",
        &["--primary"],
        display,
        "heapland primary",
    )?;
    paste_until(
        comp,
        "/usr/bin/wl-paste",
        &["--no-newline"],
        display,
        "heapland clipboard",
    )?;
    paste_until(
        comp,
        "/usr/bin/wl-paste",
        &["--primary", "--no-newline"],
        display,
        "heapland primary",
    )?;
    println!("INFO x11: wl-copy and wl-paste round-trip the clipboard and the primary selection");
    paste_until(
        comp,
        "/usr/bin/xclip",
        &["-o", "-selection", "clipboard"],
        display,
        "heapland clipboard",
    )?;
    copy(
        "/usr/bin/xclip",
        &["-i", "-selection", "clipboard"],
        display,
        "from x11",
    )?;
    paste_until(
        comp,
        "/usr/bin/wl-paste",
        &["--no-newline"],
        display,
        "from x11",
    )?;
    println!(
        "INFO x11: the clipboard crosses both ways: wl-copy -> xclip -o, xclip -i -> wl-paste"
    );
    Ok(())
}

fn type_keys(keyboard: &Keyboard, keys: &[u16]) -> Result<(), String> {
    for key in keys {
        keyboard.tap(*key)?;
    }
    Ok(())
}

/// xterm, red, runs a shell that reads one line into a file and then
/// waits. It shows (grim sees its red), takes the keyboard when it shows:
/// "x1 ok" typed on the uinput keyboard lands in the file. Super+C, bound
/// to close, makes xterm exit, and its window leaves the screen.
fn xterm_takes_keys_through_xwayland_and_closes() -> Result<(), String> {
    let (_udevd, keyboard, node) = described_keyboard()?;
    let probe = probe(&node)?;
    let dir = "/tmp/heapland-xterm";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    let fonts = compositor::fonts_conf(dir)?;
    let config = format!("{dir}/config.toml");
    std::fs::write(&config, "[bindings]\n\"Super+c\" = \"close\"\n")
        .map_err(|e| format!("{config}: {e}"))?;
    let typed = format!("{dir}/typed");
    let xterm_log = format!("{dir}/xterm.log");
    let exec = format!(
        "FONTCONFIG_FILE={fonts} /usr/bin/xterm -fa Monospace -bg red -geometry 40x10 \
         -e sh -c 'read line; echo \"$line\" > {typed}; sleep 600' 2>{xterm_log}"
    );
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&[
        "--backend",
        "drm",
        "--drm-device",
        &card_path,
        "--config",
        &config,
        "--exec",
        &exec,
    ])?;
    keyboard_reaches_heapland(&mut comp, &keyboard, &probe, &node)?;
    let red = wait_for_red(&mut comp, "xterm's window", |n| n > 10_000, &xterm_log)?;
    let display = comp
        .log_text()
        .split("Xwayland is ready on DISPLAY=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| format!("no \"Xwayland is ready\" in the log:\n{}", comp.log_text()))?
        .to_owned();
    println!("INFO x11: xterm through Xwayland on DISPLAY={display} shows {red} red pixels");

    type_keys(
        &keyboard,
        &[KEY_X, KEY_1, KEY_SPACE, KEY_O, KEY_K, KEY_ENTER],
    )?;
    let line = wait_for_file(&typed, &mut comp, "the line typed into xterm").map_err(|e| {
        format!(
            "{e}\nxterm: {}",
            std::fs::read_to_string(&xterm_log).unwrap_or_default()
        )
    })?;
    if line != "x1 ok\n" {
        return Err(format!("xterm's shell read {line:?}, not \"x1 ok\""));
    }
    println!("INFO x11: keys typed on {node} reached xterm's shell: {line:?}");

    clipboard_round_trips(&mut comp, &display)?;

    keyboard.chord(KEY_LEFTMETA, KEY_C)?;
    wait_for_red(&mut comp, "xterm closed by Super+C", |n| n == 0, &xterm_log)?;
    println!("INFO x11: Super+C (close) closed xterm: its window left the screen");
    drop(keyboard);
    comp.stop()
}
