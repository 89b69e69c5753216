//! Shared helpers of the host protocol tests: start the real `heapland`
//! binary on a private socket, and a small wayland-client that records what
//! the compositor sends.
//!
//! The binary is found through `HEAPLAND_BIN` if set; otherwise it is built
//! once per test process with `cargo build -p heapland --features winit`
//! (the nested test needs it; a separate build keeps winit's system
//! libwayland-client out of the tests' own wayland-client, whose pure-Rust
//! backend reports protocol error messages) into the same target
//! directory and profile as the running test (cargo does not hold its lock
//! while tests run), so a stale binary is never tested.

#![allow(dead_code)]

pub mod desktop;

use std::{
    collections::HashMap,
    fs::File,
    os::{fd::OwnedFd, unix::fs::FileExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use heapland_allocator::feedback_client::{FeedbackCollector, FeedbackError, JoinedFeedback};
use heapland_protocols::client::{
    xx_dmabuf_heap_feedback_v1::{self, XxDmabufHeapFeedbackV1},
    xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1,
};
use wayland_client::{
    backend::{ObjectId, WaylandError},
    globals::GlobalList,
    protocol::{
        wl_buffer::{self, WlBuffer},
        wl_callback::{self, WlCallback},
        wl_compositor::WlCompositor,
        wl_output::WlOutput,
        wl_seat::WlSeat,
        wl_shm::WlShm,
        wl_shm_pool::WlShmPool,
        wl_subcompositor::WlSubcompositor,
        wl_subsurface::WlSubsurface,
        wl_surface::WlSurface,
    },
    Connection, Dispatch, DispatchError, EventQueue, Proxy, QueueHandle,
};
use wayland_protocols::{
    wp::{
        fractional_scale::v1::client::{
            wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1,
            wp_fractional_scale_v1::{self, WpFractionalScaleV1},
        },
        linux_dmabuf::zv1::client::{
            zwp_linux_buffer_params_v1::{self, ZwpLinuxBufferParamsV1},
            zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
            zwp_linux_dmabuf_v1::{self, ZwpLinuxDmabufV1},
        },
        presentation_time::client::{
            wp_presentation::WpPresentation,
            wp_presentation_feedback::{self, WpPresentationFeedback},
        },
        security_context::v1::client::{
            wp_security_context_manager_v1::WpSecurityContextManagerV1,
            wp_security_context_v1::WpSecurityContextV1,
        },
        viewporter::client::{wp_viewport::WpViewport, wp_viewporter::WpViewporter},
    },
    xdg::{
        shell::client::{
            xdg_surface::{self, XdgSurface},
            xdg_toplevel::{self, XdgToplevel},
            xdg_wm_base::{self, XdgWmBase},
        },
        xdg_output::zv1::client::{
            zxdg_output_manager_v1::ZxdgOutputManagerV1,
            zxdg_output_v1::{self, ZxdgOutputV1},
        },
    },
};

/// Background colour the headless backend clears to (CLEAR_COLOR in
/// compositor/src/backend/headless.rs: 0.10, 0.12, 0.16), as pixman
/// converts it to 8-bit RGB (truncating).
pub const BACKGROUND: [u8; 3] = [25, 30, 40];

/// Path of the heapland binary, built once per test process.
pub fn heapland_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HEAPLAND_BIN") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/<test exe>
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test exe lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-p",
            "heapland",
            "--features",
            "winit",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p heapland");
        assert!(status.success(), "cargo build -p heapland failed");
        let bin = profile_dir.join("heapland");
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
}

/// A fresh private directory for one compositor (its XDG_RUNTIME_DIR).
pub fn private_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "heapland-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create runtime dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .expect("chmod runtime dir");
    dir
}

/// A running `heapland --backend headless` on a private socket.
pub struct Compositor {
    child: Child,
    pub dir: PathBuf,
    pub socket: String,
    pub png: PathBuf,
    pub log: PathBuf,
    pub width: u32,
    pub height: u32,
}

