//! heapland-bench: what one buffer costs from every memory source, side by side
//! in one guest run, as ratios.
//!
//! Sizes: 1920x1080 XRGB8888, 1280x720 NV12 and 3840x2160 XRGB8888, laid out by
//! heapland-allocator (`Layout`, default alignment). Candidates:
//!
//! - every device heap discovery lists (contiguous and scatter-gather);
//! - the kernel's `system` heap (the reference of `x system`), and its CMA
//!   heaps where the kernel has any;
//! - udmabuf (memfd + `UDMABUF_CREATE`);
//! - DRM dumb buffers on vkms (`CREATE_DUMB` + `MAP_DUMB`);
//! - GBM on vkms, through heapland-bench-gbm, a glibc helper this static binary
//!   runs as a child and drives over a pipe (it times each buffer itself, the
//!   same way);
//! - `memset`: an anonymous private mapping of the same size, every byte
//!   written, unmapped (the floor, the reference of `x memset`).
//!
//! Each buffer is timed from allocation to free: allocate, mmap, write one byte
//! in every page (inside a `DMA_BUF_IOCTL_SYNC` bracket where the source has
//! one), munmap, free. The candidates run interleaved: every round runs each
//! once, in an order rotated by one per round, after warm-up rounds that are
//! not counted; per candidate the median, minimum and 90th percentile of the
//! rounds are printed, and the ratio of medians to the system heap and to the
//! floor. Device heaps with the same backing and contig_source take the same
//! code path: where their medians differ beyond the tolerance, a `WARN` line
//! names them (the run goes on, it is a benchmark).
//!
//! Then the compositor's steady state (tests/src/guest/steady_state.rs): heapland
//! headless and on vkms (heap and GBM scanout buffers), each with a full-screen
//! dma-buf client and a wl_shm client redrawing every frame; heapland's own
//! `--stats` totals give buffers allocated per frame and CPU time per frame.
//! Then camera to display (tests/src/guest/camera_latency.rs, run by the glibc helper
//! heapland-bench-camera): vivid's capture timestamp to the page flip, zero-copy heap
//! path against a copy into GBM buffers, with bytes copied per frame.
//! `--only` picks the parts.
//!
//! Output: `TABLE` lines (the table for people), `WARN` lines and `BENCH`
//! lines (for tests/vm/run and heapland-plot; format in
//! heapland_tests::bench). Asserts nothing about time; exits non-zero if any
//! candidate has no numbers (its row says why).

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use drm::control::Device as _;
use heapland_allocator::{
    drm_fourcc::DrmFourcc as Fourcc, Alignment, DeviceNumber, Discovery, DmaHeap, HeapInfo,
    HeapKind, Layout,
};
use heapland_tests::{
    bench::{gbm_protocol as proto, ms, quote, ratio, touch, Stats, GOAL_SIZES},
    guest::{dma_buf, peers::Peer, steady_state},
};

