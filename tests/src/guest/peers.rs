//! heapland side by side with Debian's weston and sway, on the same vkms, with
//! the same client (part `peers` of heapland-bench).
//!
//! Each compositor starts on the drm backend, one after another, in rotated
//! order round by round. For each the bench reads, from the kernel's
//! accounting of the compositor's own process (its helper processes, such as
//! weston's desktop shell, are not counted):
//! - **RSS** (`VmRSS`) once it has settled after start (two seconds in a row
//!   without CPU time);
//! - **idle wake-ups**: context switches of all its threads over five
//!   seconds with nothing on screen changing, once start-up has quieted
//!   (two seconds without one, or 45 seconds of waiting);
//! - **CPU time per frame** (`utime + stime`) while one full-screen client
//!   redraws on every frame callback: from `wl_shm` (composited), and from
//!   dma-bufs of the heap that serves vkms (which a compositor may scan out
//!   directly). Frames are the client's frame callbacks.
//!
//! The client speaks only standard protocols (xdg-shell, wl_shm,
//! linux-dmabuf), so every compositor serves it alike; it allocates from the
//! heap itself (root in the guest) rather than through heapland's heap
//! protocol. A compositor without linux-dmabuf (weston's and wlroots'
//! pixman renderers in Debian 12) has no dma-buf row.
//!
//! GL compositors run on trixie-backports' Mesa 26.1 (see `gles`), all of
//! them: Debian 12's kms_swrast crashes importing a heap dma-buf.

use std::{
    fs::File,
    io::Write,
    os::{
        fd::{AsFd, OwnedFd},
        unix::{fs::PermissionsExt, net::UnixStream, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use heapland_allocator::{
    allocator_for,
    smithay::backend::allocator::{Allocator, Buffer, Fourcc, Modifier},
    DeviceNumber, Discovery,
};
use wayland_client::{
    globals::registry_queue_init,
    protocol::{wl_buffer::WlBuffer, wl_compositor::WlCompositor},
    Connection, EventQueue,
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::{
    acl::{AclGrant, Named},
    camera_client,
    compositor::{self, State, XR24},
    dma_buf::{self, Mapping},
    gles::{MESA_ENV, MESA_LAUNCH},
    redraw::{context_switches, wait_until_quiet, wakeups},
    steady_state,
};
use crate::bench::{ms, quote, Stats};

/// Camera frames measured per run, after the camera client's warm-up.
const CAMERA_FRAMES: usize = 60;

/// The unprivileged user sway runs as (it refuses root).
pub(super) const PEER_UID: u32 = 1000;

/// A compositor under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    HeaplandGles,
    HeaplandPixman,
    WestonGl,
    WestonPixman,
    SwayGles2,
    SwayPixman,
}

impl Peer {
    pub fn all() -> [Peer; 6] {
        [
            Peer::HeaplandGles,
            Peer::HeaplandPixman,
            Peer::WestonGl,
            Peer::WestonPixman,
            Peer::SwayGles2,
            Peer::SwayPixman,
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Peer::HeaplandGles => "heapland-gles",
            Peer::HeaplandPixman => "heapland-pixman",
            Peer::WestonGl => "weston-gl",
            Peer::WestonPixman => "weston-pixman",
            Peer::SwayGles2 => "sway-gles2",
            Peer::SwayPixman => "sway-pixman",
        }
    }

    fn gl(self) -> bool {
        matches!(self, Peer::HeaplandGles | Peer::WestonGl | Peer::SwayGles2)
    }

    fn is_heapland(self) -> bool {
        matches!(self, Peer::HeaplandGles | Peer::HeaplandPixman)
    }
}

/// A compositor started for one measurement.
struct Running {
    child: Child,
    /// seatd, for sway.
    seatd: Option<Child>,
    /// The seat user's access to the DRM nodes, for sway.
    _uaccess: Vec<AclGrant>,
    socket: PathBuf,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let keep = if UNDER_GDB.load(std::sync::atomic::Ordering::Relaxed) {
            40
        } else {
            15
        };
        lines[lines.len().saturating_sub(keep)..].join("\n")
    }

    /// The log's length in bytes now.
    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// What the log gained after `offset` bytes (its last 40 lines).
    fn log_since(&self, offset: u64) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(text.len());
        let text = String::from_utf8_lossy(&text[start..]).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("exited ({status}): {}", self.log_tail())),
            _ => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.seatd.as_mut()) {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The next compositor takes the display: let the old one's seat go.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether heapland runs under `gdb -batch` (heapland-bench --peer-gdb), so
/// that a crash leaves its backtrace in the log. Its numbers are then gdb's.
static UNDER_GDB: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn run_heapland_under_gdb(on: bool) {
    UNDER_GDB.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// heapland's `RUST_LOG` in the peers part (heapland-bench --peer-log), to
/// see what it does while idle; its numbers then include the logging.
static LOG_LEVEL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub fn heapland_log_level(level: &str) {
    if let Ok(mut l) = LOG_LEVEL.lock() {
        *l = Some(level.to_owned());
    }
}

/// `program` on Mesa 26.1 when `gl`, else as it is.
fn command(program: &str, gl: bool) -> Command {
    if program == "/bin/heapland" && UNDER_GDB.load(std::sync::atomic::Ordering::Relaxed) {
        let mut c = Command::new("/usr/bin/gdb");
        c.args(["-batch", "-ex", "run", "-ex", "bt 25", "--args"]);
        if gl {
            c.args(MESA_LAUNCH).envs(MESA_ENV.iter().copied());
        }
        c.arg(program);
        return c;
    }
    if !gl {
        return Command::new(program);
    }
    let mut c = Command::new(MESA_LAUNCH[0]);
    c.args(&MESA_LAUNCH[1..]).arg(program);
    c.envs(MESA_ENV.iter().copied());
    c
}

pub(super) fn private_dir(path: &str, uid: u32) -> Result<PathBuf, String> {
    let dir = PathBuf::from(path);
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {path}: {e}"))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {path}: {e}"))?;
    rustix::fs::chown(
        &dir,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(uid)),
    )
    .map_err(|e| format!("chown {path}: {e}"))?;
    Ok(dir)
}