impl Compositor {
    /// Starts with one 320x240@60 output and a screenshot after every frame.
    pub fn start() -> Compositor {
        Self::start_with(320, 240, &["--screenshot-every-frame"])
    }

    /// Starts with one output of the given size; `extra` arguments follow
    /// (e.g. `--screenshot-every-frame`). Screenshots go to `self.png`.
    pub fn start_with(width: u32, height: u32, extra: &[&str]) -> Compositor {
        let output = format!("{width}x{height}@60");
        let mut args = vec!["--backend", "headless", "--output", &output];
        args.extend_from_slice(extra);
        Self::spawn(&args, None, (width, height))
    }

    /// Starts the nested (winit) backend in a window on the X server at
    /// `display`; `size` is the window's size as heapland logs it.
    pub fn start_nested(display: &str, size: (u32, u32)) -> Compositor {
        Self::spawn(&["--backend", "winit"], Some(display), size)
    }

    fn spawn(args: &[&str], x_display: Option<&str>, size: (u32, u32)) -> Compositor {
        let (width, height) = size;
        let dir = private_dir("rt");
        let socket = "heapland-test".to_string();
        let png = dir.join("output.png");
        let log = dir.join("heapland.log");
        let mut cmd = Command::new(heapland_bin());
        cmd.args(args)
            .args(["--socket", &socket, "--log", "info"])
            .arg("--screenshot")
            .arg(&png)
            .env("XDG_RUNTIME_DIR", &dir)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DISPLAY");
        if let Some(display) = x_display {
            cmd.env("DISPLAY", display);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn heapland");
        let mut comp = Compositor {
            child,
            dir,
            socket,
            png,
            log,
            width,
            height,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !comp.dir.join(&comp.socket).exists() {
            if let Ok(Some(status)) = comp.child.try_wait() {
                panic!("heapland exited at start ({status}):\n{}", comp.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "heapland socket never appeared:\n{}",
                comp.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        comp
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the compositor died.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("heapland died ({status}):\n{}", self.log_text());
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.dir.join(&self.socket))
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("heapland ignored SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The latest screenshot, as RGB rows.
    pub fn screenshot(&self) -> Option<Picture> {
        Picture::read(&self.png)
    }

    /// Polls the screenshot until `pred` holds; returns the last picture.
    pub fn wait_for_picture(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Picture) -> bool,
    ) -> Picture {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_alive();
            if let Some(p) = self.screenshot() {
                if pred(&p) {
                    return p;
                }
                if Instant::now() > deadline {
                    return p;
                }
            } else if Instant::now() > deadline {
                panic!(
                    "no screenshot at {}:\n{}",
                    self.png.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Open file descriptors of the compositor.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Resident set size of the compositor in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Compositor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), rustix::process::Signal::KILL);
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Debian's wlr-randr (package wlr-randr) with `args`: (success, stdout,
/// stderr).
pub fn wlr_randr(comp: &Compositor, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("/usr/bin/wlr-randr")
        .args(args)
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .env("WAYLAND_DISPLAY", &comp.socket)
        .output()
        .expect("run /usr/bin/wlr-randr (package wlr-randr)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The RGB pixels of an XRGB8888 file of `w`x`h`, rows of `w * 4` bytes
/// (a capture client's wl_shm buffer).
pub fn rgb_of(file: &File, w: u32, h: u32) -> Picture {
    let mut bytes = vec![0u8; (w * h * 4) as usize];
    file.read_exact_at(&mut bytes, 0)
        .expect("read the shm file");
    Picture {
        width: w,
        height: h,
        rgb: bytes
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect(),
    }
}

/// Debian's grim (package grim, wlr-screencopy) with `args`, writing the
/// PNG `name` in the compositor's directory; its picture.
pub fn grim(comp: &Compositor, args: &[&str], name: &str) -> Picture {
    let path = comp.dir.join(name);
    let out = Command::new("/usr/bin/grim")
        .args(args)
        .arg(&path)
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .env("WAYLAND_DISPLAY", &comp.socket)
        .output()
        .expect("run /usr/bin/grim (apt-get install grim)");
    assert!(
        out.status.success(),
        "grim {args:?}: {}\n{}\nheapland's log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        comp.log_text()
    );
    Picture::read_any(&path)
}

/// A decoded screenshot.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn read(path: &Path) -> Option<Picture> {
        let file = File::open(path).ok()?;
        let decoder = png::Decoder::new(std::io::BufReader::new(file));
        let mut reader = decoder.read_info().ok()?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).ok()?;
        assert_eq!(info.color_type, png::ColorType::Rgb, "screenshots are RGB");
        buf.truncate(info.buffer_size());
        Some(Picture {
            width: info.width,
            height: info.height,
            rgb: buf,
        })
    }

    /// A PNG of any colour type with at least three channels, as RGB rows
    /// (what other programs, such as grim, write).
    pub fn read_any(path: &Path) -> Picture {
        let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG data");
        let channels = info.color_type.samples();
        assert!(channels >= 3, "a grey PNG: {:?}", info.color_type);
        let rgb = buf[..info.buffer_size()]
            .chunks_exact(channels)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Picture {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Number of pixels in the rectangle equal to `rgb`.
    pub fn count(&self, x0: u32, y0: u32, x1: u32, y1: u32, rgb: [u8; 3]) -> usize {
        let mut n = 0;
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                if self.pixel(x, y) == rgb {
                    n += 1;
                }
            }
        }
        n
    }

    /// Pixels of the rectangle whose every channel is within `tol` of `rgb`.
    pub fn count_near(&self, rect: (u32, u32, u32, u32), rgb: [u8; 3], tol: u8) -> usize {
        let (x0, y0, x1, y1) = rect;
        let near = |p: [u8; 3]| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= tol);
        let mut n = 0;
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                if near(self.pixel(x, y)) {
                    n += 1;
                }
            }
        }
        n
    }
}

/// A v1 heap feedback object and the linux-dmabuf feedback object of the
/// same scope, read through the allocator library's `FeedbackCollector`:
/// the tests check what a client of the library is told, and the collector
/// checks the grammar and that the heap batch describes the linux-dmabuf
/// tranches (count, order, targets, flags, main device listed).
pub struct HeapScope {
    collector: FeedbackCollector,
    /// Every batch joined, or refused as out of step with linux-dmabuf,
    /// in order.
    pub batches: Vec<Result<JoinedFeedback, FeedbackError>>,
}

/// The objects of a [`HeapScope`].
pub struct HeapScopeObjects {
    pub heap: XxDmabufHeapFeedbackV1,
    /// `None` where linux-dmabuf has no feedback (version 3: no render node).
    pub dmabuf: Option<ZwpLinuxDmabufFeedbackV1>,
}

/// xdg-output of one output: name, logical position, logical size.
pub type XdgOutputInfo = (String, (i32, i32), (i32, i32));

/// Everything the test client received.
#[derive(Default)]
pub struct Recorder {
    /// linux-dmabuf feedback objects: `done` events received.
    pub feedback_dones: HashMap<ObjectId, usize>,
    /// Heap scopes by heap feedback object ([`Client::heap_scope`]).
    pub scopes: HashMap<ObjectId, HeapScope>,
    /// The heap feedback object of each linux-dmabuf feedback object's scope.
    scope_of_dmabuf: HashMap<ObjectId, ObjectId>,
    pub configures: Vec<u32>,
    pub frames_done: usize,
    pub presented: usize,
    pub discarded: usize,
    pub released: usize,
    pub params_created: usize,
    pub params_failed: usize,
    pub preferred_scale: Option<u32>,
    /// xdg-output: (name, logical position, logical size) once name and size arrived.
    pub xdg_output: Option<XdgOutputInfo>,
    pub xdg_output_pending: XdgOutputInfo,
    /// Whether each toplevel's last configure said it is activated.
    pub activated: HashMap<ObjectId, bool>,
    /// zwp_linux_dmabuf_v1.modifier events (version 3): (format, modifier).
    pub dmabuf_modifiers: Vec<(u32, u64)>,
    /// zxdg_toplevel_decoration_v1.configure modes, in order.
    pub decoration_modes: Vec<u32>,
    /// zwlr_layer_surface_v1.configure: (serial, width, height), acked on arrival.
    pub layer_configures: Vec<(u32, u32, u32)>,
    pub layer_closed: bool,
    /// wl_pointer.enter serials.
    pub pointer_enters: Vec<u32>,
    /// zwp_keyboard_shortcuts_inhibitor_v1.active seen (and not inactive since).
    pub inhibitor_active: bool,
    /// xdg_activation_token_v1.done tokens.
    pub activation_tokens: Vec<String>,
    /// ext_idle_notification_v1 events: `true` for idled, `false` for resumed.
    pub idle_events: Vec<bool>,
    /// ext_session_lock_v1: locked (`Some(true)`) or finished (`Some(false)`).
    pub lock_answer: Option<bool>,
    /// ext_session_lock_surface_v1.configure: (serial, width, height), acked
    /// on arrival.
    pub lock_configures: Vec<(u32, u32, u32)>,
    /// zwlr_foreign_toplevel_manager_v1 handles, each as of its last done.
    pub foreign_windows: Vec<(
        wayland_protocols_wlr::foreign_toplevel::v1::client::zwlr_foreign_toplevel_handle_v1::ZwlrForeignToplevelHandleV1,
        desktop::ForeignWindow,
    )>,
    /// Each handle's events since its last done.
    pub foreign_pending: HashMap<ObjectId, desktop::ForeignWindow>,
    /// xdg_toplevel.close events received.
    pub closes: usize,
    /// xdg_popup.configure: x, y (relative to the parent), width, height.
    pub popup_configures: Vec<(i32, i32, i32, i32)>,
    /// zwlr_output_manager_v1 heads, each with its modes, in order.
    pub output_heads: Vec<(
        wayland_protocols_wlr::output_management::v1::client::zwlr_output_head_v1::ZwlrOutputHeadV1,
        Vec<wayland_protocols_wlr::output_management::v1::client::zwlr_output_mode_v1::ZwlrOutputModeV1>,
    )>,
    /// The last zwlr_output_manager_v1.done serial.
    pub output_serial: Option<u32>,
    /// zwlr_output_power_v1 events, per power object.
    pub power: HashMap<ObjectId, Vec<desktop::PowerEvent>>,
    /// zwlr_screencopy_frame_v1 events, per frame.
    pub copies: HashMap<ObjectId, Vec<desktop::CopyEvent>>,
    /// ext_image_copy_capture session and frame events, per object.
    pub captures: HashMap<ObjectId, Vec<desktop::CaptureEvent>>,
    /// wl_keyboard.enter: the surface entered.
    pub keyboard_enters: Vec<wayland_client::backend::ObjectId>,
    /// wl_keyboard.enter: its serial.
    pub keyboard_enter_serials: Vec<u32>,
}

/// A wayland-client connection with its queue and recorder.
pub struct Client {
    pub conn: Connection,
    pub queue: EventQueue<Recorder>,
    pub qh: QueueHandle<Recorder>,
    pub globals: GlobalList,
    pub rec: Recorder,
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let (conn, globals, queue) =
            heapland_test_client::connect::<Recorder>(socket).expect("connect to heapland");
        let qh = queue.handle();
        Client {
            conn,
            queue,
            qh,
            globals,
            rec: Recorder::default(),
        }
    }

    pub fn roundtrip(&mut self) -> Result<usize, DispatchError> {
        self.queue.roundtrip(&mut self.rec)
    }

    /// Roundtrips until `pred` holds or the timeout passes.
    pub fn dispatch_until(&mut self, timeout: Duration, pred: impl Fn(&Recorder) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !pred(&self.rec) {
            if Instant::now() > deadline {
                return false;
            }
            self.roundtrip().expect("roundtrip");
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Whether the registry advertised a global of this interface.
    pub fn has_global(&self, interface: &str) -> bool {
        self.globals
            .contents()
            .with_list(|list| list.iter().any(|g| g.interface == interface))
    }

    /// The name of the advertised global of this interface.
    pub fn global_name(&self, interface: &str) -> Option<u32> {
        self.globals.contents().with_list(|list| {
            list.iter()
                .find(|g| g.interface == interface)
                .map(|g| g.name)
        })
    }

    pub fn bind<I: Proxy + 'static>(&self, version: u32) -> I
    where
        Recorder: Dispatch<I, ()>,
    {
        self.globals
            .bind::<I, Recorder, ()>(&self.qh, version..=version, ())
            .unwrap_or_else(|e| panic!("bind {} v{version}: {e}", I::interface().name))
    }

    /// linux-dmabuf's version advertised: 4 or more where there is a
    /// render node, else 3.
    pub fn dmabuf_version(&self) -> u32 {
        self.globals
            .contents()
            .with_list(|l| {
                l.iter()
                    .find(|g| g.interface == "zwp_linux_dmabuf_v1")
                    .map(|g| g.version)
            })
            .expect("zwp_linux_dmabuf_v1 advertised")
    }

    /// Heap feedback of the default scope (`None`) or a surface's, with
    /// linux-dmabuf's feedback object of the same scope where linux-dmabuf
    /// has feedback, both read through the library's collector
    /// ([`HeapScope`]).
    pub fn heap_scope(
        &mut self,
        heaps: &XxDmabufHeapManagerV1,
        surface: Option<&WlSurface>,
    ) -> HeapScopeObjects {
        let with_feedback = self.dmabuf_version() >= 4;
        let dmabuf = with_feedback.then(|| {
            let dmabuf: ZwpLinuxDmabufV1 = self.bind(4);
            match surface {
                Some(s) => dmabuf.get_surface_feedback(s, &self.qh, ()),
                None => dmabuf.get_default_feedback(&self.qh, ()),
            }
        });
        let heap = match surface {
            Some(s) => heaps.get_surface_feedback(s, &self.qh, ()),
            None => heaps.get_default_feedback(&self.qh, ()),
        };
        let collector = match with_feedback {
            true => FeedbackCollector::new(),
            false => FeedbackCollector::without_dmabuf_feedback(),
        };
        self.rec.scopes.insert(
            heap.id(),
            HeapScope {
                collector,
                batches: Vec::new(),
            },
        );
        if let Some(d) = &dmabuf {
            self.rec.scope_of_dmabuf.insert(d.id(), heap.id());
        }
        HeapScopeObjects { heap, dmabuf }
    }

    /// The protocol error that ended this connection: (interface, code, message).
    pub fn protocol_error(&mut self) -> Option<(String, u32, String)> {
        let _ = self.roundtrip();
        match self.conn.protocol_error() {
            Some(e) => Some((e.object_interface, e.code, e.message)),
            None => None,
        }
    }

    /// Asserts that the connection ended with this error.
    pub fn expect_error(&mut self, interface: &str, code: u32) -> String {
        let err = self.roundtrip();
        match err {
            Err(DispatchError::Backend(WaylandError::Protocol(e))) => {
                assert_eq!(
                    (e.object_interface.as_str(), e.code),
                    (interface, code),
                    "wrong protocol error: {}",
                    e.message
                );
                e.message
            }
            other => panic!("expected protocol error {interface}#{code}, got {other:?}"),
        }
    }

    /// A wl_shm buffer of `w`x`h` filled with `xrgb`.
    pub fn shm_buffer(&self, shm: &WlShm, w: i32, h: i32, xrgb: u32) -> WlBuffer {
        self.shm_buffer_in_file(shm, w, h, xrgb).0
    }

    /// A wl_shm XRGB8888 buffer of `w`x`h` (rows of `w * 4` bytes) filled
    /// with `xrgb`, and the file it lives in, to read what the compositor
    /// wrote into it.
    pub fn shm_buffer_in_file(&self, shm: &WlShm, w: i32, h: i32, xrgb: u32) -> (WlBuffer, File) {
        heapland_test_client::shm::solid_buffer(shm, &self.qh, (w as u32, h as u32), xrgb, ())
            .expect("shm buffer")
    }

    /// Maps an xdg toplevel showing a `w`x`h` buffer of colour `xrgb`;
    /// returns the surface after the first buffer was committed.
    pub fn map_toplevel(&mut self, w: i32, h: i32, xrgb: u32) -> (WlSurface, XdgToplevel) {
        let compositor: WlCompositor = self.bind(5);
        let wm: XdgWmBase = self.bind(1);
        let shm: WlShm = self.bind(1);
        let surface = compositor.create_surface(&self.qh, ());
        let xdg = wm.get_xdg_surface(&surface, &self.qh, ());
        let toplevel = xdg.get_toplevel(&self.qh, ());
        toplevel.set_title("heapland-test".into());
        surface.commit();
        assert!(
            self.dispatch_until(Duration::from_secs(10), |r| !r.configures.is_empty()),
            "no xdg_surface.configure"
        );
        let buffer = self.shm_buffer(&shm, w, h, xrgb);
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, w, h);
        surface.commit();
        self.roundtrip().expect("roundtrip after map");
        (surface, toplevel)
    }
}

heapland_test_client::registry_events!(Recorder);

heapland_test_client::ignore_events!(
    Recorder:    WlCompositor,
    WlSubcompositor,
    WlSurface,
    WlShm,
    WlShmPool,
    WlOutput,
    WlSeat,
    WpPresentation,
    WpViewporter,
    WpViewport,
    WlSubsurface,
    WpFractionalScaleManagerV1,
    ZxdgOutputManagerV1,
    XxDmabufHeapManagerV1,
    WpSecurityContextManagerV1,
    WpSecurityContextV1
);

impl Dispatch<ZxdgOutputV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZxdgOutputV1,
        e: zxdg_output_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // Version 3 ends a batch with wl_output.done, not zxdg_output_v1.done:
        // publish the state as soon as name and size are both known.
        let p = &mut s.xdg_output_pending;
        match e {
            zxdg_output_v1::Event::Name { name } => p.0 = name,
            zxdg_output_v1::Event::LogicalPosition { x, y } => p.1 = (x, y),
            zxdg_output_v1::Event::LogicalSize { width, height } => p.2 = (width, height),
            _ => {}
        }
        if !p.0.is_empty() && p.2 != (0, 0) {
            s.xdg_output = Some(p.clone());
        }
    }
}

impl Dispatch<WlBuffer, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WlBuffer,
        e: wl_buffer::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_buffer::Event::Release = e {
            s.released += 1;
        }
    }
}

