//! The compositor's steady state: one full-screen client that redraws every
//! frame, and what heapland spends on it.
//!
//! A client commits a new buffer (three, in turn) on every frame callback, with
//! full damage; heapland runs with `--stats` and writes its running totals once
//! a second (compositor/src/frame_stats.rs). After a warm-up, the difference of
//! two lines gives frames, buffers allocated and CPU time over the same window,
//! measured by the compositor itself and read here.
//!
//! - The test (session phase) holds heapland to its promise: in steady state it
//!   allocates no buffer per frame, on drm (heap allocator) with a dma-buf client
//!   and with a wl_shm client, and on headless.
//! - The benchmark (heapland-bench) runs every case in rounds, interleaved, and
//!   prints CPU time per frame (median, min, p90 of the one-second samples) and
//!   allocations per frame as `BENCH ... steady` lines.

use std::{
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use wayland_client::{
    protocol::{wl_buffer::WlBuffer, wl_compositor::WlCompositor, wl_shm::WlShm},
    Connection, EventQueue,
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::{
    compositor::{self, feedback_scope, Heapland, State, XR24},
    dma_buf::{self, Mapping},
    dma_heap, Test,
};
use crate::bench::{ms, quote, Stats, Totals};
use heapland_protocols::v2::client::xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2;

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "steady_state::no_buffer_allocated_per_frame",
        run: no_buffer_allocated_per_frame,
    }]
}

/// Where heapland's totals go.
const STATS: &str = "/tmp/heapland-stats.txt";

/// The client's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMemory {
    /// dma-bufs from the heap of heapland's default feedback (linux-dmabuf).
    Dmabuf,
    /// A memfd (wl_shm).
    Shm,
}

impl ClientMemory {
    fn name(self) -> &'static str {
        match self {
            ClientMemory::Dmabuf => "dmabuf",
            ClientMemory::Shm => "shm",
        }
    }
}

/// One configuration of compositor and client.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// `None`: headless; else the drm backend with this `--allocator`.
    pub allocator: Option<&'static str>,
    pub client: ClientMemory,
    pub width: u32,
    pub height: u32,
}

impl Case {
    pub fn name(&self) -> String {
        match self.allocator {
            None => format!("headless/{}", self.client.name()),
            Some(a) => format!("drm-{a}/{}", self.client.name()),
        }
    }

    fn args(&self) -> Vec<String> {
        let mode = format!("{}x{}@60", self.width, self.height);
        let mut args = match self.allocator {
            None => vec!["--backend".into(), "headless".into()],
            Some(a) => vec![
                "--backend".into(),
                "drm".into(),
                "--allocator".into(),
                a.into(),
            ],
        };
        args.extend(["--output".into(), mode, "--stats".into(), STATS.into()]);
        args
    }
}

/// What one run of a case measured.
#[derive(Debug, Default)]
pub struct Window {
    /// Totals over the whole window.
    pub total: Totals,
    /// CPU time per frame of each one-second interval with frames.
    pub cpu_per_frame: Vec<Duration>,
}

/// The totals lines heapland has written so far.
fn read_totals() -> Vec<Totals> {
    std::fs::read_to_string(STATS)
        .unwrap_or_default()
        .split_inclusive('\n')
        // A line still being written has no newline yet.
        .filter(|l| l.ends_with('\n'))
        .filter_map(Totals::parse)
        .collect()
}

/// Sends what is queued and dispatches what arrives within 50 ms.
fn pump(conn: &Connection, queue: &mut EventQueue<State>, st: &mut State) -> Result<(), String> {
    conn.flush().map_err(|e| format!("flush: {e}"))?;
    if let Some(guard) = queue.prepare_read() {
        let fd = guard.connection_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        let ready =
            rustix::event::poll(&mut fds, Some(&timeout)).map_err(|e| format!("poll: {e}"))?;
        if ready > 0 {
            guard.read().map_err(|e| format!("read events: {e}"))?;
        }
    }
    queue
        .dispatch_pending(st)
        .map_err(|e| format!("dispatch: {e}"))?;
    Ok(())
}

/// The colours of a full-screen client's three buffers.
pub(super) const COLOURS: [u32; 3] = [0x00c0_4020, 0x0020_c040, 0x0040_20c0];