const USAGE: &str = "\
usage: heapland-bench [--rounds N] [--warmup N] [--tolerance F] [--boot NAME]
                      [--gbm-helper PATH] [--gbm-card PATH] [--gbm-timeout SECS]
  --rounds N        counted rounds per size (default 31)
  --warmup N        rounds run first and not counted (default 3)
  --tolerance F     allowed relative difference of medians between device heaps
                    with the same backing and contig_source (default 0.10)
  --boot NAME       boot name in BENCH lines (default: /etc/heapland/boot, else
                    the kernel release)
  --gbm-helper PATH the GBM helper (default: heapland-bench-gbm beside this
                    binary, else in PATH)
  --gbm-card PATH   the DRM node GBM allocates on (default: vkms's card)
  --gbm-timeout S   how long the helper may take to start (Mesa loads its
                    driver then) and to answer (default 180)
  --only PARTS      comma-separated parts to run: alloc (buffer allocation),
                    steady (the compositor's steady state), camera
                    (camera to display, heapland-bench-camera), peers
                    (heapland, weston and sway side by side); default all
  --steady-rounds N runs of each steady-state case, interleaved (default 3)
  --steady-secs S   measured seconds per run, after 2 s of warm-up (default 5)
  --camera-rounds N runs of each camera-to-display path, alternating (default 5)
  --camera-frames N measured frames per camera run (default 60)
  --peer-rounds N   runs of each compositor in the peers part (default 3)
  --peer-log LEVEL  heapland's RUST_LOG in the peers part (e.g. debug), to see
                    what it does while idle (its numbers then include the logging)
  --peer-gdb        run heapland under gdb -batch in the peers part, so that a
                    crash shows its backtrace (its numbers are then gdb's)
  --peers NAMES     comma-separated compositors of the peers part (default all:
                    heapland-gles, heapland-pixman, weston-gl, weston-pixman,
                    sway-gles2, sway-pixman)
Defaults can also come from HEAPLAND_BENCH_ROUNDS, HEAPLAND_BENCH_WARMUP and
HEAPLAND_BENCH_TOLERANCE, HEAPLAND_BENCH_STEADY_ROUNDS,
HEAPLAND_BENCH_STEADY_SECS, HEAPLAND_BENCH_CAMERA_ROUNDS,
HEAPLAND_BENCH_CAMERA_FRAMES and HEAPLAND_BENCH_PEER_ROUNDS.";

struct Args {
    rounds: usize,
    warmup: usize,
    tolerance: f64,
    boot: String,
    gbm_helper: Option<PathBuf>,
    gbm_card: Option<PathBuf>,
    gbm_timeout: Duration,
    parts: Parts,
    steady_rounds: usize,
    steady_secs: f64,
    camera_rounds: usize,
    camera_frames: usize,
    peer_rounds: usize,
    peers: Vec<Peer>,
}

/// Which parts of the benchmark run.
#[derive(Clone, Copy)]
struct Parts {
    alloc: bool,
    steady: bool,
    camera: bool,
    peers: bool,
}

impl Parts {
    fn parse(list: &str) -> Result<Parts, String> {
        let mut p = Parts {
            alloc: false,
            steady: false,
            camera: false,
            peers: false,
        };
        for part in list.split(',') {
            match part {
                "alloc" => p.alloc = true,
                "steady" => p.steady = true,
                "camera" => p.camera = true,
                "peers" => p.peers = true,
                _ => {
                    return Err(format!(
                        "--only {list}: unknown part {part:?} (alloc, steady, camera, peers)"
                    ))
                }
            }
        }
        Ok(p)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v}: not a number")),
        Err(_) => Ok(default),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: env_or("HEAPLAND_BENCH_ROUNDS", 31)?,
        warmup: env_or("HEAPLAND_BENCH_WARMUP", 3)?,
        tolerance: env_or("HEAPLAND_BENCH_TOLERANCE", 0.10)?,
        boot: String::new(),
        gbm_helper: None,
        gbm_card: None,
        gbm_timeout: Duration::from_secs(180),
        parts: Parts {
            alloc: true,
            steady: true,
            camera: true,
            peers: true,
        },
        camera_rounds: env_or("HEAPLAND_BENCH_CAMERA_ROUNDS", 5)?,
        peer_rounds: env_or("HEAPLAND_BENCH_PEER_ROUNDS", 3)?,
        peers: Peer::all().to_vec(),
        camera_frames: env_or("HEAPLAND_BENCH_CAMERA_FRAMES", 60)?,
        steady_rounds: env_or("HEAPLAND_BENCH_STEADY_ROUNDS", 3)?,
        steady_secs: env_or("HEAPLAND_BENCH_STEADY_SECS", 5.0)?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{a} {v}: not a number"))
        };
        match a.as_str() {
            "--rounds" => args.rounds = num(value(&a)?)? as usize,
            "--warmup" => args.warmup = num(value(&a)?)? as usize,
            "--tolerance" => args.tolerance = num(value(&a)?)?,
            "--boot" => args.boot = value(&a)?,
            "--gbm-helper" => args.gbm_helper = Some(value(&a)?.into()),
            "--gbm-card" => args.gbm_card = Some(value(&a)?.into()),
            "--gbm-timeout" => args.gbm_timeout = Duration::from_secs_f64(num(value(&a)?)?),
            "--only" => args.parts = Parts::parse(&value(&a)?)?,
            "--steady-rounds" => args.steady_rounds = num(value(&a)?)? as usize,
            "--steady-secs" => args.steady_secs = num(value(&a)?)?,
            "--camera-rounds" => args.camera_rounds = num(value(&a)?)? as usize,
            "--camera-frames" => args.camera_frames = num(value(&a)?)? as usize,
            "--peer-rounds" => args.peer_rounds = num(value(&a)?)? as usize,
            "--peer-gdb" => heapland_tests::guest::peers::run_heapland_under_gdb(true),
            "--peer-log" => heapland_tests::guest::peers::heapland_log_level(&value(&a)?),
            "--peers" => {
                args.peers = value(&a)?
                    .split(',')
                    .map(|name| {
                        Peer::all()
                            .into_iter()
                            .find(|p| p.name() == name)
                            .ok_or_else(|| format!("--peers: unknown compositor {name:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if args.steady_rounds == 0 || args.steady_secs < 1.0 {
        return Err("--steady-rounds must be at least 1 and --steady-secs at least 1".into());
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if args.boot.is_empty() {
        args.boot = read_trimmed("/etc/heapland/boot")
            .or_else(|| read_trimmed("/proc/sys/kernel/osrelease"))
            .unwrap_or_else(|| "unknown".into());
    }
    // A boot name is one word of the BENCH lines.
    args.boot = args.boot.replace(char::is_whitespace, "_");
    Ok(args)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

// --- the sizes ---------------------------------------------------------------------------

struct Size {
    /// `1920x1080-XRGB8888`, one word of the BENCH lines.
    token: String,
    fourcc: Fourcc,
    /// `XRGB8888`, as the helper and people read it.
    format: &'static str,
    width: u32,
    height: u32,
    /// Bytes every candidate allocates: the layout's size in whole pages.
    len: u64,
}

fn sizes() -> Result<Vec<Size>, String> {
    [
        (Fourcc::Xrgb8888, "XRGB8888", 1920, 1080),
        (Fourcc::Nv12, "NV12", 1280, 720),
        (Fourcc::Xrgb8888, "XRGB8888", 3840, 2160),
    ]
    .into_iter()
    .map(|(fourcc, name, width, height)| {
        let layout = Layout::new(fourcc, width, height, Alignment::default())
            .map_err(|e| format!("{width}x{height} {name}: {e}"))?;
        Ok(Size {
            token: format!("{width}x{height}-{name}"),
            fourcc,
            format: name,
            width,
            height,
            len: layout.alloc_size(),
        })
    })
    .collect()
}

// --- DRM -----------------------------------------------------------------------------------

struct Card(OwnedFd);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for Card {}
impl drm::control::Device for Card {}

/// The /dev/dri/card* node whose device is `name`.
fn card_of(d: &Discovery, name: &str) -> Result<PathBuf, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map_err(|e| format!("cannot list /dev/dri: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("card"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .find(|p| {
            DeviceNumber::of_path(p)
                .ok()
                .and_then(|n| d.resolve(n).ok())
                .is_some_and(|i| i.name == name)
        })
        .ok_or_else(|| format!("no /dev/dri/card* of {name}"))
}

fn open_card(path: &Path) -> Result<Card, String> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map(Card)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// Dumb buffers have no YUV formats: NV12 is the usual 8 bpp buffer of
/// height * 3 / 2 rows (what GBM falls back to as well).
fn dumb_shape(size: &Size) -> ((u32, u32), u32) {
    match size.fourcc {
        Fourcc::Nv12 => ((size.width, size.height * 3 / 2), 8),
        _ => ((size.width, size.height), 32),
    }
}

// --- the GBM helper ------------------------------------------------------------------------

/// heapland-bench-gbm, started once, asked for one buffer at a time.
struct GbmChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    pending: Vec<u8>,
    stderr_path: PathBuf,
    timeout: Duration,
}

impl GbmChild {
    /// Starts the helper on `card`; returns it and its GBM backend's name.
    fn spawn(helper: &Path, card: &Path, timeout: Duration) -> Result<(GbmChild, String), String> {
        let stderr_path = std::env::temp_dir().join("heapland-bench-gbm.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
        let mut child = Command::new(helper)
            .arg(card)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {}: {e} (a glibc binary: its dynamic loader \
                     /lib64/ld-linux-x86-64.so.2 must exist in the guest)",
                    helper.display()
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut me = GbmChild {
            child,
            stdin,
            stdout,
            pending: Vec::new(),
            stderr_path,
            timeout,
        };
        let line = me.read_line()?;
        match line.split_once(' ') {
            Some((proto::READY, backend)) => Ok((me, backend.to_owned())),
            _ => Err(me.failed(&line)),
        }
    }

    /// Sends one command and returns what follows `ok ` in the answer.
    fn request(&mut self, command: &str) -> Result<String, String> {
        let sent = self
            .stdin
            .as_mut()
            .ok_or_else(|| "helper already stopped".to_owned())
            .and_then(|s| {
                writeln!(s, "{command}")
                    .and_then(|()| s.flush())
                    .map_err(|e| format!("write to helper: {e}"))
            });
        if let Err(e) = sent {
            return Err(self.failed(&e));
        }
        let line = self.read_line()?;
        match line.split_once(' ') {
            Some((proto::OK, rest)) => Ok(rest.to_owned()),
            Some((proto::ERROR, why)) => Err(why.to_owned()),
            _ => Err(self.failed(&format!("unexpected answer {line:?}"))),
        }
    }

    fn read_line(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.failed(&format!(
                    "no answer from the helper in {} s",
                    self.timeout.as_secs()
                )));
            }
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [rustix::event::PollFd::new(
                &self.stdout,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(self.failed(&format!("poll: {e}"))),
            }
            let mut buf = [0u8; 4096];
            match self.stdout.read(&mut buf) {
                Ok(0) => return Err(self.failed("the helper exited")),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failed(&format!("read from helper: {e}"))),
            }
        }
    }

    /// Stops the helper and says why it failed: `what`, its exit status and
    /// the end of what it printed on stderr.
    fn failed(&mut self, what: &str) -> String {
        // End of input stops a helper that still reads; one that does not
        // answer is killed after a second.
        self.stdin = None;
        let mut status = None;
        for _ in 0..50 {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s.to_string());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            match self.child.wait() {
                Ok(s) => format!("killed, {s}"),
                Err(e) => e.to_string(),
            }
        });
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        let what = what.strip_prefix("error ").unwrap_or(what);
        if tail.is_empty() {
            format!("{what} ({status})")
        } else {
            format!("{what} ({status}; stderr: {tail})")
        }
    }
}

impl Drop for GbmChild {
    fn drop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = writeln!(s, "{}", proto::QUIT);
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_helper(explicit: Option<&Path>) -> Result<PathBuf, String> {
    find_glibc_helper(explicit, "heapland-bench-gbm")
}

/// A glibc helper binary: `explicit`, else beside this binary, else in PATH.
fn find_glibc_helper(explicit: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let in_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(in_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} is not in the guest (the glibc helper is built for the host target \
                 and copied beside heapland-bench)"
            )
        })
}

// --- the candidates ------------------------------------------------------------------------

enum Work {
    Heap(HeapInfo, DmaHeap),
    Dumb(Card),
    Gbm(GbmChild),
    Memset,
}

struct Candidate {
    name: String,
    kind: &'static str,
    /// `backing=.. source=.. dma=..` of device heaps.
    extra: Vec<(&'static str, String)>,
    /// The agreement group: device heaps with the same backing and source.
    group: Option<String>,
    dma_bits: Option<u32>,
    /// What to run, or why it cannot run at all.
    work: Result<Work, String>,
}

impl Candidate {
    fn new(name: impl Into<String>, kind: &'static str, work: Result<Work, String>) -> Self {
        Candidate {
            name: name.into(),
            kind,
            extra: Vec::new(),
            group: None,
            dma_bits: None,
            work,
        }
    }
}

fn candidates(d: &Discovery, args: &Args) -> Vec<Candidate> {
    let mut out = Vec::new();
    for info in d.heaps() {
        let kind = match info.kind {
            HeapKind::Device => "device",
            HeapKind::System => "system",
            HeapKind::Cma => "cma",
            HeapKind::Udmabuf => "udmabuf",
            HeapKind::Other => {
                println!(
                    "TABLE heap {} left out: nothing is known about its memory",
                    info.name
                );
                continue;
            }
        };
        let mut c = Candidate::new(
            info.name.clone(),
            kind,
            info.open()
                .map(|heap| Work::Heap(info.clone(), heap))
                .map_err(|e| e.to_string()),
        );
        if info.kind == HeapKind::Device {
            let backing = if info.properties.contiguous {
                "contig"
            } else {
                "sg"
            };
            let source = info.contig_source.clone().unwrap_or_else(|| "-".into());
            c.group = Some(format!("{backing} {source}"));
            c.dma_bits = info.properties.dma_mask_bits;
            c.extra = vec![("backing", backing.into()), ("source", source)];
            if let Some(bits) = info.properties.dma_mask_bits {
                c.extra.push(("dma", bits.to_string()));
            }
        }
        out.push(c);
    }
    for s in d.skipped() {
        println!("TABLE heap {} left out by discovery: {}", s.name, s.reason);
    }
    if !out.iter().any(|c| c.kind == "system") {
        out.push(Candidate::new(
            "system",
            "system",
            Err("the kernel has no system heap (/dev/dma_heap/system)".into()),
        ));
    }
    if !out.iter().any(|c| c.kind == "udmabuf") {
        out.push(Candidate::new(
            "udmabuf",
            "udmabuf",
            Err("no /dev/udmabuf".into()),
        ));
    }

    let card = card_of(d, "vkms");
    out.push(Candidate::new(
        "dumb@vkms",
        "dumb",
        card.clone().and_then(|p| open_card(&p)).map(Work::Dumb),
    ));
    let gbm_card = match &args.gbm_card {
        Some(p) => Ok(p.clone()),
        None => card,
    };
    let gbm = gbm_card.and_then(|card| {
        let helper = find_helper(args.gbm_helper.as_deref())?;
        let started = Instant::now();
        let (child, backend) = GbmChild::spawn(&helper, &card, args.gbm_timeout)?;
        println!(
            "TABLE GBM on {}: helper {} started in {:.1} s, backend {backend}",
            card.display(),
            helper.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(Work::Gbm(child))
    });
    out.push(Candidate::new("gbm@vkms", "gbm", gbm));
    out.push(Candidate::new("memset", "memset", Ok(Work::Memset)));
    out
}

/// Gets the candidate ready for `size`: `Ok(note)` or why it cannot do it.
fn prepare(work: &mut Work, size: &Size) -> Result<Option<String>, String> {
    match work {
        Work::Gbm(child) => child
            .request(&format!(
                "{} {} {} {}",
                proto::PREPARE,
                size.width,
                size.height,
                size.format
            ))
            .map(Some),
        Work::Dumb(_) => {
            let ((w, h), bpp) = dumb_shape(size);
            Ok(Some(format!("{w}x{h} at {bpp} bpp")))
        }
        Work::Heap(..) | Work::Memset => Ok(None),
    }
}

/// One buffer: allocate, map, touch every page, unmap, free. Returns the time
/// it took.
fn once(work: &mut Work, size: &Size) -> Result<Duration, String> {
    let len = size.len;
    match work {
        Work::Heap(_, heap) => {
            let t = Instant::now();
            {
                let fd = heap.allocate(len).map_err(|e| e.to_string())?;
                let mut map = dma_buf::Mapping::new(&fd, len as usize)?;
                let sync = |flags| {
                    dma_buf::sync(fd.as_fd(), flags | dma_buf::SYNC_RW)
                        .map_err(|e| format!("DMA_BUF_IOCTL_SYNC: {e}"))
                };
                sync(dma_buf::SYNC_START)?;
                touch(map.bytes_mut());
                sync(dma_buf::SYNC_END)?;
            }
            Ok(t.elapsed())
        }
        Work::Dumb(card) => {
            let (shape, bpp) = dumb_shape(size);
            let t = Instant::now();
            let mut db = card
                .create_dumb_buffer(shape, Fourcc::Xrgb8888, bpp)
                .map_err(|e| format!("CREATE_DUMB: {e}"))?;
            {
                let mut map = card
                    .map_dumb_buffer(&mut db)
                    .map_err(|e| format!("MAP_DUMB: {e}"))?;
                touch(&mut map);
            }
            card.destroy_dumb_buffer(db)
                .map_err(|e| format!("DESTROY_DUMB: {e}"))?;
            Ok(t.elapsed())
        }
        Work::Gbm(child) => {
            let nanos = child.request(proto::RUN)?;
            nanos
                .trim()
                .parse::<u64>()
                .map(Duration::from_nanos)
                .map_err(|_| format!("helper answered {nanos:?} to run"))
        }
        Work::Memset => {
            use rustix::mm::{MapFlags, ProtFlags};
            let len = len as usize;
            let t = Instant::now();
            // SAFETY: a fresh private anonymous mapping, written and unmapped
            // here and nowhere else.
            unsafe {
                let p = rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE,
                )
                .map_err(|e| format!("mmap: {e}"))?;
                std::ptr::write_bytes(std::hint::black_box(p.cast::<u8>()), 0x5a, len);
                rustix::mm::munmap(std::hint::black_box(p), len)
                    .map_err(|e| format!("munmap: {e}"))?;
            }
            Ok(t.elapsed())
        }
    }
}

// --- one size ------------------------------------------------------------------------------

struct Row {
    /// Note for the size (what was allocated) or why there are no numbers.
    note: Option<String>,
    result: Result<Stats, String>,
}

fn run_size(cands: &mut [Candidate], size: &Size, args: &Args) -> Vec<Row> {
    let mut rows: Vec<Row> = cands
        .iter_mut()
        .map(|c| match &mut c.work {
            Ok(work) => match prepare(work, size) {
                Ok(note) => Row {
                    note,
                    result: Ok(Stats {
                        median: Duration::ZERO,
                        min: Duration::ZERO,
                        p90: Duration::ZERO,
                        n: 0,
                    }),
                },
                Err(e) => Row {
                    note: None,
                    result: Err(e),
                },
            },
            Err(e) => Row {
                note: None,
                result: Err(e.clone()),
            },
        })
        .collect();
    let k = cands.len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.rounds); k];
    for round in 0..args.warmup + args.rounds {
        for j in 0..k {
            let i = (round + j) % k;
            if rows[i].result.is_err() {
                continue;
            }
            let Ok(work) = &mut cands[i].work else {
                continue;
            };
            match once(work, size) {
                Ok(t) if round >= args.warmup => times[i].push(t),
                Ok(_) => {}
                Err(e) => {
                    let when = if round < args.warmup {
                        format!("warm-up round {}", round + 1)
                    } else {
                        format!("round {}", round - args.warmup + 1)
                    };
                    rows[i].result = Err(format!("{when}: {e}"));
                }
            }
        }
    }
    for (row, t) in rows.iter_mut().zip(&times) {
        if row.result.is_ok() {
            row.result = Stats::of(t).ok_or_else(|| "no rounds".to_owned());
        }
    }
    rows
}