impl Dispatch<WlCallback, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WlCallback,
        e: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = e {
            s.frames_done += 1;
        }
    }
}

impl Dispatch<XdgWmBase, ()> for Recorder {
    fn event(
        _: &mut Self,
        wm: &XdgWmBase,
        e: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = e {
            wm.pong(serial);
        }
    }
}

impl Dispatch<XdgToplevel, ()> for Recorder {
    fn event(
        s: &mut Self,
        toplevel: &XdgToplevel,
        e: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_toplevel::Event::Configure { states, .. } = &e {
            let activated = states
                .chunks_exact(4)
                .any(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) == 4);
            s.activated.insert(toplevel.id(), activated);
        }
        if let xdg_toplevel::Event::Close = e {
            s.closes += 1;
        }
    }
}

impl Dispatch<XdgSurface, ()> for Recorder {
    fn event(
        s: &mut Self,
        xdg: &XdgSurface,
        e: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = e {
            xdg.ack_configure(serial);
            s.configures.push(serial);
        }
    }
}

impl Dispatch<WpPresentationFeedback, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WpPresentationFeedback,
        e: wp_presentation_feedback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            wp_presentation_feedback::Event::Presented { .. } => s.presented += 1,
            wp_presentation_feedback::Event::Discarded => s.discarded += 1,
            _ => {}
        }
    }
}