/// Three buffers of the configured size, each a solid colour.
fn make_buffers(
    memory: ClientMemory,
    (w, h): (u32, u32),
    st: &mut State,
    globals: &wayland_client::globals::GlobalList,
    qh: &wayland_client::QueueHandle<State>,
    keep: &mut Vec<OwnedFd>,
) -> Result<Vec<WlBuffer>, String> {
    let stride = w * 4;
    let len = u64::from(stride) * u64::from(h);
    match memory {
        ClientMemory::Dmabuf => {
            let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(globals, qh, 4..=4)?;
            let heap = st
                .heap_fd
                .take()
                .ok_or_else(|| format!("no heap in the default feedback: {:?}", st.no_heap))?;
            let mut out = Vec::new();
            for colour in COLOURS {
                let fd = dma_heap::alloc(heap.as_fd(), len)
                    .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC from {}: {e}", st.heap_name))?;
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
                out.push(params.create_immed(w as i32, h as i32, XR24, Flags::empty(), qh, ()));
                keep.push(fd);
            }
            Ok(out)
        }
        ClientMemory::Shm => shm_buffers(globals, qh, (w, h), keep),
    }
}

/// Three wl_shm buffers of `w`x`h`, each a solid colour, in one memfd
/// (kept in `keep` for as long as the buffers are used).
pub(super) fn shm_buffers(
    globals: &wayland_client::globals::GlobalList,
    qh: &wayland_client::QueueHandle<State>,
    (w, h): (u32, u32),
    keep: &mut Vec<OwnedFd>,
) -> Result<Vec<WlBuffer>, String> {
    let shm: WlShm = compositor::bind(globals, qh, 1..=1)?;
    let (buffers, file) = heapland_test_client::shm::solid_buffers(&shm, qh, (w, h), &COLOURS, ())?;
    keep.push(file.into());
    Ok(buffers)
}

/// Runs one case: heapland with `--stats`, a full-screen client redrawing
/// every frame; after `warmup`, the totals over `window`.
pub fn run_case(case: &Case, warmup: Duration, window: Duration) -> Result<Window, String> {
    let _ = std::fs::remove_file(STATS);
    let args = case.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut comp = Heapland::start_with(&args)?;
    let (conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let mut st = State::default();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    // A dma-buf client allocates from the heap of the default feedback.
    let _scope = if case.client == ClientMemory::Dmabuf {
        let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(&globals, &qh, 4..=4)?;
        let heaps: XxDmabufHeapManagerV2 = compositor::bind(&globals, &qh, 1..=1)?;
        Some(feedback_scope(&mut st, &qh, &dmabuf, &heaps, None))
    } else {
        st.heap_done = true;
        None
    };

    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_fullscreen(None);
    surface.commit();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(st.configured && st.configured_size.0 > 0 && st.heap_done) {
        pump(&conn, &mut queue, &mut st)?;
        comp.alive()?;
        if let Some(err) = &st.feedback_error {
            return Err(err.clone());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no full-screen configure or heap feedback (configure {:?}):\n{}",
                st.configured_size,
                comp.log_text()
            ));
        }
    }
    let size = (st.configured_size.0 as u32, st.configured_size.1 as u32);
    if size != (case.width, case.height) {
        return Err(format!(
            "full-screen configure {size:?}, the output is {}x{}",
            case.width, case.height
        ));
    }
    let mut keep = Vec::new();
    let buffers = make_buffers(case.client, size, &mut st, &globals, &qh, &mut keep)?;

    let started = Instant::now();
    let mut first: Option<Totals> = None;
    let mut next = 0usize;
    st.frame_done = true;
    let result = loop {
        if st.frame_done {
            st.frame_done = false;
            surface.attach(Some(&buffers[next % buffers.len()]), 0, 0);
            surface.damage_buffer(0, 0, size.0 as i32, size.1 as i32);
            surface.frame(&qh, ());
            surface.commit();
            next += 1;
        }
        pump(&conn, &mut queue, &mut st)?;
        comp.alive()?;
        if started.elapsed() < warmup {
            continue;
        }
        let lines = read_totals();
        let Some(&last) = lines.last() else {
            if started.elapsed() > warmup + window + Duration::from_secs(30) {
                break Err(format!("no --stats lines in {STATS}:\n{}", comp.log_text()));
            }
            continue;
        };
        let start = *first.get_or_insert(last);
        if last.monotonic_ns.saturating_sub(start.monotonic_ns) < window.as_nanos() as u64 {
            if started.elapsed() > warmup + window * 3 + Duration::from_secs(30) {
                break Err(format!("{STATS} stopped growing:\n{}", comp.log_text()));
            }
            continue;
        }
        let inside: Vec<&Totals> = lines
            .iter()
            .filter(|t| t.monotonic_ns >= start.monotonic_ns)
            .collect();
        let cpu_per_frame = inside
            .windows(2)
            .map(|w| w[1].since(w[0]))
            .filter(|d| d.frames > 0)
            .map(|d| Duration::from_nanos(d.cpu_ns / d.frames))
            .collect();
        break Ok(Window {
            total: last.since(&start),
            cpu_per_frame,
        });
    };
    drop(buffers);
    drop(keep);
    drop(conn);
    let stopped = comp.stop();
    let window = result?;
    stopped?;
    Ok(window)
}