fn median_of(cands: &[Candidate], rows: &[Row], kind: &str) -> Option<Duration> {
    cands
        .iter()
        .zip(rows)
        .find(|(c, _)| c.kind == kind)
        .and_then(|(_, r)| r.result.as_ref().ok())
        .map(|s| s.median)
}

fn report_size(boot: &str, size: &Size, cands: &[Candidate], rows: &[Row], args: &Args) {
    let system = median_of(cands, rows, "system");
    let floor = median_of(cands, rows, "memset");
    println!(
        "TABLE {}: {} bytes per buffer; {} rounds after {} warm-up, order rotated each round",
        size.token.replace('-', " "),
        size.len,
        args.rounds,
        args.warmup,
    );
    println!(
        "TABLE   ms per buffer: allocate + mmap + write every page + munmap + free; \
         x = ratio of medians"
    );
    println!(
        "TABLE   {:<18} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}  note",
        "candidate", "kind", "median", "min", "p90", "x system", "x memset"
    );
    for (c, row) in cands.iter().zip(rows) {
        let mut note: Vec<String> = c.extra.iter().map(|(_, v)| v.clone()).collect();
        if let Some(bits) = c.dma_bits {
            note.pop();
            note.push(format!("{bits}-bit"));
        }
        note.extend(row.note.clone());
        let extra: String = c
            .extra
            .iter()
            .map(|(k, v)| format!(" {k}={}", quote(v)))
            .collect();
        let note_field = row
            .note
            .as_ref()
            .map(|n| format!(" note={}", quote(n)))
            .unwrap_or_default();
        match &row.result {
            Ok(s) => {
                println!(
                    "TABLE   {:<18} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                    c.name,
                    c.kind,
                    ms(s.median),
                    ms(s.min),
                    ms(s.p90),
                    ratio(s.median, system),
                    ratio(s.median, floor),
                    note.join(", ")
                );
                println!(
                    "BENCH {boot} {} {} kind={} bytes={} median={} min={} p90={} n={} \
                     x_system={} x_memset={}{extra}{note_field}",
                    size.token,
                    c.name,
                    c.kind,
                    size.len,
                    ms(s.median),
                    ms(s.min),
                    ms(s.p90),
                    s.n,
                    ratio(s.median, system),
                    ratio(s.median, floor),
                );
            }
            Err(e) => {
                println!("TABLE   {:<18} {:<8} FAILED: {e}", c.name, c.kind);
                println!(
                    "BENCH {boot} {} {} kind={} bytes={}{extra}{note_field} error={}",
                    size.token,
                    c.name,
                    c.kind,
                    size.len,
                    quote(e)
                );
            }
        }
    }
    check_agreement(boot, size, cands, rows, args.tolerance);
}

