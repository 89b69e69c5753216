//! The compositor in the guest: `heapland --backend headless` runs with real
//! DMA-BUF heaps, and a wayland-client gets a heap fd through
//! `xx_dmabuf_heaps_v1`, allocates, draws, and attaches the dma-buf with
//! linux-dmabuf. The output (written to PNG on SIGUSR1) must show the
//! client's pixels, and the compositor's own output buffer must come from a
//! heap.
//!
//! How the tests know the output buffer came from the heap allocator: the
//! compositor names each output dma-buf `heapland-<output>` with
//! DMA_BUF_SET_NAME, and `/sys/kernel/debug/dma_buf/bufinfo` (the kernel's
//! list of every live dma-buf) must hold a buffer of that name with the
//! output's exact size. Only a dma-buf can appear there, so ordinary memory
//! (the host fallback) cannot pass.
//!
//! The compositor binary is copied to /bin/heapland with its libraries by
//! tests/vm/run.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use heapland_allocator::heap_feedback_client::{HeapEvent, HeapFeedbackCollector};
use heapland_protocols::v2::client::{
    xx_dmabuf_heap_feedback_v2::{self, XxDmabufHeapFeedbackV2},
    xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2,
    xx_dmabuf_heap_v2::{self, XxDmabufHeapV2},
};
use wayland_client::{
    globals::GlobalList,
    protocol::{
        wl_buffer::{self, WlBuffer},
        wl_callback::{self, WlCallback},
        wl_compositor::WlCompositor,
        wl_data_device::{self, WlDataDevice},
        wl_data_device_manager::WlDataDeviceManager,
        wl_data_offer::WlDataOffer,
        wl_data_source::WlDataSource,
        wl_keyboard::{self, WlKeyboard},
        wl_pointer::{self, WlPointer},
        wl_seat::WlSeat,
        wl_shm::WlShm,
        wl_shm_pool::WlShmPool,
        wl_surface::WlSurface,
    },
    Connection, Dispatch, EventQueue, Proxy, QueueHandle, WEnum,
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::{self, ZwpLinuxBufferParamsV1},
        zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
        zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    wp::presentation_time::client::{
        wp_presentation::{self, WpPresentation},
        wp_presentation_feedback::{self, WpPresentationFeedback},
    },
    xdg::shell::client::{
        xdg_surface::{self, XdgSurface},
        xdg_toplevel::{self, XdgToplevel},
        xdg_wm_base::{self, XdgWmBase},
    },
};

use super::{dma_buf, dma_heap, Test};

pub(super) const RUNTIME_DIR: &str = "/run/user/0";
pub(super) const SOCKET: &str = "heapland-guest";
/// The configuration of tests that run heapland without Xwayland.
const NO_X11_CONFIG: &str = "/tmp/heapland-no-x11.toml";
/// A configuration that keeps Xwayland on (the default), for tests that
/// start heapland through [`Heapland::start_with`] and want it.
pub(super) const WITH_X11_CONFIG: &str = "/tmp/heapland-with-x11.toml";
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
pub(super) const XR24: u32 = u32::from_le_bytes(*b"XR24");

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "compositor::output_buffer_from_heap",
            run: output_buffer_from_heap,
        },
        Test {
            name: "compositor::client_heap_dmabuf_in_output",
            run: client_heap_dmabuf_in_output,
        },
    ]
}

/// A running compositor, stopped (SIGTERM, then SIGKILL) on drop.
pub(super) struct Heapland {
    child: Child,
    log: PathBuf,
    pub(super) png: PathBuf,
}

impl Heapland {
    fn start() -> Result<Heapland, String> {
        let output = format!("{WIDTH}x{HEIGHT}@30");
        Self::start_with(&["--backend", "headless", "--output", &output])
    }

    /// Starts `/bin/heapland` with the backend arguments given, a private
    /// socket and a screenshot path, and waits for its socket.
    pub(super) fn start_with(backend_args: &[&str]) -> Result<Heapland, String> {
        Self::start_with_env(backend_args, &[])
    }

