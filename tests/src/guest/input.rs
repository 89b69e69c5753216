//! Keyboard input on the drm backend, end to end: a uinput keyboard that
//! udev describes (systemd-udevd from the host's /usr, with the host's
//! rules) and libinput opens through heapland's session; its key reaches
//! the window that has keyboard focus, as a wl_keyboard.key event.

use std::{
    fs::File,
    os::fd::OwnedFd,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rustix::{
    fs::{Mode, OFlags},
    ioctl::{ioctl, opcode, IntegerSetter, NoArg, Opcode, Setter},
};
use wayland_client::protocol::{wl_compositor::WlCompositor, wl_seat::WlSeat, wl_shm::WlShm};
use wayland_protocols::xdg::shell::client::xdg_wm_base::XdgWmBase;

use super::{
    compositor::{self, Heapland, State},
    session, Test,
};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "input::uinput_key_reaches_the_focused_window",
            run: uinput_key_reaches_the_focused_window,
        },
        Test {
            name: "input::a_binding_spawns_a_client_and_a_bad_config_changes_nothing",
            run: a_binding_spawns_a_client_and_a_bad_config_changes_nothing,
        },
        Test {
            name: "input::swayidle_blanks_the_display_and_a_key_wakes_it",
            run: swayidle_blanks_the_display_and_a_key_wakes_it,
        },
    ]
}

/// linux/input-event-codes.h
pub(super) const EV_SYN: u16 = 0;
pub(super) const EV_KEY: u16 = 1;
pub(super) const SYN_REPORT: u16 = 0;
pub(super) const KEY_A: u16 = 30;
pub(super) const KEY_ENTER: u16 = 28;
pub(super) const KEY_LEFTMETA: u16 = 125;
pub(super) const BUS_VIRTUAL: u16 = 0x06;

/// linux/uinput.h
pub(super) const UI_SET_EVBIT: Opcode = opcode::write::<i32>(b'U', 100);
pub(super) const UI_SET_KEYBIT: Opcode = opcode::write::<i32>(b'U', 101);
pub(super) const UI_DEV_SETUP: Opcode = opcode::write::<UinputSetup>(b'U', 3);
pub(super) const UI_DEV_CREATE: Opcode = opcode::none(b'U', 1);
pub(super) const UI_DEV_DESTROY: Opcode = opcode::none(b'U', 2);
const NAME: &str = "heapland test keyboard";

/// `struct uinput_setup`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct UinputSetup {
    pub(super) bustype: u16,
    pub(super) vendor: u16,
    pub(super) product: u16,
    pub(super) version: u16,
    pub(super) name: [u8; 80],
    pub(super) ff_effects_max: u32,
}

/// A uinput device the test created, destroyed when dropped.
pub(super) struct Uinput {
    fd: OwnedFd,
}