/// Device heaps with the same backing and contig_source run the same code:
/// their medians should agree within the tolerance.
fn check_agreement(boot: &str, size: &Size, cands: &[Candidate], rows: &[Row], tolerance: f64) {
    let mut groups: BTreeMap<&str, Vec<(&Candidate, Duration)>> = BTreeMap::new();
    for (c, row) in cands.iter().zip(rows) {
        if let (Some(g), Ok(s)) = (&c.group, &row.result) {
            groups.entry(g).or_default().push((c, s.median));
        }
    }
    for (group, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let (lo, lo_t) = *members.iter().min_by_key(|(_, t)| *t).unwrap();
        let (hi, hi_t) = *members.iter().max_by_key(|(_, t)| *t).unwrap();
        let spread = hi_t.as_secs_f64() / lo_t.as_secs_f64().max(1e-9);
        let ok = spread <= 1.0 + tolerance;
        let names: Vec<&str> = members.iter().map(|(c, _)| c.name.as_str()).collect();
        println!(
            "BENCH {boot} agree {} group={} heaps={} spread={spread:.2} tolerance={tolerance} ok={}",
            size.token,
            quote(group),
            names.join(","),
            if ok { "yes" } else { "no" }
        );
        if ok {
            println!(
                "TABLE   same path ({group}): {} agree within {:.0}% (spread {spread:.2}x)",
                names.join(", "),
                tolerance * 100.0
            );
        } else {
            let masks = match (lo.dma_bits, hi.dma_bits) {
                (Some(a), Some(b)) if a != b => format!(
                    "; their DMA masks differ ({a} and {b} bits), so they search different zones"
                ),
                _ => String::new(),
            };
            println!(
                "WARN {boot} {}: {} ({} ms) and {} ({} ms) take the same path ({group}) but \
                 their medians differ {spread:.2}x, beyond the {:.2}x tolerance{masks}",
                size.token,
                lo.name,
                ms(lo_t),
                hi.name,
                ms(hi_t),
                1.0 + tolerance
            );
        }
    }
}