impl Dispatch<WpFractionalScaleV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WpFractionalScaleV1,
        e: wp_fractional_scale_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wp_fractional_scale_v1::Event::PreferredScale { scale } = e {
            s.preferred_scale = Some(scale);
        }
    }
}

impl Dispatch<ZwpLinuxBufferParamsV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxBufferParamsV1,
        e: zwp_linux_buffer_params_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwp_linux_buffer_params_v1::Event::Created { .. } => s.params_created += 1,
            zwp_linux_buffer_params_v1::Event::Failed => s.params_failed += 1,
            _ => {}
        }
    }

    wayland_client::event_created_child!(Recorder, ZwpLinuxBufferParamsV1, [
        zwp_linux_buffer_params_v1::EVT_CREATED_OPCODE => (WlBuffer, ()),
    ]);
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        fb: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if matches!(e, zwp_linux_dmabuf_feedback_v1::Event::Done) {
            *s.feedback_dones.entry(fb.id()).or_default() += 1;
        }
        let Some(scope) = s
            .scope_of_dmabuf
            .get(&fb.id())
            .and_then(|h| s.scopes.get_mut(h))
        else {
            return;
        };
        let fed = scope.collector.dmabuf_event(e);
        scope.gather(fed);
    }
}

impl Dispatch<XxDmabufHeapFeedbackV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        fb: &XxDmabufHeapFeedbackV1,
        e: xx_dmabuf_heap_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // Objects made without a scope (tests of protocol errors) are not read.
        if let Some(scope) = s.scopes.get_mut(&fb.id()) {
            let fed = scope.collector.heap_event(e);
            scope.gather(fed);
        }
    }
}