impl Uinput {
    /// Opens /dev/uinput for a device to be described with ioctls and then
    /// created with [`Uinput::create`].
    pub(super) fn open() -> Result<OwnedFd, String> {
        rustix::fs::open(
            "/dev/uinput",
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open /dev/uinput: {e} (is uinput loaded?)"))
    }

    /// Names the device described on `fd` and creates it.
    pub(super) fn create(fd: OwnedFd, name: &str, product: u16) -> Result<Uinput, String> {
        let call = |what: &str, r: rustix::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
        let mut setup = UinputSetup {
            bustype: BUS_VIRTUAL,
            vendor: 0x1234,
            product,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        setup.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: UI_DEV_SETUP reads a struct uinput_setup.
        call("UI_DEV_SETUP", unsafe {
            ioctl(&fd, Setter::<UI_DEV_SETUP, UinputSetup>::new(setup))
        })?;
        // SAFETY: UI_DEV_CREATE takes no argument.
        call("UI_DEV_CREATE", unsafe {
            ioctl(&fd, NoArg::<UI_DEV_CREATE>::new())
        })?;
        Ok(Uinput { fd })
    }

    pub(super) fn event(&self, kind: u16, code: u16, value: i32) -> Result<(), String> {
        // struct input_event: struct timeval (zero: the kernel stamps it), type, code, value.
        let mut ev = [0u8; 24];
        ev[16..18].copy_from_slice(&kind.to_ne_bytes());
        ev[18..20].copy_from_slice(&code.to_ne_bytes());
        ev[20..24].copy_from_slice(&value.to_ne_bytes());
        rustix::io::write(&self.fd, &ev)
            .map(drop)
            .map_err(|e| format!("write input_event: {e}"))
    }
}

impl Drop for Uinput {
    fn drop(&mut self) {
        // SAFETY: UI_DEV_DESTROY takes no argument.
        let _ = unsafe { ioctl(&self.fd, NoArg::<UI_DEV_DESTROY>::new()) };
    }
}

/// A virtual keyboard with the letter keys.
pub(super) struct Keyboard {
    dev: Uinput,
}

impl Keyboard {
    fn create() -> Result<Keyboard, String> {
        let fd = Uinput::open()?;
        let call = |what: &str, r: rustix::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
        // SAFETY: UI_SET_EVBIT and UI_SET_KEYBIT take the bit number by value.
        call("UI_SET_EVBIT", unsafe {
            ioctl(&fd, IntegerSetter::<UI_SET_EVBIT>::new_usize(EV_KEY.into()))
        })?;
        // ESC through F12: udev's input_id calls a device with the first
        // 31 keys (ESC, digits, Q to D) a full keyboard (ID_INPUT_KEYBOARD).
        for key in (1..=88).chain([KEY_LEFTMETA.into()]) {
            // SAFETY: as above.
            call("UI_SET_KEYBIT", unsafe {
                ioctl(&fd, IntegerSetter::<UI_SET_KEYBIT>::new_usize(key))
            })?;
        }
        Ok(Keyboard {
            dev: Uinput::create(fd, NAME, 0x5678)?,
        })
    }

    fn event(&self, kind: u16, code: u16, value: i32) -> Result<(), String> {
        self.dev.event(kind, code, value)
    }

    /// Holds `modifier`, taps `key`, lets `modifier` go.
    pub(super) fn chord(&self, modifier: u16, key: u16) -> Result<(), String> {
        self.event(EV_KEY, modifier, 1)?;
        self.event(EV_SYN, SYN_REPORT, 0)?;
        std::thread::sleep(Duration::from_millis(20));
        self.tap(key)?;
        self.event(EV_KEY, modifier, 0)?;
        self.event(EV_SYN, SYN_REPORT, 0)
    }

    /// Presses and releases `key`.
    pub(super) fn tap(&self, key: u16) -> Result<(), String> {
        for value in [1, 0] {
            self.event(EV_KEY, key, value)?;
            self.event(EV_SYN, SYN_REPORT, 0)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// systemd-udevd from the host's /usr, for as long as the test runs:
/// libinput only takes input devices that udev tagged (ID_INPUT_*).
pub(super) struct Udevd(Child);

impl Udevd {
    pub(super) fn start() -> Result<Udevd, String> {
        let path = [
            "/usr/lib/systemd/systemd-udevd",
            "/lib/systemd/systemd-udevd",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("no systemd-udevd in the host's /usr (package udev)")?;
        std::fs::create_dir_all("/run/udev").map_err(|e| format!("mkdir /run/udev: {e}"))?;
        // A control socket left by an earlier udevd would look like this one.
        let _ = std::fs::remove_file("/run/udev/control");
        let child = Command::new(path)
            .stdout(Stdio::null())
            .stderr(File::create("/tmp/udevd.log").map_err(|e| format!("udevd log: {e}"))?)
            .spawn()
            .map_err(|e| format!("spawn {path}: {e}"))?;
        let udevd = Udevd(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::path::Path::new("/run/udev/control").exists() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string("/tmp/udevd.log").unwrap_or_default();
                return Err(format!("systemd-udevd did not start:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(udevd)
    }
}

impl Drop for Udevd {
    /// `udevadm control --exit` stops udevd and its workers, which would
    /// otherwise go on handling events (and opening device nodes) after
    /// the test; killing the main process alone leaves them behind.
    fn drop(&mut self) {
        let exited = Command::new("/bin/udevadm")
            .args(["control", "--exit", "--timeout=10"])
            .status()
            .is_ok_and(|s| s.success());
        if !exited {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub(super) fn udevadm(args: &[&str]) -> Result<String, String> {
    let out = Command::new("/bin/udevadm")
        .args(args)
        .output()
        .map_err(|e| format!("run udevadm {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "udevadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The event node of the input device called `name`, once udev described
/// it with `property` (such as `ID_INPUT_KEYBOARD=1`, from its input_id
/// builtin): what libinput asks of a device it opens.
pub(super) fn described_node(name: &str, property: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let node = loop {
        let found = std::fs::read_dir("/sys/class/input")
            .map_err(|e| format!("/sys/class/input: {e}"))?
            .flatten()
            .find(|e| {
                e.file_name().to_string_lossy().starts_with("event")
                    && std::fs::read_to_string(e.path().join("device/name"))
                        .is_ok_and(|n| n.trim() == name)
            })
            .map(|e| format!("/dev/input/{}", e.file_name().to_string_lossy()));
        if let Some(node) = found {
            break node;
        }
        if Instant::now() > deadline {
            return Err(format!("the uinput device {name:?} has no event node"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    udevadm(&["trigger", "--action=add", "--subsystem-match=input"])?;
    udevadm(&["settle", "--timeout=10"])?;
    let props = udevadm(&["info", "--query=property", &format!("--name={node}")])?;
    if !props.contains(property) {
        return Err(format!("udev did not give {node} {property}:\n{props}"));
    }
    Ok(node)
}

/// udevd, and a uinput keyboard it described as one.
pub(super) fn described_keyboard() -> Result<(Udevd, Keyboard, String), String> {
    let udevd = Udevd::start()?;
    let keyboard = Keyboard::create()?;
    let node = described_node(NAME, "ID_INPUT_KEYBOARD=1")?;
    Ok((udevd, keyboard, node))
}

fn uinput_key_reaches_the_focused_window() -> Result<(), String> {
    let (_udevd, keyboard, node) = described_keyboard()?;

    // vkms, named: the release check below must look at heapland's card.
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    let mut window = FocusedWindow::map(&mut comp)?;

    keyboard.tap(KEY_A)?;
    let evdev_a = u32::from(KEY_A);
    window.wait(
        &mut comp,
        |s| s.keys.contains(&(30, 1)) && s.keys.contains(&(30, 0)),
        "KEY_A pressed and released",
    )?;
    if !window.st.keys.iter().all(|(k, _)| *k == evdev_a) {
        return Err(format!("unexpected keys: {:?}", window.st.keys));
    }
    let log = comp.log_text();
    println!(
        "INFO input: {NAME} ({node}) -> libinput -> seat0 -> the focused window: {:?}",
        window.st.keys
    );
    drop(window);
    drop(keyboard);
    comp.stop().map_err(|e| format!("{e}\n{log}"))?;
    // With input devices open through the session, heapland's exit must
    // still release the display at once: nothing may hold it after.
    released(&card_path)
}

/// A 64x64 window that has the keyboard focus: input reaches heapland's
/// seat once it has it.
pub(super) struct FocusedWindow {
    queue: wayland_client::EventQueue<State>,
    pub(super) st: State,
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl FocusedWindow {
    pub(super) fn map(comp: &mut Heapland) -> Result<Self, String> {
        let (conn, globals, mut queue) = compositor::connect()?;
        let qh = queue.handle();
        let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
        let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
        let shm: WlShm = compositor::bind(&globals, &qh, 1..=1)?;
        let seat: WlSeat = compositor::bind(&globals, &qh, 5..=7)?;
        let wl_keyboard = seat.get_keyboard(&qh, ());
        let surface = wl_compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let toplevel = xdg.get_toplevel(&qh, ());
        surface.commit();
        let (w, h) = (64i32, 64i32);
        let (buffer, file) = heapland_test_client::shm::solid_buffer(
            &shm,
            &qh,
            (w as u32, h as u32),
            0x8080_8080,
            (),
        )?;
        let mut st = State::default();
        session::wait(&mut queue, &mut st, comp, |s| s.configured, "configure")?;
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, w, h);
        surface.commit();
        // The window takes keyboard focus with its first buffer.
        session::wait(
            &mut queue,
            &mut st,
            comp,
            |s| s.keyboard_entered,
            "wl_keyboard.enter",
        )?;
        Ok(FocusedWindow {
            queue,
            st,
            _keep: vec![
                Box::new(conn),
                Box::new(wl_keyboard),
                Box::new(toplevel),
                Box::new(xdg),
                Box::new(surface),
                Box::new(buffer),
                Box::new(file),
            ],
        })
    }

    pub(super) fn wait(
        &mut self,
        comp: &mut Heapland,
        done: fn(&State) -> bool,
        what: &str,
    ) -> Result<(), String> {
        session::wait(&mut self.queue, &mut self.st, comp, done, what)
    }
}

/// Waits (up to 10 s) until no process has `node` open; names the holders
/// otherwise.
pub(super) fn released(node: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holders = holders_of(node);
        if holders.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{node} still open 10 s after heapland exited, by {holders:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes with `node` open: (pid, command line).
fn holders_of(node: &str) -> Vec<(u32, String)> {
    let target = std::fs::canonicalize(node).unwrap_or_else(|_| node.into());
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let cmd = std::fs::read(p.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmd));
        }
    }
    out
}

/// Waits up to 20 s for `path` to hold a line; its contents.
pub(super) fn wait_for_file(path: &str, comp: &mut Heapland, what: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        comp.alive()?;
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return Ok(text);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: no {path} after 20 s:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Super+Return, bound in the user's config file to a command, starts it
/// as a client of this heapland (WAYLAND_DISPLAY set); a config with a bad
/// key is reported with its line and the binding keeps working; a good one
/// written over it is taken at once (inotify), without a restart.
fn a_binding_spawns_a_client_and_a_bad_config_changes_nothing() -> Result<(), String> {
    let (_udevd, keyboard, _node) = described_keyboard()?;
    let dir = "/tmp/heapland-config";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    let config = format!("{dir}/config.toml");
    let first = format!("{dir}/first");
    let second = format!("{dir}/second");
    let write = |text: &str| std::fs::write(&config, text).map_err(|e| format!("{config}: {e}"));
    // A client of heapland: it lists the globals and writes where it was.
    let bound = |marker: &str| {
        format!(
            "[bindings]\n\"Super+Return\" = {{ spawn = \"/usr/bin/wayland-info >/dev/null && echo $WAYLAND_DISPLAY > {marker}\" }}\n"
        )
    };
    write(&bound(&first))?;

    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&[
        "--backend",
        "drm",
        "--drm-device",
        &card_path,
        "--config",
        &config,
    ])?;
    // A focused window: keys reach heapland's seat (the first test shows
    // it), and the window shows that bound keys do not reach clients.
    let mut window = FocusedWindow::map(&mut comp)?;

    keyboard.chord(KEY_LEFTMETA, KEY_ENTER)?;
    let socket = wait_for_file(&first, &mut comp, "Super+Return")?;
    if socket.trim() != compositor::SOCKET {
        return Err(format!(
            "the bound command ran with WAYLAND_DISPLAY={}, not {}",
            socket.trim(),
            compositor::SOCKET
        ));
    }
    std::fs::remove_file(&first).map_err(|e| format!("rm {first}: {e}"))?;

    // An unknown key on line 3: reported, and the old binding stays.
    write(&format!(
        "[bindings]\n\"Super+Return\" = {{ spawn = \"echo new > {second}\" }}\n\"Super+NoSuchKey\" = \"close\"\n"
    ))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !comp.log_text().contains("config.toml, line 3:") {
        comp.alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "no error naming line 3 of the bad config:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    keyboard.chord(KEY_LEFTMETA, KEY_ENTER)?;
    wait_for_file(&first, &mut comp, "Super+Return after a bad config")?;
    if std::path::Path::new(&second).exists() {
        return Err("a config with an error was taken anyway".into());
    }

    // A good file over it: the next Super+Return runs the new command.
    write(&bound(&second))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !comp.log_text().contains("configuration reloaded") {
        comp.alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "the good config was not reloaded:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    keyboard.chord(KEY_LEFTMETA, KEY_ENTER)?;
    wait_for_file(&second, &mut comp, "Super+Return after the reload")?;
    // The window saw Super come and go, never the bound Return.
    window.wait(&mut comp, |s| s.keys.contains(&(125, 0)), "Super released")?;
    if window
        .st
        .keys
        .iter()
        .any(|(k, _)| *k == u32::from(KEY_ENTER))
    {
        return Err(format!(
            "the bound Return reached the focused window: {:?}",
            window.st.keys
        ));
    }
    println!(
        "INFO input: Super+Return ran the bound command as a client of {}; a config with an unknown key was refused with its line and the binding kept; the rewritten config was reloaded by itself",
        compositor::SOCKET
    );
    drop(window);
    drop(keyboard);
    comp.stop()
}

/// Whether vkms's CRTC is active, and the framebuffer id on its primary
/// plane (0 for none), from the KMS state in debugfs.
pub(super) fn vkms_power() -> Result<(bool, u32), String> {
    let state = session::kms_state("vkms")?;
    let field = |section: &str, key: &str| {
        state
            .split('\n')
            .skip_while(|l| !l.starts_with(section))
            .skip(1)
            .take_while(|l| l.starts_with('\t'))
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
    };
    let active =
        field("crtc[", "active=").ok_or_else(|| format!("no CRTC in vkms's state:\n{state}"))?;
    let fb = field("plane[", "fb=").unwrap_or_default();
    Ok((active == "1", fb.parse().unwrap_or(0)))
}

/// Waits up to 30 s for vkms's CRTC to be `active` (with a framebuffer on
/// the primary plane when active).
pub(super) fn wait_for_power(comp: &mut Heapland, active: bool, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        comp.alive()?;
        let (now, fb) = vkms_power()?;
        if now == active && (!active || fb != 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: vkms's CRTC active={now}, primary plane fb={fb} after 30 s:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's swayidle (ext-idle-notify) runs `heapland-power off` after 2 s
/// without input: vkms's CRTC goes inactive (DPMS off in the KMS state). A
/// key press ends the idleness: swayidle's resume command runs
/// `heapland-power on`, and the CRTC is active again with a frame on its
/// primary plane.
fn swayidle_blanks_the_display_and_a_key_wakes_it() -> Result<(), String> {
    let (_udevd, keyboard, node) = described_keyboard()?;
    let probe = probe(&node)?;
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    keyboard_reaches_heapland(&mut comp, &keyboard, &probe, &node)?;
    wait_for_power(&mut comp, true, "at start")?;
    let resumed = "/tmp/heapland-swayidle-resumed";
    let _ = std::fs::remove_file(resumed);
    let log = "/tmp/heapland-swayidle.log";
    let mut swayidle = std::process::Command::new("/usr/bin/swayidle")
        .args([
            "timeout",
            "2",
            "/bin/heapland-power off",
            "resume",
            &format!("/bin/heapland-power on && echo resumed > {resumed}"),
        ])
        .env("XDG_RUNTIME_DIR", compositor::RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", compositor::SOCKET)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).map_err(|e| format!("{log}: {e}"))?)
        .spawn()
        .map_err(|e| {
            format!("run /usr/bin/swayidle (package swayidle, installed by tests/deps): {e}")
        })?;
    let result = (|| {
        wait_for_power(&mut comp, false, "after 2 s idle").map_err(|e| {
            format!(
                "{e}\nswayidle: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })?;
        println!("INFO input: swayidle's timeout ran heapland-power off: vkms's CRTC is inactive");
        keyboard.tap(KEY_A)?;
        wait_for_power(&mut comp, true, "after a key press")?;
        wait_for_file(resumed, &mut comp, "swayidle's resume command").map_err(|e| {
            format!(
                "{e}\nvkms: {:?}\nswayidle: {}\nheapland: {}",
                vkms_power(),
                std::fs::read_to_string(log).unwrap_or_default(),
                where_it_waits(comp.pid())
            )
        })?;
        println!("INFO input: a key press woke the display: swayidle resumed, CRTC active, a frame on the plane");
        Ok(())
    })();
    let _ = swayidle.kill();
    let _ = swayidle.wait();
    drop(keyboard);
    result.and_then(|()| comp.stop())
}

/// Where process `pid` is: each thread's kernel wait channel and stack, and
/// gdb's backtrace of every thread (gdb from the host's /usr, if there).
pub(super) fn where_it_waits(pid: u32) -> String {
    let mut out = String::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        let open: Vec<String> = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .map(|p| p.display().to_string())
            .filter(|p| p.starts_with("/dev/"))
            .collect();
        out.push_str(&format!("open devices: {open:?}\n"));
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let path = task.path();
            let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
            out.push_str(&format!(
                "task {} ({}): wchan {}\n{}",
                task.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan"),
                read("stack")
            ));
        }
    }
    if let Ok(gdb) = std::process::Command::new("/usr/bin/gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 12",
        ])
        .output()
    {
        out.push_str(&String::from_utf8_lossy(&gdb.stdout));
    }
    out
}

/// Waits until heapland serves clients, then taps a key nobody binds and
/// waits for libinput to announce the keyboard with it (`input device:`
/// in the log): from then on the keys the test types reach heapland.
///
/// heapland's socket appears before its display and input are open (Mesa
/// takes seconds to load under TCG), and vkms's KMS state shows the kernel
/// console's mode until heapland's first frame: neither says heapland is
/// ready, and a key typed before libinput opened the keyboard is lost. A
/// client's first roundtrip completes only once heapland's event loop
/// runs. `probe`, the test's own reader of the keyboard's `node`, says
/// whether the kernel emitted the key when heapland did not get it.
pub(super) fn keyboard_reaches_heapland(
    comp: &mut Heapland,
    keyboard: &Keyboard,
    probe: &OwnedFd,
    node: &str,
) -> Result<(), String> {
    drop(compositor::connect()?);
    keyboard.tap(KEY_A)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !comp
        .log_text()
        .contains("input device: heapland test keyboard")
    {
        comp.alive()?;
        if Instant::now() > deadline {
            let mut buf = [0u8; 4096];
            let emitted = rustix::io::read(probe, &mut buf).unwrap_or(0);
            return Err(format!(
                "a key on {node} ({emitted} bytes of events read by the test) did not reach heapland's libinput:\n{}\n{}",
                comp.log_text(),
                where_it_waits(comp.pid())
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The test's own non-blocking reader of the input node `node`.
pub(super) fn probe(node: &str) -> Result<OwnedFd, String> {
    rustix::fs::open(
        node,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {node}: {e}"))
}