/// seatd's own socket path (it has no option for another).
pub(super) const SEATD_SOCK: &str = "/run/seatd.sock";

/// seatd for the unprivileged user, once its socket is there.
pub(super) fn start_seatd() -> Result<Child, String> {
    let seat_sock = SEATD_SOCK;
    let _ = std::fs::remove_file(seat_sock);
    let seatd_log = "/tmp/peer-seatd.log";
    let mut seatd = Command::new("/usr/sbin/seatd")
        .args(["-u", "peer", "-g", "peer", "-l", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(seatd_log).map_err(|e| format!("{seatd_log}: {e}"))?)
        .spawn()
        .map_err(|e| format!("spawn /usr/sbin/seatd: {e} (package seatd)"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(seat_sock).exists() {
        let exited = seatd.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let _ = seatd.kill();
            let _ = seatd.wait();
            return Err(format!(
                "seatd's socket never appeared ({}): {}",
                exited.map_or("still running".to_owned(), |s| s.to_string()),
                std::fs::read_to_string(seatd_log)
                    .unwrap_or_default()
                    .trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(seatd)
}

/// The unprivileged user and its group, for seatd and sway.
pub(super) fn ensure_peer_user() -> Result<(), String> {
    let add = |path: &str, line: &str| -> Result<(), String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with("peer:")) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{path}: {e}"))?;
            writeln!(f, "{line}").map_err(|e| format!("{path}: {e}"))?;
        }
        Ok(())
    };
    add("/etc/passwd", "root:x:0:0:root:/tmp:/bin/sh")?;
    add(
        "/etc/passwd",
        &format!("peer:x:{PEER_UID}:{PEER_UID}::/tmp/peer-home:/bin/sh"),
    )?;
    add("/etc/group", "root:x:0:")?;
    add("/etc/group", &format!("peer:x:{PEER_UID}:"))
}

fn start(peer: Peer) -> Result<Running, String> {
    let log = PathBuf::from(format!("/tmp/peer-{}.log", peer.name()));
    let stderr = || File::create(&log).map_err(|e| format!("create {}: {e}", log.display()));
    match peer {
        Peer::HeaplandGles | Peer::HeaplandPixman => {
            let dir = private_dir("/run/user/0", 0)?;
            let socket = dir.join("heapland-peer");
            let _ = std::fs::remove_file(&socket);
            let renderer = if peer.gl() { "gles" } else { "pixman" };
            let err = stderr()?;
            let mut c = command("/bin/heapland", peer.gl());
            c.args([
                "--backend",
                "drm",
                "--renderer",
                renderer,
                "--socket",
                "heapland-peer",
            ])
            .env("XDG_RUNTIME_DIR", &dir)
            .stdin(Stdio::null())
            .stderr(err);
            if let Some(level) = LOG_LEVEL.lock().ok().and_then(|l| l.clone()) {
                c.env("RUST_LOG", level);
            }
            // gdb says what happened (the signal, the backtrace) on stdout.
            if UNDER_GDB.load(std::sync::atomic::Ordering::Relaxed) {
                let out = File::options()
                    .append(true)
                    .open(&log)
                    .map_err(|e| format!("{}: {e}", log.display()))?;
                c.stdout(out);
            } else {
                c.stdout(Stdio::null());
            }
            let child = c.spawn().map_err(|e| format!("spawn heapland: {e}"))?;
            Ok(Running {
                child,
                seatd: None,
                _uaccess: Vec::new(),
                socket,
                log,
            })
        }
        Peer::WestonGl | Peer::WestonPixman => {
            let dir = private_dir("/run/user/0", 0)?;
            let socket = dir.join("weston-peer");
            let _ = std::fs::remove_file(&socket);
            let config = "/tmp/weston-peer.ini";
            std::fs::write(config, "[core]\nrequire-input=false\nidle-time=0\n")
                .map_err(|e| format!("{config}: {e}"))?;
            let mut c = command("/usr/bin/weston", peer.gl());
            c.args([
                "--backend=drm-backend.so",
                "--config=/tmp/weston-peer.ini",
                "--socket=weston-peer",
                "--tty=2",
            ]);
            if !peer.gl() {
                c.arg("--use-pixman");
            }
            let child = c
                .env("XDG_RUNTIME_DIR", &dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr()?)
                .spawn()
                .map_err(|e| format!("spawn weston: {e}"))?;
            Ok(Running {
                child,
                seatd: None,
                _uaccess: Vec::new(),
                socket,
                log,
            })
        }
        Peer::SwayGles2 | Peer::SwayPixman => {
            ensure_peer_user()?;
            let dir = private_dir("/run/user/1000", PEER_UID)?;
            private_dir("/tmp/peer-home", PEER_UID)?;
            for entry in std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .flatten()
            {
                let _ = std::fs::remove_file(entry.path());
            }
            let seat_sock = SEATD_SOCK;
            let seatd = start_seatd()?;
            // What logind's `uaccess` gives the active session's user on a
            // desktop: wlroots opens the DRM node for its renderer itself, not
            // through the seat (vkms has no render node to open instead).
            let uaccess = std::fs::read_dir("/dev/dri")
                .map_err(|e| format!("/dev/dri: {e}"))?
                .flatten()
                .map(|e| AclGrant::add(&e.path(), Named::User(PEER_UID), AclGrant::READ_WRITE))
                .collect::<Result<Vec<_>, _>>()?;
            let config = "/tmp/peer-home/sway.config";
            std::fs::write(config, "xwayland disable\ndefault_border none\n")
                .map_err(|e| format!("{config}: {e}"))?;
            // The guest has no /etc/fonts: Debian's fonts, a cache of its own.
            let fonts = "/tmp/peer-home/fonts.conf";
            std::fs::write(
                fonts,
                "<?xml version=\"1.0\"?>\n<fontconfig><dir>/usr/share/fonts</dir>\
                 <cachedir>/tmp/peer-home/fontconfig</cachedir></fontconfig>\n",
            )
            .map_err(|e| format!("{fonts}: {e}"))?;
            let child = command("/usr/bin/sway", peer.gl())
                .args(["-c", config])
                .env_clear()
                .envs(if peer.gl() { MESA_ENV } else { &[] }.iter().copied())
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", "/tmp/peer-home")
                .env("XDG_RUNTIME_DIR", &dir)
                .env("LIBSEAT_BACKEND", "seatd")
                .env("SEATD_SOCK", seat_sock)
                .env("WLR_LIBINPUT_NO_DEVICES", "1")
                .env("WLR_RENDERER", if peer.gl() { "gles2" } else { "pixman" })
                // llvmpipe, as every GL compositor here.
                .env("WLR_RENDERER_ALLOW_SOFTWARE", "1")
                .env("FONTCONFIG_FILE", fonts)
                .uid(PEER_UID)
                .gid(PEER_UID)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr()?)
                .spawn()
                .map_err(|e| format!("spawn /usr/bin/sway: {e} (package sway)"))?;
            Ok(Running {
                child,
                seatd: Some(seatd),
                _uaccess: uaccess,
                // sway names its socket itself: found once it exists.
                socket: dir,
                log,
            })
        }
    }
}

/// Waits for the compositor's socket; for sway, the first `wayland-N` of its
/// runtime directory.
fn wait_socket(run: &mut Running) -> Result<PathBuf, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        run.alive()?;
        if run.socket.is_dir() {
            let found = std::fs::read_dir(&run.socket)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("wayland-"))
                        && p.extension().is_none()
                });
            if let Some(path) = found {
                return Ok(path);
            }
        } else if run.socket.exists() {
            return Ok(run.socket.clone());
        }
        if Instant::now() > deadline {
            return Err(format!("no Wayland socket after 90 s: {}", run.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// utime + stime of `pid`, in clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    cpu_ticks_of(&format!("/proc/{pid}/stat"))
}

fn cpu_ticks_of(path: &str) -> Result<u64, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .ok_or("no utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .ok_or("no stime")?;
    Ok(utime + stime)
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no VmRSS".to_owned())
}

/// Each thread of `pid` with its CPU time, to say who is busy.
fn thread_ticks(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "gone".into();
    };
    dir.flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let ticks = cpu_ticks_of(&format!("/proc/{pid}/task/{tid}/stat")).ok()?;
            Some(format!("{} {ticks}", comm.trim()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one run of one compositor measured.
#[derive(Debug, Clone)]
struct Sample {
    rss_kib: u64,
    idle_switches_per_s: f64,
    shm: Option<Frames>,
    dmabuf: Option<Frames>,
    camera: Result<camera_client::Sample, String>,
    v4l_client: Result<camera_client::Shown, String>,
}

#[derive(Debug, Clone, Copy)]
struct Frames {
    frames: u64,
    cpu: Duration,
    secs: f64,
}

impl Frames {
    fn cpu_per_frame(&self) -> Duration {
        self.cpu / self.frames.max(1) as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Shm,
    Dmabuf,
}

/// A full-screen client redrawing on every frame callback for `window`
/// after `warmup`; `None` when the compositor has no linux-dmabuf.
fn client_run(
    run: &mut Running,
    socket: &Path,
    memory: Memory,
    warmup: Duration,
    window: Duration,
) -> Result<Option<Frames>, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    let conn = Connection::from_socket(stream).map_err(|e| format!("connection: {e}"))?;
    let (globals, mut queue): (_, EventQueue<State>) =
        registry_queue_init(&conn).map_err(|e| format!("registry: {e}"))?;
    let qh = queue.handle();
    let mut st = State::default();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    let dmabuf: Option<ZwpLinuxDmabufV1> = compositor::bind(&globals, &qh, 3..=4).ok();
    if memory == Memory::Dmabuf && dmabuf.is_none() {
        return Ok(None);
    }
    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_fullscreen(None);
    surface.commit();
    let deadline = Instant::now() + Duration::from_secs(30);
    // sway sizes a window only once it is mapped: a first configure of 0x0
    // gets a small buffer, and the full-screen size follows.
    let mut placeholder: Vec<OwnedFd> = Vec::new();
    let mut mapped = false;
    while !(st.configured && st.configured_size.0 > 0) {
        if st.configured && !mapped {
            let first = steady_state::shm_buffers(&globals, &qh, (64, 64), &mut placeholder)?;
            surface.attach(Some(&first[0]), 0, 0);
            surface.commit();
            mapped = true;
        }
        queue
            .roundtrip(&mut st)
            .map_err(|e| format!("waiting for configure: {e}"))?;
        run.alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "no full-screen configure: {:?}",
                st.configured_size
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (w, h) = (st.configured_size.0 as u32, st.configured_size.1 as u32);
    let mut keep: Vec<OwnedFd> = Vec::new();
    let buffers = match memory {
        Memory::Shm => steady_state::shm_buffers(&globals, &qh, (w, h), &mut keep)?,
        Memory::Dmabuf => dmabuf_buffers(
            dmabuf.as_ref().ok_or("no linux-dmabuf")?,
            &qh,
            (w, h),
            &mut keep,
        )?,
    };
    let pid = run.pid();
    let started = Instant::now();
    let mut mark: Option<(Instant, u64, u32)> = None;
    let mut next = 0usize;
    st.frame_done = true;
    st.callbacks = 0;
    loop {
        if st.frame_done {
            st.frame_done = false;
            surface.attach(Some(&buffers[next % buffers.len()]), 0, 0);
            surface.damage_buffer(0, 0, w as i32, h as i32);
            surface.frame(&qh, ());
            surface.commit();
            next += 1;
        }
        conn.flush().map_err(|e| format!("flush: {e}"))?;
        queue
            .blocking_dispatch(&mut st)
            .map_err(|e| format!("dispatch: {e}"))?;
        run.alive()?;
        if started.elapsed() < warmup {
            continue;
        }
        let (t0, cpu0, frames0) =
            *mark.get_or_insert((Instant::now(), cpu_ticks(pid)?, st.callbacks));
        if t0.elapsed() >= window {
            let cpu = cpu_ticks(pid)?.saturating_sub(cpu0);
            let frames = u64::from(st.callbacks - frames0);
            drop(buffers);
            drop(keep);
            return Ok(Some(Frames {
                frames,
                cpu: Duration::from_millis(cpu * 10),
                secs: t0.elapsed().as_secs_f64(),
            }));
        }
    }
}

/// Three dma-bufs from the heap that serves vkms.
fn dmabuf_buffers(
    dmabuf: &ZwpLinuxDmabufV1,
    qh: &wayland_client::QueueHandle<State>,
    (w, h): (u32, u32),
    keep: &mut Vec<OwnedFd>,
) -> Result<Vec<WlBuffer>, String> {
    let vkms = DeviceNumber::of_path(Path::new("/dev/dri/card0")).map_err(|e| e.to_string())?;
    let mut allocator = allocator_for(&Discovery::scan(), &[vkms], Fourcc::Xrgb8888, w, h)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for colour in steady_state::COLOURS {
        let buffer = allocator
            .create_buffer(w, h, Fourcc::Xrgb8888, &[Modifier::Linear])
            .map_err(|e| e.to_string())?;
        let fd = buffer
            .handles()
            .next()
            .ok_or("no plane")?
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let stride = buffer.strides().next().unwrap_or(w * 4);
        let len = u64::from(stride) * u64::from(h);
        {
            let mut map = Mapping::new(fd.as_fd(), len as usize)?;
            dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
                .map_err(|e| format!("sync: {e}"))?;
            map.words_mut().fill(colour);
            dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
                .map_err(|e| format!("sync: {e}"))?;
        }
        let params = dmabuf.create_params(qh, ());
        params.add(fd.as_fd(), 0, 0, stride, 0, 0);
        out.push(params.create_immed(
            buffer.width() as i32,
            buffer.height() as i32,
            XR24,
            Flags::empty(),
            qh,
            (),
        ));
        keep.push(fd);
    }
    Ok(out)
}

/// Waits until the compositor has done starting: two seconds in a row with
/// at most a tenth of a CPU (its socket may come long before its first
/// frame: GL compiles shaders under TCG for seconds, at a whole CPU). What
/// it costs when idle after that is the idle measurement's business: sway
/// never drops below a few ticks a second here.
fn settle(run: &mut Running) -> Result<(), String> {
    let pid = run.pid();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    let mut last = cpu_ticks(pid)?;
    while quiet < 2 {
        std::thread::sleep(Duration::from_secs(1));
        run.alive()?;
        let now = cpu_ticks(pid)?;
        quiet = if now - last <= 10 { quiet + 1 } else { 0 };
        last = now;
        if Instant::now() > deadline {
            return Err(format!(
                "still busy 120 s after start (threads, CPU ticks: {}): {}",
                thread_ticks(pid),
                run.log_tail()
            ));
        }
    }
    Ok(())
}

fn measure(peer: Peer, window: Duration) -> Result<Sample, String> {
    let mut run = start(peer)?;
    let socket = wait_socket(&mut run)?;
    settle(&mut run)?;
    let pid = run.pid();
    let rss_kib = rss_kib(pid)?;
    // Start-up's tail (heapland starts Xwayland with itself, and Xwayland's
    // first requests come tens of seconds after heapland's CPU time has
    // settled under TCG) ends first: 2 s without a wake-up, at most 45 s of
    // waiting, for every compositor alike (sway, which never stops waking,
    // always waits the 45 s). A periodic wake-up shows after that.
    wait_until_quiet(pid, Duration::from_secs(45))?;
    let log_before = run.log_len();
    let before = context_switches(pid)?;
    let idle = Duration::from_secs(5);
    std::thread::sleep(idle);
    let woke = wakeups(&before, &context_switches(pid)?);
    let idle_switches: u64 = woke.iter().map(|(_, n)| n).sum();
    if idle_switches > 0 {
        // Which thread woke says why (the main loop, a renderer's worker, a timer).
        if peer.is_heapland() {
            // What it said while it should have been idle (with
            // --peer-log debug: what it was doing).
            println!(
                "INFO peers: {} log while idle:\n{}",
                peer.name(),
                run.log_since(log_before)
            );
        }
        println!(
            "INFO peers: {} woke {idle_switches} times in {} s idle, by thread: {woke:?}",
            peer.name(),
            idle.as_secs()
        );
    }
    let idle_switches_per_s = idle_switches as f64 / idle.as_secs_f64();
    let warmup = Duration::from_secs(2);
    let shm = client_run(&mut run, &socket, Memory::Shm, warmup, window)
        .map_err(|e| format!("with the shm client: {e}"))?;
    let dmabuf = client_run(&mut run, &socket, Memory::Dmabuf, warmup, window)
        .map_err(|e| format!("with the dma-buf client: {e}"))?;
    let camera = camera_client::latency(&socket, CAMERA_FRAMES, &mut || run.alive());
    run.alive()
        .map_err(|e| format!("with the camera client: {e}"))?;
    let v4l_client = camera_client::v4l_client_shown(&socket, &mut || run.alive())
        .map_err(|e| format!("{e}; the compositor's log ends: {}", run.log_tail()));
    run.alive()
        .map_err(|e| format!("with weston-simple-dmabuf-v4l: {e}"))?;
    Ok(Sample {
        rss_kib,
        idle_switches_per_s,
        shm,
        dmabuf,
        camera,
        v4l_client,
    })
}

/// Every compositor, `rounds` times in rotated order; prints `BENCH <boot>
/// peer` lines and `TABLE peers` lines.
pub fn bench(boot: &str, peers: &[Peer], rounds: usize, window: Duration) -> bool {
    let mut results: Vec<(Vec<Sample>, Option<String>)> =
        peers.iter().map(|_| (Vec::new(), None)).collect();
    for round in 0..rounds {
        for k in 0..peers.len() {
            let i = (k + round) % peers.len();
            if results[i].1.is_some() {
                continue;
            }
            match measure(peers[i], window) {
                Ok(s) => results[i].0.push(s),
                Err(e) => results[i].1 = Some(e),
            }
        }
    }
    let mut ok = true;
    for (peer, (samples, error)) in peers.iter().zip(results) {
        let head = format!("BENCH {boot} peer {}", peer.name());
        if let Some(e) = error {
            ok = false;
            println!("{head} error={}", quote(&e));
            println!("TABLE peers {}: no numbers: {e}", peer.name());
            continue;
        }
        let median_of = |f: &dyn Fn(&Sample) -> Option<Duration>| {
            let v: Vec<Duration> = samples.iter().filter_map(f).collect();
            Stats::of(&v).map(|s| s.median)
        };
        let rss = median_of(&|s| Some(Duration::from_micros(s.rss_kib)))
            .map_or(0, |d| d.as_micros() as u64);
        let idle = median_of(&|s| {
            Some(Duration::from_micros(
                (s.idle_switches_per_s * 1000.0) as u64,
            ))
        })
        .map_or(0.0, |d| d.as_micros() as f64 / 1000.0);
        let per_frame = |m: Memory| {
            median_of(&|s| match m {
                Memory::Shm => s.shm.map(|f| f.cpu_per_frame()),
                Memory::Dmabuf => s.dmabuf.map(|f| f.cpu_per_frame()),
            })
        };
        let fps = |m: Memory| {
            let v: Vec<f64> = samples
                .iter()
                .filter_map(|s| match m {
                    Memory::Shm => s.shm,
                    Memory::Dmabuf => s.dmabuf,
                })
                .map(|f| f.frames as f64 / f.secs)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let show = |d: Option<Duration>| d.map_or("none".to_owned(), ms);
        let camera = camera_summary(&samples);
        let v4l = samples
            .iter()
            .map(|s| match &s.v4l_client {
                Ok(shown) => format!(
                    "shown ({} distinct of {} frames; {} while still)",
                    shown.distinct, shown.frames, shown.idle_distinct
                ),
                Err(e) => format!("not shown: {e}"),
            })
            .next_back()
            .unwrap_or_default();
        let v4l_shown = samples.iter().all(|s| s.v4l_client.is_ok());
        // A peer may lack what the camera needs; heapland may not.
        if matches!(peer, Peer::HeaplandGles | Peer::HeaplandPixman)
            && (!v4l_shown || samples.iter().any(|s| s.camera.is_err()))
        {
            ok = false;
        }
        let show_fps = |f: Option<f64>| f.map_or("none".to_owned(), |f| format!("{f:.1}"));
        println!(
            "{head} rss_kib={rss} idle_wakeups_per_s={idle:.1} shm_cpu_per_frame={} shm_fps={} dmabuf_cpu_per_frame={} dmabuf_fps={} {} v4l_client={} v4l_client_detail={} rounds={}",
            show(per_frame(Memory::Shm)),
            show_fps(fps(Memory::Shm)),
            show(per_frame(Memory::Dmabuf)),
            show_fps(fps(Memory::Dmabuf)),
            camera.fields,
            if v4l_shown { "shown" } else { "not-shown" },
            quote(&v4l),
            samples.len(),
        );
        println!(
            "TABLE peers {:<16} RSS {:>7} KiB, idle {:>5.1} wake-ups/s, shm {} ms/frame at {} fps, dma-buf {} ms/frame at {} fps",
            peer.name(),
            rss,
            idle,
            show(per_frame(Memory::Shm)),
            show_fps(fps(Memory::Shm)),
            show(per_frame(Memory::Dmabuf)),
            show_fps(fps(Memory::Dmabuf)),
        );
        println!(
            "TABLE peers {:<16} camera {}; weston-simple-dmabuf-v4l {v4l}",
            peer.name(),
            camera.text
        );
    }
    ok
}

/// The camera runs of one compositor, as `BENCH` fields and as text.
struct CameraSummary {
    fields: String,
    text: String,
}

fn camera_summary(samples: &[Sample]) -> CameraSummary {
    let errors: Vec<&str> = samples
        .iter()
        .filter_map(|s| s.camera.as_ref().err().map(String::as_str))
        .collect();
    let runs: Vec<&camera_client::Sample> = samples
        .iter()
        .filter_map(|s| s.camera.as_ref().ok())
        .collect();
    let latencies: Vec<Duration> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    let Some(stats) = Stats::of(&latencies) else {
        let e = errors.first().copied().unwrap_or("no frame presented");
        return CameraSummary {
            fields: format!("camera_error={}", quote(e)),
            text: format!("no numbers: {e}"),
        };
    };
    let memory = runs.first().map_or("?", |r| r.memory.name());
    let discarded: usize = runs.iter().map(|r| r.discarded).sum();
    CameraSummary {
        fields: format!(
            "camera_memory={memory} camera_latency_median={} camera_latency_min={} camera_latency_p90={} camera_n={} camera_discarded={discarded} camera_failed_runs={}",
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
            stats.n,
            errors.len()
        ),
        text: format!(
            "({memory}) capture to presented median {} ms (min {}, p90 {}) over {} frames{}",
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
            stats.n,
            errors
                .first()
                .map(|e| format!("; {} failed run(s): {e}", errors.len()))
                .unwrap_or_default()
        ),
    }
}