fn machine_line(boot: &str, args: &Args) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    // "always [madvise] never": the word in brackets.
    let thp = read_trimmed("/sys/kernel/mm/transparent_hugepage/enabled")
        .and_then(|s| {
            s.split_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(w, _)| w.to_owned())
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "BENCH {boot} machine kernel={} nproc={nproc} cpu={} thp={thp} cmdline={} rounds={} \
         warmup={} order=rotated tolerance={}",
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "-".into()),
        quote(&cpu),
        quote(&read_trimmed("/proc/cmdline").unwrap_or_default()),
        args.rounds,
        args.warmup,
        args.tolerance
    );
}

/// device_heap.ko's cache of freed contiguous blocks (kernel/heap_cache.c).
const CACHE_MB: &str = "/sys/module/device_heap/parameters/cache_mb";

/// Sets `cache_mb` on creation and puts the old value back on drop.
struct CacheSetting(String);

impl CacheSetting {
    fn set(value: &str) -> Result<CacheSetting, String> {
        let old = std::fs::read_to_string(CACHE_MB)
            .map_err(|e| format!("{CACHE_MB}: {e}"))?
            .trim()
            .to_owned();
        std::fs::write(CACHE_MB, value).map_err(|e| format!("write {CACHE_MB}: {e}"))?;
        Ok(CacheSetting(old))
    }
}

