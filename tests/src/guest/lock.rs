//! Debian's swaylock (ext-session-lock-v1) on the drm backend, with a real
//! password check: PAM's pam_unix against a shadow entry the test writes.
//! While locked, grim sees nothing but swaylock's colour and keys reach
//! only swaylock; a wrong password keeps the lock, the right one ends it
//! and the window is back on screen.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    compositor::{self, Heapland},
    input::{described_keyboard, keyboard_reaches_heapland, probe, FocusedWindow, Keyboard},
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "lock::swaylock_shows_only_its_surface_until_the_password",
        run: swaylock_shows_only_its_surface_until_the_password,
    }]
}

/// swaylock's `--color`, and what grim reads of it.
const LOCK_COLOUR: &str = "336699";
const LOCK_RGB: [u8; 3] = [0x33, 0x66, 0x99];
/// The window FocusedWindow draws (XRGB 0x808080).
const WINDOW_RGB: [u8; 3] = [0x80, 0x80, 0x80];

/// "heapland", crypt(3)'d with SHA-512 (`openssl passwd -6 -salt
/// heaplandtest heapland`): what pam_unix compares the typed password with.
const SHADOW_HASH: &str = "$6$heaplandtest$NIfy2Tnj15WNAr6EpmXxMTkCcLsQG50.roP9titg9IpH6sOvK0aKD5AWksz/o2TAfflOSDVRdLle5lKyMUt77.";

/// linux/input-event-codes.h, for the letters typed.
const KEY_H: u16 = 35;
const KEY_E: u16 = 18;
const KEY_A: u16 = 30;
const KEY_P: u16 = 25;
const KEY_L: u16 = 38;
const KEY_N: u16 = 49;
const KEY_D: u16 = 32;
const KEY_O: u16 = 24;
const KEY_ENTER: u16 = 28;

/// The guest's account database and swaylock's PAM stack: root with the
/// password "heapland", checked by pam_unix (from the host's /usr; the
/// guest's /etc is its own).
fn set_up_pam() -> Result<(), String> {
    let write = |path: &str, text: &str| {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
    };
    write("/etc/passwd", "root:x:0:0:root:/tmp:/bin/sh\n")?;
    write("/etc/group", "root:x:0:\n")?;
    write(
        "/etc/shadow",
        &format!("root:{SHADOW_HASH}:20000:0:99999:7:::\n"),
    )?;
    write(
        "/etc/pam.d/swaylock",
        "auth required /usr/lib/x86_64-linux-gnu/security/pam_unix.so\n",
    )
}

fn type_word(keyboard: &Keyboard, keys: &[u16]) -> Result<(), String> {
    for key in keys {
        keyboard.tap(*key)?;
    }
    keyboard.tap(KEY_ENTER)
}

/// How many of grim's pixels are `rgb`, and how many it captured.
fn count(comp: &mut Heapland, rgb: [u8; 3]) -> Result<(usize, usize), String> {
    let (_, pixels) = compositor::grim(comp)?;
    let all = pixels.len() / 3;
    Ok((pixels.chunks_exact(3).filter(|p| *p == rgb).count(), all))
}

/// Polls grim for up to 60 s until `done(pixels of rgb, all pixels)`.
fn wait_for_screen(
    comp: &mut Heapland,
    rgb: [u8; 3],
    what: &str,
    done: impl Fn(usize, usize) -> bool,
    swaylock_log: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (n, all) = count(comp, rgb)?;
        if done(n, all) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: {n} of {all} pixels are {rgb:02x?} after 60 s\nswaylock: {}\n{}",
                std::fs::read_to_string(swaylock_log).unwrap_or_default(),
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Swaylock(Child);

impl Drop for Swaylock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// swaylock locks: every pixel grim captures is swaylock's colour and the
/// window loses keyboard focus. Keys typed then reach swaylock only: a
/// wrong password leaves the lock in place, the right one makes swaylock
/// unlock and exit 0, and the window is drawn again. The window hears no
/// key at any point.
fn swaylock_shows_only_its_surface_until_the_password() -> Result<(), String> {
    set_up_pam()?;
    let (_udevd, keyboard, node) = described_keyboard()?;
    let probe = probe(&node)?;
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    keyboard_reaches_heapland(&mut comp, &keyboard, &probe, &node)?;
    let mut window = FocusedWindow::map(&mut comp)?;
    let log = "/tmp/heapland-swaylock.log";
    wait_for_screen(
        &mut comp,
        WINDOW_RGB,
        "the window",
        |n, _| n >= 64 * 64,
        log,
    )?;
    window.st.keys.clear();

    let swaylock = Swaylock(
        Command::new("/usr/bin/swaylock")
            // No indicator: the lock surface is swaylock's colour alone.
            .args(["--no-unlock-indicator", "--color", LOCK_COLOUR])
            .env("XDG_RUNTIME_DIR", compositor::RUNTIME_DIR)
            .env("WAYLAND_DISPLAY", compositor::SOCKET)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).map_err(|e| format!("{log}: {e}"))?)
            .spawn()
            .map_err(|e| {
                format!("run /usr/bin/swaylock (package swaylock, installed by tests/deps): {e}")
            })?,
    );
    let mut swaylock = swaylock;
    wait_for_screen(
        &mut comp,
        LOCK_RGB,
        "swaylock's lock surface alone",
        |n, all| n == all,
        log,
    )?;
    window.wait(&mut comp, |s| !s.keyboard_entered, "wl_keyboard.leave")?;
    println!("INFO lock: swaylock locked: every pixel grim captures is #{LOCK_COLOUR}; the window lost the keyboard");

    type_word(&keyboard, &[KEY_N, KEY_O, KEY_P, KEY_E])?;
    // pam_unix delays a failure by about 2 s; swaylock must still hold.
    std::thread::sleep(Duration::from_secs(5));
    if let Ok(Some(status)) = swaylock.0.try_wait() {
        return Err(format!(
            "swaylock exited ({status}) after a wrong password:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ));
    }
    let (n, all) = count(&mut comp, LOCK_RGB)?;
    if n != all {
        return Err(format!(
            "after a wrong password only {n} of {all} pixels are swaylock's colour"
        ));
    }
    println!("INFO lock: a wrong password leaves the lock in place");

    type_word(
        &keyboard,
        &[KEY_H, KEY_E, KEY_A, KEY_P, KEY_L, KEY_A, KEY_N, KEY_D],
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        comp.alive()?;
        if let Some(status) = swaylock
            .0
            .try_wait()
            .map_err(|e| format!("swaylock: {e}"))?
        {
            break status;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "swaylock still runs 30 s after the right password:\n{}\n{}",
                std::fs::read_to_string(log).unwrap_or_default(),
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        return Err(format!(
            "swaylock exited with {status}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ));
    }
    wait_for_screen(
        &mut comp,
        WINDOW_RGB,
        "the window after unlocking",
        |n, _| n >= 64 * 64,
        log,
    )?;
    window.wait(
        &mut comp,
        |s| s.keyboard_entered,
        "wl_keyboard.enter after unlocking",
    )?;
    if !window.st.keys.is_empty() {
        return Err(format!(
            "the window heard keys typed while locked: {:?}",
            window.st.keys
        ));
    }
    println!("INFO lock: the right password unlocked: swaylock exited 0, the window is drawn and focused again and heard none of the keys");
    drop(window);
    drop(keyboard);
    comp.stop()
}