/// Every case, run `rounds` times in rotated order; prints `BENCH <boot>
/// steady` lines (format in crate::bench) and a `TABLE` line per case.
pub fn bench(
    boot: &str,
    cases: &[Case],
    rounds: usize,
    warmup: Duration,
    window: Duration,
) -> bool {
    let mut results: Vec<(Vec<Window>, Option<String>)> =
        cases.iter().map(|_| (Vec::new(), None)).collect();
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            if results[i].1.is_some() {
                continue;
            }
            match run_case(&cases[i], warmup, window) {
                Ok(w) => results[i].0.push(w),
                Err(e) => results[i].1 = Some(e),
            }
        }
    }
    let mut ok = true;
    for (case, (windows, error)) in cases.iter().zip(results) {
        let head = format!(
            "BENCH {boot} steady {} backend={} allocator={} client={} mode={}x{}@60",
            case.name(),
            if case.allocator.is_some() {
                "drm"
            } else {
                "headless"
            },
            case.allocator.unwrap_or("heap"),
            case.client.name(),
            case.width,
            case.height
        );
        if let Some(e) = error {
            ok = false;
            println!("{head} error={}", quote(&e));
            println!("TABLE steady {}: no numbers: {e}", case.name());
            continue;
        }
        let mut total = Totals::default();
        let mut samples = Vec::new();
        for w in &windows {
            total.frames += w.total.frames;
            total.composited += w.total.composited;
            total.direct += w.total.direct;
            total.buffer_allocations += w.total.buffer_allocations;
            total.cpu_ns += w.total.cpu_ns;
            total.monotonic_ns += w.total.monotonic_ns;
            samples.extend(w.cpu_per_frame.iter().copied());
        }
        let Some(stats) = Stats::of(&samples).filter(|_| total.frames > 0) else {
            ok = false;
            println!("{head} error=\"no frames in the window\"");
            println!("TABLE steady {}: no frames", case.name());
            continue;
        };
        let secs = total.monotonic_ns as f64 / 1e9;
        let per_frame = total.buffer_allocations as f64 / total.frames as f64;
        println!(
            "{head} frames={} composited={} direct={} allocations={} allocations_per_frame={per_frame:.3} cpu_median={} cpu_min={} cpu_p90={} n={} fps={:.1} secs={secs:.1}",
            total.frames,
            total.composited,
            total.direct,
            total.buffer_allocations,
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
            stats.n,
            total.frames as f64 / secs,
        );
        println!(
            "TABLE steady {:<18} {:>6} frames ({} composited, {} direct) at {:>5.1} fps, {} buffer allocations ({per_frame:.3}/frame), CPU/frame median {} ms (min {}, p90 {})",
            case.name(),
            total.frames,
            total.composited,
            total.direct,
            total.frames as f64 / secs,
            total.buffer_allocations,
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
        );
    }
    ok
}

/// The cases of the benchmark: headless, and drm with heap and GBM scanout
/// buffers, each with a dma-buf and a wl_shm client, at 1920x1080.
pub fn bench_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for allocator in [None, Some("heap"), Some("gbm")] {
        for client in [ClientMemory::Dmabuf, ClientMemory::Shm] {
            out.push(Case {
                allocator,
                client,
                width: 1920,
                height: 1080,
            });
        }
    }
    out
}

fn no_buffer_allocated_per_frame() -> Result<(), String> {
    let mut errs = Vec::new();
    for (allocator, client) in [
        (Some("heap"), ClientMemory::Dmabuf),
        (Some("heap"), ClientMemory::Shm),
        (None, ClientMemory::Dmabuf),
    ] {
        let case = Case {
            allocator,
            client,
            width: 640,
            height: 480,
        };
        let w = match run_case(&case, Duration::from_secs(2), Duration::from_secs(3)) {
            Ok(w) => w,
            Err(e) => {
                errs.push(format!("{}: {e}", case.name()));
                continue;
            }
        };
        let t = w.total;
        println!(
            "INFO steady_state: {}: {} frames ({} composited, {} direct) in {:.1} s, {} buffers allocated",
            case.name(),
            t.frames,
            t.composited,
            t.direct,
            t.monotonic_ns as f64 / 1e9,
            t.buffer_allocations
        );
        if t.frames < 10 {
            errs.push(format!(
                "{}: only {} frames in the window: the client is not redrawing",
                case.name(),
                t.frames
            ));
        }
        if t.buffer_allocations != 0 {
            errs.push(format!(
                "{}: {} buffers allocated in {} steady frames",
                case.name(),
                t.buffer_allocations,
                t.frames
            ));
        }
    }
    super::all_ok(errs)
}