    /// Starts `/bin/heapland` as a user would: `args` and the socket only (the log
    /// is heapland's default, on stderr), and waits for its socket.
    pub(super) fn start_bare(args: &[&str]) -> Result<Heapland, String> {
        Self::spawn(args, &[], false)
    }

    /// [`Heapland::start_with`] with more environment variables, e.g. a library's
    /// debug switch whose output goes to the compositor's log.
    pub(super) fn start_with_env(
        backend_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Heapland, String> {
        Self::spawn(backend_args, env, true)
    }

    /// Starts heapland composing with GLES on Mesa 26.1 (the `mesa` share, see
    /// [`super::gles`]), with `backend_args`, a private socket and a screenshot path.
    pub(super) fn start_gles(backend_args: &[&str]) -> Result<Heapland, String> {
        let mut args: Vec<&str> = super::gles::MESA_LAUNCH.to_vec();
        args.push("/bin/heapland");
        args.extend_from_slice(backend_args);
        args.extend_from_slice(&["--renderer", "gles"]);
        Self::spawn_program(&args, super::gles::MESA_ENV, true)
    }

    /// Starts heapland with `args`, its socket and, when `instrumented`, an info log
    /// and a screenshot path.
    fn spawn(args: &[&str], env: &[(&str, &str)], instrumented: bool) -> Result<Heapland, String> {
        let mut program = vec!["/bin/heapland"];
        program.extend_from_slice(args);
        Self::spawn_program(&program, env, instrumented)
    }

    /// [`Heapland::spawn`] of `program[0]` with the arguments after it (heapland
    /// itself, or a loader that runs it).
    fn spawn_program(
        program: &[&str],
        env: &[(&str, &str)],
        instrumented: bool,
    ) -> Result<Heapland, String> {
        let dir = Path::new(RUNTIME_DIR);
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {RUNTIME_DIR}: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {RUNTIME_DIR}: {e}"))?;
        wait_for_socket_lock(dir)?;
        let _ = std::fs::remove_file(dir.join(SOCKET));
        let log = PathBuf::from("/tmp/heapland-compositor.log");
        let png = PathBuf::from("/tmp/heapland-output.png");
        let _ = std::fs::remove_file(&png);
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..]).args(["--socket", SOCKET]);
        if instrumented {
            cmd.args(["--log", "info"]).arg("--screenshot").arg(&png);
            // Xwayland takes seconds to start under TCG, in every heapland:
            // the tests that are not about X11 (or idleness with it) run
            // without it, by configuration as a user would turn it off.
            if !program.contains(&"--config") {
                std::fs::write(NO_X11_CONFIG, "xwayland = false\n")
                    .map_err(|e| format!("{NO_X11_CONFIG}: {e}"))?;
                cmd.args(["--config", NO_X11_CONFIG]);
            }
        }
        let child = cmd
            .env("XDG_RUNTIME_DIR", dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(File::create(&log).map_err(|e| format!("create log: {e}"))?)
            .spawn()
            .map_err(|e| {
                format!(
                    "spawn {}: {e} (is the compositor in the guest?)",
                    program[0]
                )
            })?;
        let mut comp = Heapland { child, log, png };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join(SOCKET).exists() {
            comp.alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "compositor socket never appeared:\n{}",
                    comp.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(comp)
    }

    /// Waits (up to 60 s) until Xwayland, which starts with heapland, is
    /// ready or known not to run.
    pub(super) fn wait_for_xwayland(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.alive()?;
            let log = self.log_text();
            if log.contains("Xwayland is ready on DISPLAY=") || log.contains("X11 apps cannot run")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Xwayland neither ready nor failed after 60 s:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "compositor exited ({status}):\n{}",
                self.log_text()
            )),
            _ => Ok(()),
        }
    }

    /// The compositor's process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// Stops with SIGTERM and checks the exit status.
    pub(super) fn stop(mut self) -> Result<(), String> {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "compositor exited with {status}:\n{}",
                        self.log_text()
                    ))
                };
            }
            if Instant::now() > deadline {
                return Err("compositor ignored SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until no process holds the lock of heapland's socket.
///
/// On drm, heapland's session is libseat's builtin backend (root, no seatd or
/// logind in the guest), which forks a seatd of its own: that child inherits
/// every fd heapland had open, the socket's lock file and the DRM device
/// included, and outlives heapland until it notices its parent is gone. A
/// heapland started before then cannot take the socket.
fn wait_for_socket_lock(dir: &Path) -> Result<(), String> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join(format!("{SOCKET}.lock"));
    let Ok(file) = File::open(&path) else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let _ = flock(&file, FlockOperation::Unlock);
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "{} is still locked 20 s after the last heapland: {e}",
                    path.display()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl Drop for Heapland {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(rustix::process::Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

fn output_buffer_from_heap() -> Result<(), String> {
    let mut comp = Heapland::start()?;
    // The socket exists before the outputs are set up: wait for the log line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let heap = loop {
        comp.alive()?;
        let log = comp.log_text();
        if let Some(heap) = log
            .lines()
            .find_map(|l| l.split("buffer from DMA-BUF heap ").nth(1))
        {
            break heap.trim().to_owned();
        }
        if log.contains("HEADLESS-1: 320x240") || Instant::now() > deadline {
            return Err(format!(
                "the compositor did not allocate its output from a heap:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bufinfo = std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo")
        .map_err(|e| format!("read /sys/kernel/debug/dma_buf/bufinfo: {e}"))?;
    let expected = u64::from(WIDTH * HEIGHT * 4);
    let found = bufinfo.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.last() == Some(&"heapland-HEADLESS-1")
            && fields.first().and_then(|s| s.parse::<u64>().ok()) == Some(expected)
    });
    if !found {
        return Err(format!(
            "no live dma-buf named heapland-HEADLESS-1 of {expected} bytes (heap {heap}) in bufinfo:\n{bufinfo}"
        ));
    }
    comp.stop()
}

/// Events the guest client cares about.
///
/// Feedback comes through heapland-allocator's `HeapFeedbackCollector`
/// (`xx_dmabuf_heaps_v2`), one per scope (the `u32` user data of the
/// linux-dmabuf feedback object, the heap feedback object extending it and
/// its heaps, see [`feedback_scope`]): a batch counts only once the heap
/// batch and the linux-dmabuf feedback it names are both complete, and a
/// compositor whose heap batch does not describe that feedback (tranche
/// count, targets, the compositing device, heaps announced) fails the test
/// through `feedback_error`.
#[derive(Default)]
pub(super) struct State {
    collectors: HashMap<u32, HeapFeedbackCollector>,
    /// Feedback out of step or malformed.
    pub(super) feedback_error: Option<String>,
    pub(super) heap_fd: Option<OwnedFd>,
    pub(super) heap_name: String,
    pub(super) no_heap: Option<String>,
    pub(super) heap_done: bool,
    /// Flags of the first tranche of the last batch (1: scanout).
    pub(super) first_tranche_flags: Option<u32>,
    pub(super) configured: bool,
    /// Size of the last configure (0 when the client chooses).
    pub(super) configured_size: (i32, i32),
    pub(super) frame_done: bool,
    /// Frame callbacks received so far.
    pub(super) callbacks: u32,
    /// The keyboard is on the surface: wl_keyboard.enter arrived, no leave since.
    pub(super) keyboard_entered: bool,
    /// (key, state) of wl_keyboard.key events.
    pub(super) keys: Vec<(u32, u32)>,
    /// The serial of the last wl_pointer.button press.
    pub(super) pressed: Option<u32>,
    /// linux-dmabuf feedback: tranche flags of the last joined feedback.
    pub(super) dmabuf_tranches: Option<Vec<u32>>,
    /// The linux-dmabuf part of the last joined feedback, for negotiation.
    pub(super) dmabuf_feedback: Option<heapland_allocator::negotiation::Feedback>,
    /// Tags of buffers made with a `u32` tag that the compositor released.
    pub(super) released: Vec<u32>,
    /// wp_presentation feedback made with a `u64` tag: (tag, CLOCK_MONOTONIC
    /// nanoseconds it was presented at, or `None` if discarded).
    pub(super) presented: Vec<(u64, Option<u64>)>,
    /// wp_presentation feedback's `sync_output` events: (tag, wl_output).
    pub(super) sync_outputs: Vec<(u64, wayland_client::backend::ObjectId)>,
    /// wp_presentation.clock_id.
    pub(super) presentation_clock: Option<u32>,
    /// zwp_linux_buffer_params_v1 `created` events (of `create`, not `create_immed`).
    pub(super) params_created: u32,
    /// zwp_linux_buffer_params_v1 `failed` events.
    pub(super) params_failed: u32,
    /// The buffer of the last `created` event, until taken.
    pub(super) created: Option<WlBuffer>,
    /// The outputs a tracked surface is on (`wl_surface.enter`, minus
    /// `leave`; module `hotplug`).
    pub(super) entered: Vec<wayland_client::backend::ObjectId>,
}

impl State {
    /// Forgets the last heap batch, to wait for the next one.
    pub(super) fn expect_new_batch(&mut self) {
        self.heap_done = false;
        self.heap_fd = None;
        self.no_heap = None;
    }

    /// After an event of scope `scope`: records the joined feedback, if
    /// both protocols completed it, as the latest batch.
    fn joined(&mut self, scope: u32) {
        let Some(result) = self.collectors.get_mut(&scope).and_then(|c| c.take()) else {
            return;
        };
        let joined = match result {
            Ok(j) => j,
            Err(e) => {
                self.feedback_error = Some(format!("feedback scope {scope}: {e}"));
                return;
            }
        };
        self.dmabuf_feedback = joined.dmabuf();
        self.dmabuf_tranches = Some(
            joined
                .tranches
                .iter()
                .map(|t| u32::from(t.scanout))
                .collect(),
        );
        self.first_tranche_flags = joined.tranches.first().map(|t| u32::from(t.scanout));
        match joined.tranches.into_iter().next().map(|t| t.heap) {
            Some(Ok(heap)) => {
                self.heap_fd = Some(heap.fd);
                self.heap_name = heap.name;
                self.no_heap = None;
            }
            Some(Err(no)) => {
                self.heap_fd = None;
                self.no_heap = Some(no.message);
            }
            None => {
                self.heap_fd = None;
                self.no_heap = Some("no tranche".into());
            }
        }
        self.heap_done = true;
    }
}

/// Creates the linux-dmabuf feedback object of one scope (the default
/// feedback, or `surface`'s) and the heap feedback object extending it,
/// joined by one collector. linux-dmabuf must be version 4 or later.
pub(super) fn feedback_scope(
    st: &mut State,
    qh: &QueueHandle<State>,
    dmabuf: &ZwpLinuxDmabufV1,
    heaps: &XxDmabufHeapManagerV2,
    surface: Option<&WlSurface>,
) -> (ZwpLinuxDmabufFeedbackV1, XxDmabufHeapFeedbackV2) {
    let scope = st.collectors.len() as u32;
    st.collectors.insert(scope, HeapFeedbackCollector::new());
    let linux = match surface {
        Some(s) => dmabuf.get_surface_feedback(s, qh, scope),
        None => dmabuf.get_default_feedback(qh, scope),
    };
    let heap = heaps.get_heap_feedback(&linux, qh, scope);
    (linux, heap)
}

/// A client connection to the guest's heapland, with the globals it announced.
pub(super) fn connect() -> Result<(Connection, GlobalList, EventQueue<State>), String> {
    heapland_test_client::connect(&Path::new(RUNTIME_DIR).join(SOCKET))
}

/// Binds the global `I` at a version in `versions`; the error names the interface.
pub(super) fn bind<I>(
    globals: &GlobalList,
    qh: &QueueHandle<State>,
    versions: std::ops::RangeInclusive<u32>,
) -> Result<I, String>
where
    I: Proxy + 'static,
    State: Dispatch<I, ()>,
{
    heapland_test_client::bind(globals, qh, versions)
}

fn client_heap_dmabuf_in_output() -> Result<(), String> {
    let mut comp = Heapland::start()?;
    let (conn, globals, mut queue) = connect()?;
    let qh = queue.handle();
    let mut st = State::default();
    let compositor: WlCompositor = bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = bind(&globals, &qh, 1..=1)?;
    let dmabuf: ZwpLinuxDmabufV1 = bind(&globals, &qh, 6..=6)?;
    let heaps: XxDmabufHeapManagerV2 = bind(&globals, &qh, 1..=1)?;

    // 1. The heap for the default feedback's first tranche, as an fd; the
    // heap batch must describe the linux-dmabuf feedback it names
    // (HeapFeedbackCollector).
    let _default = feedback_scope(&mut st, &qh, &dmabuf, &heaps, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !st.heap_done {
        queue
            .roundtrip(&mut st)
            .map_err(|e| format!("roundtrip: {e}"))?;
        if let Some(err) = &st.feedback_error {
            return Err(err.clone());
        }
        if Instant::now() > deadline {
            return Err("no heap feedback batch".into());
        }
    }
    let default_flags = st.dmabuf_tranches.clone().unwrap_or_default();
    if default_flags.is_empty() || default_flags.contains(&1) {
        return Err(format!(
            "headless default feedback: tranche flags {default_flags:?}, want tranches without scanout"
        ));
    }
    // heapland-allocator negotiates a buffer against heapland's own feedback.
    {
        use heapland_allocator::{
            drm_fourcc::DrmFourcc,
            negotiation::{negotiate, Request, Usage},
            Discovery,
        };
        let feedback = st
            .dmabuf_feedback
            .clone()
            .ok_or("joined feedback without its linux-dmabuf part")?;
        let request = Request::new(
            64,
            48,
            vec![DrmFourcc::Xrgb8888],
            Usage {
                cpu: true,
                ..Default::default()
            },
        );
        let n = negotiate(&Discovery::scan(), &feedback, &request)
            .map_err(|e| format!("negotiating against heapland's own feedback: {e}"))?;
        println!(
            "INFO compositor: heapland-allocator negotiates heapland's default feedback: tranche {}, heap {}, stride {}",
            n.tranche, n.heap.name, n.layout.planes[0].stride
        );
    }
    let heap_fd = match (st.heap_fd.take(), &st.no_heap) {
        (Some(fd), _) => fd,
        (None, Some(msg)) => return Err(format!("compositor sent no heap: {msg}")),
        (None, None) => return Err("heap batch without heap or no_heap".into()),
    };

    // 2. Allocate, draw a solid colour with CPU access bracketed by SYNC.
    let (w, h) = (64u32, 48u32);
    let stride = w * 4;
    let len = u64::from(stride * h);
    let buf = dma_heap::alloc(heap_fd.as_fd(), len)
        .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC from {}: {e}", st.heap_name))?;
    let colour: u32 = 0x00c0_ff20; // XRGB: R=0xc0 G=0xff B=0x20
    {
        let mut map = dma_buf::Mapping::new(buf.as_fd(), len as usize)?;
        dma_buf::sync(buf.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("sync start: {e}"))?;
        map.words_mut().fill(colour);
        dma_buf::sync(buf.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("sync end: {e}"))?;
    }

    // 3. linux-dmabuf buffer on an xdg toplevel.
    let params = dmabuf.create_params(&qh, ());
    params.add(buf.as_fd(), 0, 0, stride, 0, 0);
    let buffer = params.create_immed(
        w as i32,
        h as i32,
        XR24,
        zwp_linux_buffer_params_v1::Flags::empty(),
        &qh,
        (),
    );
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let _toplevel = xdg.get_toplevel(&qh, ());
    // The surface's feedback, on both protocols in step: on headless the
    // same tranches as the default feedback.
    st.expect_new_batch();
    let _surface_scope = feedback_scope(&mut st, &qh, &dmabuf, &heaps, Some(&surface));
    surface.commit();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !st.configured || !st.heap_done {
        queue
            .roundtrip(&mut st)
            .map_err(|e| format!("roundtrip: {e}"))?;
        if let Some(err) = &st.feedback_error {
            return Err(err.clone());
        }
        if Instant::now() > deadline {
            return Err("no configure or no surface feedback".into());
        }
    }
    if st.dmabuf_tranches.as_ref() != Some(&default_flags) {
        return Err(format!(
            "headless surface feedback {:?} differs from the default {default_flags:?}",
            st.dmabuf_tranches
        ));
    }
    println!(
        "INFO compositor: default and surface feedback in step on both protocols ({} tranches)",
        default_flags.len()
    );
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w as i32, h as i32);
    surface.frame(&qh, ());
    surface.commit();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !st.frame_done {
        queue.roundtrip(&mut st).map_err(|e| {
            format!(
                "roundtrip after attaching the dma-buf: {e}\n{}",
                comp.log_text()
            )
        })?;
        comp.alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "no frame callback after attaching the dma-buf:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // 4. The output shows the client's pixels.
    comp.signal(rustix::process::Signal::USR1);
    let want = [0xc0u8, 0xff, 0x20];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((pw, rgb)) = read_png(&comp.png) {
            let px = |x: u32, y: u32| {
                let i = ((y * pw + x) * 3) as usize;
                [rgb[i], rgb[i + 1], rgb[i + 2]]
            };
            if px(10, 10) == want && px(w - 1, h - 1) == want && px(w + 5, h + 5) != want {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "output pixel (10,10) is {:?}, want {want:?} (heap {})",
                    px(10, 10),
                    st.heap_name
                ));
            }
        } else if Instant::now() > deadline {
            return Err(format!("no screenshot written:\n{}", comp.log_text()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(buffer);
    drop(conn);
    comp.stop()
}

/// Decodes a PNG with at least three channels (heapland's are RGB, grim's
/// may carry alpha): (width, RGB pixels).
pub(super) fn read_png(path: &Path) -> Option<(u32, Vec<u8>)> {
    let mut decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).ok()?));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    let channels = info.color_type.samples();
    if channels < 3 {
        return None;
    }
    buf.truncate(info.buffer_size());
    let rgb = if channels == 3 {
        buf
    } else {
        buf.chunks_exact(channels)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    };
    Some((info.width, rgb))
}

/// Debian's grim (wlr-screencopy), from the host's /usr, captures the
/// output of the running heapland: (width, RGB pixels).
/// Writes a fontconfig file in `dir` (the guest has no /etc/fonts):
/// Debian's fonts from the host's /usr, a cache in `dir`. Its path, for
/// `FONTCONFIG_FILE`.
pub(super) fn fonts_conf(dir: &str) -> Result<String, String> {
    let fonts = format!("{dir}/fonts.conf");
    std::fs::write(
        &fonts,
        format!(
            "<?xml version=\"1.0\"?>\n<fontconfig><dir>/usr/share/fonts</dir>\
             <cachedir>{dir}/cache</cachedir></fontconfig>\n"
        ),
    )
    .map_err(|e| format!("{fonts}: {e}"))?;
    Ok(fonts)
}

/// Runs `command` (stdin empty) for at most `limit`: its output, or why
/// not. A client waiting for a compositor that stopped answering is killed
/// rather than left to hang the phase.
pub(super) fn run_bounded(
    command: &mut std::process::Command,
    limit: Duration,
) -> Result<std::process::Output, String> {
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let out_path = format!("/tmp/heapland-bounded-{}.out", std::process::id());
    let err_path = format!("/tmp/heapland-bounded-{}.err", std::process::id());
    let file = |p: &str| File::create(p).map_err(|e| format!("{p}: {e}"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .spawn()
        .map_err(|e| format!("run {program}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{program}: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{program} did not finish in {} s: {}",
                limit.as_secs(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    })
}

pub(super) fn grim(comp: &mut Heapland) -> Result<(u32, Vec<u8>), String> {
    grim_with(comp, &[])
}

/// grim with `args` (`-c`: with the cursor) before the file name.
pub(super) fn grim_with(comp: &mut Heapland, args: &[&str]) -> Result<(u32, Vec<u8>), String> {
    let path = Path::new("/tmp/heapland-grim.png");
    let _ = std::fs::remove_file(path);
    let mut grim = std::process::Command::new("/usr/bin/grim");
    grim.args(args)
        .arg(path)
        .env("XDG_RUNTIME_DIR", RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", SOCKET);
    let out = run_bounded(&mut grim, Duration::from_secs(30)).map_err(|e| {
        format!(
            "grim: {e}\n{}\n{}",
            comp.log_text(),
            super::input::where_it_waits(comp.pid())
        )
    })?;
    comp.alive()?;
    if !out.status.success() {
        return Err(format!(
            "grim: {}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            comp.log_text()
        ));
    }
    read_png(path).ok_or_else(|| "grim wrote no readable PNG".to_owned())
}

heapland_test_client::registry_events!(State);

heapland_test_client::ignore_events!(
    State:
    WlCompositor,
    WlSurface,
    WlBuffer,
    WlShm,
    WlShmPool,
    WlSeat,
    WlDataDeviceManager,
    WlDataOffer,
    WlDataSource,
    ZwpLinuxDmabufV1,
    XxDmabufHeapManagerV2
);

impl Dispatch<WlKeyboard, ()> for State {
    fn event(
        s: &mut Self,
        _: &WlKeyboard,
        e: wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            wl_keyboard::Event::Enter { .. } => s.keyboard_entered = true,
            wl_keyboard::Event::Leave { .. } => s.keyboard_entered = false,
            wl_keyboard::Event::Key { key, state, .. } => {
                let state = match state {
                    WEnum::Value(v) => u32::from(v),
                    WEnum::Unknown(raw) => raw,
                };
                s.keys.push((key, state));
            }
            _ => {}
        }
    }
}

/// Offers (a drag entering the client's own window) are not taken.
impl Dispatch<WlDataDevice, ()> for State {
    fn event(
        _: &mut Self,
        _: &WlDataDevice,
        _: wl_data_device::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }

    wayland_client::event_created_child!(State, WlDataDevice, [
        wl_data_device::EVT_DATA_OFFER_OPCODE => (WlDataOffer, ()),
    ]);
}

impl Dispatch<WlPointer, ()> for State {
    fn event(
        s: &mut Self,
        _: &WlPointer,
        e: wl_pointer::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_pointer::Event::Button {
            serial,
            state: WEnum::Value(wl_pointer::ButtonState::Pressed),
            ..
        } = e
        {
            s.pressed = Some(serial);
        }
    }
}

impl Dispatch<ZwpLinuxBufferParamsV1, ()> for State {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxBufferParamsV1,
        e: zwp_linux_buffer_params_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwp_linux_buffer_params_v1::Event::Created { buffer } => {
                s.params_created += 1;
                s.created = Some(buffer);
            }
            zwp_linux_buffer_params_v1::Event::Failed => s.params_failed += 1,
            _ => {}
        }
    }

    wayland_client::event_created_child!(State, ZwpLinuxBufferParamsV1, [
        zwp_linux_buffer_params_v1::EVT_CREATED_OPCODE => (WlBuffer, ()),
    ]);
}

impl Dispatch<ZwpLinuxDmabufFeedbackV1, u32> for State {
    fn event(
        s: &mut Self,
        _: &ZwpLinuxDmabufFeedbackV1,
        e: zwp_linux_dmabuf_feedback_v1::Event,
        scope: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(c) = s.collectors.get_mut(scope) else {
            return;
        };
        if let Err(err) = c.dmabuf_event(e) {
            s.feedback_error = Some(format!("feedback scope {scope}: {err}"));
        }
        s.joined(*scope);
    }
}

impl Dispatch<XdgToplevel, ()> for State {
    fn event(
        s: &mut Self,
        _: &XdgToplevel,
        e: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_toplevel::Event::Configure { width, height, .. } = e {
            s.configured_size = (width, height);
        }
    }
}

impl Dispatch<XdgWmBase, ()> for State {
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

impl Dispatch<XdgSurface, ()> for State {
    fn event(
        s: &mut Self,
        x: &XdgSurface,
        e: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = e {
            x.ack_configure(serial);
            s.configured = true;
        }
    }
}

impl Dispatch<WlCallback, ()> for State {
    fn event(
        s: &mut Self,
        _: &WlCallback,
        e: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = e {
            s.frame_done = true;
            s.callbacks += 1;
        }
    }
}

impl Dispatch<WlBuffer, u32> for State {
    fn event(
        s: &mut Self,
        _: &WlBuffer,
        e: wl_buffer::Event,
        tag: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_buffer::Event::Release = e {
            s.released.push(*tag);
        }
    }
}

impl Dispatch<WpPresentation, ()> for State {
    fn event(
        s: &mut Self,
        _: &WpPresentation,
        e: wp_presentation::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wp_presentation::Event::ClockId { clk_id } = e {
            s.presentation_clock = Some(clk_id);
        }
    }
}

impl Dispatch<WpPresentationFeedback, u64> for State {
    fn event(
        s: &mut Self,
        _: &WpPresentationFeedback,
        e: wp_presentation_feedback::Event,
        tag: &u64,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            wp_presentation_feedback::Event::Presented {
                tv_sec_hi,
                tv_sec_lo,
                tv_nsec,
                ..
            } => {
                let secs = (u64::from(tv_sec_hi) << 32) | u64::from(tv_sec_lo);
                s.presented
                    .push((*tag, Some(secs * 1_000_000_000 + u64::from(tv_nsec))));
            }
            wp_presentation_feedback::Event::Discarded => s.presented.push((*tag, None)),
            wp_presentation_feedback::Event::SyncOutput { output } => {
                s.sync_outputs.push((*tag, output.id()))
            }
            _ => {}
        }
    }
}

impl Dispatch<XxDmabufHeapFeedbackV2, u32> for State {
    fn event(
        s: &mut Self,
        _: &XxDmabufHeapFeedbackV2,
        e: xx_dmabuf_heap_feedback_v2::Event,
        scope: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let (Some(c), Some(e)) = (s.collectors.get_mut(scope), HeapEvent::from_wire(e)) else {
            return;
        };
        if let Err(err) = c.heap_event(e) {
            s.feedback_error = Some(format!("feedback scope {scope}: {err}"));
        }
        s.joined(*scope);
    }

    wayland_client::event_created_child!(State, XxDmabufHeapFeedbackV2, [
        xx_dmabuf_heap_feedback_v2::EVT_HEAP_OPCODE => (XxDmabufHeapV2, u32::MAX),
    ]);
}

/// Heap objects: `removed` goes to every collector (protocol ids are unique
/// among live objects, and a collector knows only its own heaps).
impl Dispatch<XxDmabufHeapV2, u32> for State {
    fn event(
        s: &mut Self,
        heap: &XxDmabufHeapV2,
        e: xx_dmabuf_heap_v2::Event,
        _: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xx_dmabuf_heap_v2::Event::Removed = e {
            for c in s.collectors.values_mut() {
                c.heap_removed(heap.id().protocol_id());
            }
        }
    }
}
