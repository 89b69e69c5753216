//! An X11 app on the drm backend: Debian's xterm through Debian's Xwayland
//! (22.1, from the host's /usr), started by heapland's `--exec`. Keys typed
//! on a uinput keyboard reach the shell inside it through the X server's
//! input focus, which heapland as window manager sets; the close binding
//! closes it (`WM_DELETE_WINDOW`). What is on screen is read with grim.

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
    // The guest has no /etc/fonts: Debian's fonts, a cache of its own.
    let fonts = format!("{dir}/fonts.conf");
    std::fs::write(
        &fonts,
        format!(
            "<?xml version=\"1.0\"?>\n<fontconfig><dir>/usr/share/fonts</dir>\
             <cachedir>{dir}/cache</cachedir></fontconfig>\n"
        ),
    )
    .map_err(|e| format!("{fonts}: {e}"))?;
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
        .unwrap_or("?")
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

    keyboard.chord(KEY_LEFTMETA, KEY_C)?;
    wait_for_red(&mut comp, "xterm closed by Super+C", |n| n == 0, &xterm_log)?;
    println!("INFO x11: Super+C (close) closed xterm: its window left the screen");
    drop(keyboard);
    comp.stop()
}