impl HeapScope {
    /// Records what the last event completed. An event the collector
    /// refuses fails the test there: the compositor broke the protocol.
    fn gather(&mut self, fed: Result<(), FeedbackError>) {
        if let Err(e) = fed {
            panic!("the heap protocol's events were refused by the library: {e}");
        }
        self.batches.extend(self.collector.take());
    }

    /// The last batch, which must have been joined.
    pub fn last(&self) -> &JoinedFeedback {
        match self.batches.last() {
            Some(Ok(joined)) => joined,
            Some(Err(e)) => panic!("the heap batch was refused by the library: {e}"),
            None => panic!("no heap batch yet"),
        }
    }
}

/// Number of batches (joined or refused) of a heap feedback object's scope.
pub fn heap_batches(rec: &Recorder, id: &ObjectId) -> usize {
    rec.scopes.get(id).map_or(0, |s| s.batches.len())
}

/// The last batch of a heap feedback object's scope (panics unless joined).
pub fn heap_batch<'r>(rec: &'r Recorder, id: &ObjectId) -> &'r JoinedFeedback {
    rec.scopes
        .get(id)
        .unwrap_or_else(|| panic!("{id} has no heap scope"))
        .last()
}

/// Number of `done` events on a linux-dmabuf feedback.
pub fn feedback_batches(rec: &Recorder, id: &ObjectId) -> usize {
    rec.feedback_dones.get(id).copied().unwrap_or(0)
}

/// Whether this host has DMA-BUF heaps (decides which heap events to expect).
pub fn host_has_heaps() -> bool {
    std::fs::read_dir("/dev/dma_heap")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// The dev_t of `path`'s device node.
pub fn rdev(path: &str) -> Option<u64> {
    rustix::fs::stat(path).ok().map(|st| st.st_rdev)
}

/// The DRM render node heapland takes as main device (the first
/// /dev/dri/renderD*), if this machine has one.
pub fn render_node() -> Option<u64> {
    let mut nodes: Vec<_> = std::fs::read_dir("/dev/dri")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        .map(|e| e.path())
        .collect();
    nodes.sort();
    nodes.iter().find_map(|p| rdev(p.to_str()?))
}

impl Dispatch<ZwpLinuxDmabufV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxDmabufV1,
        e: zwp_linux_dmabuf_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwp_linux_dmabuf_v1::Event::Modifier {
            format,
            modifier_hi,
            modifier_lo,
        } = e
        {
            let modifier = (u64::from(modifier_hi) << 32) | u64::from(modifier_lo);
            s.dmabuf_modifiers.push((format, modifier));
        }
    }
}

pub type Fd = OwnedFd;