impl Drop for CacheSetting {
    fn drop(&mut self) {
        let _ = std::fs::write(CACHE_MB, &self.0);
    }
}

/// The contiguous device heaps again, at the goal sizes, with the module's block
/// cache off and emptied: what the first buffer of a size costs. Interleaved with
/// references of their own (the system heap and the memset floor again), so their
/// ratios compare runs of the same minutes. Every line of the pass has the field
/// `pass=uncached`; its heaps are named `<heap>/uncached`, its references
/// `system@uncached-pass` and `memset@uncached-pass`. Returns false if a candidate
/// has no numbers.
fn run_uncached(boot: &str, sizes: &[Size], cands: &mut [Candidate], args: &Args) -> bool {
    if !Path::new(CACHE_MB).exists() {
        println!("TABLE no block cache in this module ({CACHE_MB}): no uncached pass");
        return true;
    }
    let _setting = match CacheSetting::set("0") {
        Ok(s) => s,
        Err(e) => {
            println!("TABLE uncached pass skipped: {e}");
            return false;
        }
    };
    // What the main pass left cached goes back (the module's shrinker).
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "2") {
        println!("TABLE uncached pass skipped: drop_caches: {e}");
        return false;
    }
    let pass = ("pass", "uncached".to_owned());
    let mut uncached: Vec<Candidate> = Vec::new();
    for c in cands.iter_mut() {
        let contiguous = c
            .extra
            .iter()
            .any(|(k, v)| *k == "backing" && v == "contig");
        let name = match (c.kind, &c.work) {
            ("device", Ok(Work::Heap(..))) if contiguous => format!("{}/uncached", c.name),
            ("system", Ok(Work::Heap(..))) => "system@uncached-pass".to_owned(),
            ("memset", Ok(Work::Memset)) => "memset@uncached-pass".to_owned(),
            _ => continue,
        };
        let work = match &c.work {
            Ok(Work::Heap(info, _)) => info
                .open()
                .map(|heap| Work::Heap(info.clone(), heap))
                .map_err(|e| e.to_string()),
            _ => Ok(Work::Memset),
        };
        let mut u = Candidate::new(name, c.kind, work);
        u.extra = std::iter::once(pass.clone())
            .chain(c.extra.iter().cloned())
            .collect();
        u.group = c.group.as_ref().map(|g| format!("{g} uncached"));
        u.dma_bits = c.dma_bits;
        uncached.push(u);
    }
    if !uncached.iter().any(|c| c.kind == "device") {
        return true;
    }
    let mut ok = true;
    for size in sizes
        .iter()
        .filter(|s| GOAL_SIZES.contains(&s.token.as_str()))
    {
        let rows = run_size(&mut uncached, size, args);
        report_size(boot, size, &uncached, &rows, args);
        ok &= rows.iter().all(|r| r.result.is_ok());
    }
    ok
}

/// Runs heapland-bench-camera, whose lines go to the same console.
fn run_camera(boot: &str, args: &Args) -> bool {
    let helper = match find_glibc_helper(None, "heapland-bench-camera") {
        Ok(h) => h,
        Err(e) => {
            for path in ["heap-zero-copy", "gbm-copy"] {
                println!("BENCH {boot} camera {path} error={}", quote(&e));
            }
            return false;
        }
    };
    let _ = std::io::stdout().flush();
    let status = Command::new(&helper)
        .args(["--boot", boot])
        .args(["--rounds", &args.camera_rounds.to_string()])
        .args(["--frames", &args.camera_frames.to_string()])
        .status();
    match status {
        Ok(s) if s.success() => true,
        Ok(s) => {
            println!("TABLE camera: {} exited with {s}", helper.display());
            false
        }
        Err(e) => {
            for path in ["heap-zero-copy", "gbm-copy"] {
                println!(
                    "BENCH {boot} camera {path} error={}",
                    quote(&format!("cannot run {}: {e}", helper.display()))
                );
            }
            false
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("heapland-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let boot = args.boot.clone();
    let sizes = match sizes() {
        Ok(s) => s,
        Err(e) => {
            println!("BENCH {boot} failed error={}", quote(&e));
            return ExitCode::FAILURE;
        }
    };
    let d = Discovery::scan();
    if let Some(reason) = d.empty_reason() {
        println!("TABLE no heaps: {reason}");
    }
    machine_line(&boot, &args);
    let mut cands = if args.parts.alloc {
        candidates(&d, &args)
    } else {
        Vec::new()
    };
    let mut failed = false;
    for size in sizes.iter().filter(|_| args.parts.alloc) {
        let rows = run_size(&mut cands, size, &args);
        report_size(&boot, size, &cands, &rows, &args);
        failed |= rows.iter().any(|r| r.result.is_err());
    }
    if args.parts.alloc {
        failed |= !run_uncached(&boot, &sizes, &mut cands, &args);
    }
    drop(cands);
    if args.parts.steady {
        // After the allocation part, which held vkms's card open: heapland
        // must become DRM master.
        let cases = steady_state::bench_cases();
        let window = Duration::from_secs_f64(args.steady_secs);
        failed |= !steady_state::bench(
            &boot,
            &cases,
            args.steady_rounds,
            Duration::from_secs(2),
            window,
        );
    }
    if args.parts.camera {
        failed |= !run_camera(&boot, &args);
    }
    if args.parts.peers {
        let window = Duration::from_secs_f64(args.steady_secs);
        failed |=
            !heapland_tests::guest::peers::bench(&boot, &args.peers, args.peer_rounds, window);
    }
    println!("BENCH {boot} done");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
