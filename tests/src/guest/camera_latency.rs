//! Camera to display: how long a vivid frame takes from its capture timestamp
//! to the page flip that shows it, on heapland's drm backend on vkms, and how
//! many bytes are copied on the way.
//!
//! Two paths, run in turn (interleaved rounds) against one heapland:
//!
//! - `heap-zero-copy`: vivid captures straight into buffers from the heap
//!   heapland names for the camera's tranche (`add_device` on the heap
//!   feedback, V4L2_MEMORY_DMABUF); each captured buffer is attached as it is.
//!   The V4L2 buffer goes back to the camera when heapland releases it.
//! - `gbm-copy`: what a client without a shared heap does: vivid captures into
//!   its own buffers (V4L2_MEMORY_MMAP), and each frame is copied by the CPU
//!   into a GBM buffer (Mesa's GBM on vkms, LINEAR | SCANOUT), which is
//!   attached; the V4L2 buffer goes back to the camera at once.
//!
//! The latency is wp_presentation's `presented` time (heapland takes it from
//! the page-flip event, CLOCK_MONOTONIC) minus the buffer's V4L2 timestamp
//! (vivid's capture time, CLOCK_MONOTONIC: the control "Timestamp Source" is
//! set to start of exposure, when vivid starts making the frame). Bytes
//! copied per frame are the client's own copy plus what heapland composited
//! (a whole frame per composited frame; a frame scanned out directly from the
//! client's buffer is not copied), from heapland's `--stats` totals between
//! the first line written after the warm-up and the first written after the
//! last measured frame: the same run's frames, not exactly the measured ones.
//!
//! Needs Mesa's libgbm, so this module exists in glibc builds only: it runs in
//! the guest as `heapland-bench-camera`, started by heapland-bench.

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use gbm::{BufferObject, BufferObjectFlags, Device as GbmDevice, Format as GbmFormat};
use heapland_protocols::v2::client::xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2;
use wayland_client::{
    protocol::{wl_buffer::WlBuffer, wl_compositor::WlCompositor, wl_surface::WlSurface},
    Connection, EventQueue, QueueHandle,
};
use wayland_protocols::{
    wp::{
        linux_dmabuf::zv1::client::{
            zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
        },
        presentation_time::client::wp_presentation::WpPresentation,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::{
    camera_client::{
        self, capture_ns, CAPTURE_BUFFERS, CLOCK_MONOTONIC, HEIGHT, WARMUP_FRAMES, WIDTH,
    },
    compositor::{self, feedback_scope, Heapland, State, XR24},
    dma_buf::{self, Mapping},
    dma_heap, drm_card,
    session::dev_t_of,
    v4l2::{self, Video, MEMORY_DMABUF, MEMORY_MMAP},
};
use crate::bench::{ms, quote, Stats, Totals};

/// GBM buffers the copying path copies into, in turn as heapland releases them.
const GBM_BUFFERS: usize = 3;
const STATS: &str = "/tmp/heapland-camera-stats.txt";
/// Tags of GBM wl_buffers start here; heap ones are the V4L2 index.
const GBM_TAG: u32 = 100;

/// A path from the camera to the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraPath {
    HeapZeroCopy,
    GbmCopy,
}

impl CameraPath {
    pub fn name(self) -> &'static str {
        match self {
            CameraPath::HeapZeroCopy => "heap-zero-copy",
            CameraPath::GbmCopy => "gbm-copy",
        }
    }
}

/// What one run of a path measured.
#[derive(Debug, Default)]
struct Run {
    latencies: Vec<Duration>,
    discarded: usize,
    /// Frames presented before their capture timestamp: a broken clock,
    /// counted and left out.
    early: usize,
    client_copied: u64,
    shown: u64,
    compositor: Totals,
}

/// heapland on vkms sharing with the camera, and one full-screen client.
struct Setup {
    comp: Heapland,
    conn: Connection,
    queue: EventQueue<State>,
    qh: QueueHandle<State>,
    st: State,
    surface: WlSurface,
    dmabuf: ZwpLinuxDmabufV1,
    presentation: WpPresentation,
    /// The heap for the camera's tranche, once heapland named it.
    heap: Option<OwnedFd>,
    heap_name: String,
    video: Video,
    pix: v4l2::PixFormat,
    card: std::path::PathBuf,
    /// Whether the camera streams. Its node is polled only then: vb2 starts
    /// read() emulation when a queue that is not streaming is polled, and the
    /// queue is then busy for VIDIOC_REQBUFS.
    streaming: bool,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Setup {
    fn new() -> Result<Setup, String> {
        let (video_node, video) = v4l2::find_capture("vivid")?;
        let pix = video.set_format(WIDTH, HEIGHT, v4l2::PIX_FMT_XBGR32)?;
        // Start of exposure: vivid then stamps a frame with the time it starts
        // making it. Its default, end of frame, is that time plus most of a
        // frame period, a moment that may not have come yet when the buffer
        // is dequeued.
        video.set_control(v4l2::VIVID_CID_TSTAMP_SRC, 1)?;
        if (pix.width, pix.height) != (WIDTH, HEIGHT) {
            return Err(format!("vivid chose {}x{}", pix.width, pix.height));
        }
        let card = drm_card::find("vkms", "card")?.path.clone();
        let _ = std::fs::remove_file(STATS);
        let mode = format!("{WIDTH}x{HEIGHT}@60");
        let comp = Heapland::start_with(&[
            "--backend",
            "drm",
            "--drm-device",
            card.to_str().ok_or("non-UTF-8 card path")?,
            "--output",
            &mode,
            "--share-with",
            video_node.to_str().ok_or("non-UTF-8 video node")?,
            "--stats",
            STATS,
        ])?;
        let (conn, globals, queue) = compositor::connect()?;
        let qh = queue.handle();
        let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
        let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
        let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(&globals, &qh, 4..=4)?;
        let heaps: XxDmabufHeapManagerV2 = compositor::bind(&globals, &qh, 1..=1)?;
        let presentation: WpPresentation = compositor::bind(&globals, &qh, 1..=1)?;
        let surface = wl_compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let toplevel = xdg.get_toplevel(&qh, ());
        toplevel.set_fullscreen(None);
        let mut st = State::default();
        let (linux_feedback, heap_feedback) =
            feedback_scope(&mut st, &qh, &dmabuf, &heaps, Some(&surface));
        surface.commit();
        let mut setup = Setup {
            comp,
            conn,
            queue,
            qh,
            st,
            surface,
            dmabuf,
            presentation,
            heap: None,
            heap_name: String::new(),
            video,
            pix,
            card,
            streaming: false,
            _keep: vec![
                Box::new(wl_compositor),
                Box::new(wm),
                Box::new(heaps),
                Box::new(xdg),
                Box::new(toplevel),
                Box::new(linux_feedback),
            ],
        };
        setup.wait(
            |s| s.configured && s.heap_done,
            "configure and heap feedback",
        )?;
        // The camera joins the surface's tranches: the heap fd that comes back
        // serves vkms, the render node and vivid.
        setup.st.expect_new_batch();
        heap_feedback.add_device(dev_t_of(&video_node)?.to_ne_bytes().to_vec());
        setup.wait(|s| s.heap_done, "heap batch after add_device")?;
        setup.heap = Some(
            setup
                .st
                .heap_fd
                .take()
                .ok_or_else(|| format!("no heap for the camera: {:?}", setup.st.no_heap))?,
        );
        setup.heap_name = setup.st.heap_name.clone();
        setup._keep.push(Box::new(heap_feedback));
        if setup.st.presentation_clock != Some(CLOCK_MONOTONIC) {
            return Err(format!(
                "wp_presentation clock {:?}, not CLOCK_MONOTONIC",
                setup.st.presentation_clock
            ));
        }
        Ok(setup)
    }

    fn pump(&mut self) -> Result<bool, String> {
        camera_client::pump(
            &self.conn,
            &mut self.queue,
            &mut self.st,
            self.streaming.then_some(&self.video),
        )
    }

    fn wait(&mut self, done: fn(&State) -> bool, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.st) {
            self.pump()?;
            self.comp.alive()?;
            if let Some(err) = &self.st.feedback_error {
                return Err(format!("waiting for {what}: {err}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no {what}:\n{}", self.comp.log_text()));
            }
        }
        Ok(())
    }

    fn wl_buffer(&self, fd: BorrowedFd<'_>, offset: u32, stride: u32, tag: u32) -> WlBuffer {
        let params = self.dmabuf.create_params(&self.qh, ());
        params.add(fd, 0, offset, stride, 0, 0);
        let buffer = params.create_immed(
            WIDTH as i32,
            HEIGHT as i32,
            XR24,
            Flags::empty(),
            &self.qh,
            tag,
        );
        params.destroy();
        buffer
    }

    fn show(&mut self, buffer: &WlBuffer, capture_ns: u64) {
        camera_client::show(
            &self.surface,
            &self.presentation,
            &self.qh,
            buffer,
            (WIDTH, HEIGHT),
            capture_ns,
        );
    }

    /// The first complete `--stats` line written after `after_ns`, if any.
    fn totals_after(&self, after_ns: u64) -> Option<Totals> {
        std::fs::read_to_string(STATS)
            .ok()?
            .split_inclusive('\n')
            // A line still being written has no newline yet.
            .filter(|l| l.ends_with('\n'))
            .filter_map(Totals::parse)
            .find(|t| t.monotonic_ns > after_ns)
    }
}

/// The capture buffers of one run and what each path holds per buffer.
enum Buffers {
    Heap {
        fds: Vec<OwnedFd>,
        wl: Vec<WlBuffer>,
        size: u32,
    },
    Gbm {
        maps: Vec<(OwnedFd, Mapping)>,
        bos: Vec<BufferObject<()>>,
        wl: Vec<WlBuffer>,
        free: Vec<usize>,
        _device: GbmDevice<OwnedFd>,
    },
}

/// Sets up `path`'s buffers and starts the stream; on failure the camera's
/// buffers are released again.
fn start_path(s: &mut Setup, path: CameraPath) -> Result<Buffers, String> {
    let memory = match path {
        CameraPath::HeapZeroCopy => MEMORY_DMABUF,
        CameraPath::GbmCopy => MEMORY_MMAP,
    };
    let started = start_buffers(s, path);
    if started.is_err() {
        let _ = s.video.streamoff();
        s.streaming = false;
        let _ = s.video.reqbufs(0, memory);
    }
    started
}

fn start_buffers(s: &mut Setup, path: CameraPath) -> Result<Buffers, String> {
    let frame = s.pix.sizeimage.div_ceil(4096) * 4096;
    match path {
        CameraPath::HeapZeroCopy => {
            let n = s.video.reqbufs_when_free(CAPTURE_BUFFERS, MEMORY_DMABUF)?;
            let heap = s.heap.as_ref().ok_or("no camera heap")?;
            let fds: Vec<OwnedFd> = (0..n)
                .map(|_| dma_heap::alloc(heap.as_fd(), u64::from(frame)))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC from {}: {e}", s.heap_name))?;
            let wl = fds
                .iter()
                .enumerate()
                .map(|(i, fd)| s.wl_buffer(fd.as_fd(), 0, s.pix.bytesperline, i as u32))
                .collect();
            for (i, fd) in fds.iter().enumerate() {
                s.video.qbuf_dmabuf(i as u32, fd.as_fd(), frame)?;
            }
            s.video.streamon()?;
            s.streaming = true;
            Ok(Buffers::Heap {
                fds,
                wl,
                size: frame,
            })
        }
        CameraPath::GbmCopy => {
            let n = s.video.reqbufs_when_free(CAPTURE_BUFFERS, MEMORY_MMAP)?;
            let mut maps = Vec::new();
            for i in 0..n {
                let b = s.video.querybuf(i, MEMORY_MMAP)?;
                let fd = s.video.expbuf(i)?;
                let map = Mapping::new(fd.as_fd(), b.length as usize)?;
                maps.push((fd, map));
            }
            let card = rustix::fs::open(
                &s.card,
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| format!("open {}: {e}", s.card.display()))?;
            let device = GbmDevice::new(card).map_err(|e| format!("gbm_create_device: {e}"))?;
            let mut bos = Vec::new();
            let mut wl = Vec::new();
            for i in 0..GBM_BUFFERS {
                let bo = device
                    .create_buffer_object::<()>(
                        WIDTH,
                        HEIGHT,
                        GbmFormat::Xrgb8888,
                        BufferObjectFlags::LINEAR | BufferObjectFlags::SCANOUT,
                    )
                    .map_err(|e| format!("gbm_bo_create XRGB8888 {WIDTH}x{HEIGHT}: {e}"))?;
                let fd = bo.fd().map_err(|e| format!("gbm_bo_get_fd: {e}"))?;
                wl.push(s.wl_buffer(fd.as_fd(), bo.offset(0), bo.stride(), GBM_TAG + i as u32));
                bos.push(bo);
            }
            for i in 0..n {
                s.video.qbuf_mmap(i)?;
            }
            s.video.streamon()?;
            s.streaming = true;
            Ok(Buffers::Gbm {
                maps,
                bos,
                wl,
                free: (0..GBM_BUFFERS).collect(),
                _device: device,
            })
        }
    }
}

/// Copies one captured XBGR32 frame into a GBM buffer, row by row.
fn copy_frame(
    src: &Mapping,
    src_fd: BorrowedFd<'_>,
    src_stride: usize,
    bo: &mut BufferObject<()>,
) -> Result<u64, String> {
    let row = WIDTH as usize * 4;
    dma_buf::sync(src_fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
        .map_err(|e| format!("SYNC: {e}"))?;
    let copied = bo
        .map_mut(0, 0, WIDTH, HEIGHT, |m| {
            let dst_stride = m.stride() as usize;
            let dst = m.buffer_mut();
            let bytes = src.bytes();
            for y in 0..HEIGHT as usize {
                dst[y * dst_stride..y * dst_stride + row]
                    .copy_from_slice(&bytes[y * src_stride..y * src_stride + row]);
            }
            (row * HEIGHT as usize) as u64
        })
        .map_err(|e| format!("gbm_bo_map: {e}"));
    dma_buf::sync(src_fd, dma_buf::SYNC_END | dma_buf::SYNC_READ)
        .map_err(|e| format!("SYNC: {e}"))?;
    copied
}

/// One run of `path`: `frames` measured frames after the warm-up.
/// Shows captured frames until `frames` are measured, then the totals line
/// after the last; fills `run`.
fn measure(
    s: &mut Setup,
    bufs: &mut Buffers,
    path: CameraPath,
    frames: usize,
    run: &mut Run,
) -> Result<(), String> {
    let mut warmup_end_ns: Option<u64> = None;
    let mut first_totals: Option<Totals> = None;
    let mut showing = true;
    let mut stop_ns = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: {} of {frames} frames presented in 120 s",
                path.name(),
                run.latencies.len()
            ));
        }
        s.comp.alive()?;
        let camera_ready = s.pump()?;
        // Buffers heapland let go of.
        for tag in std::mem::take(&mut s.st.released) {
            match bufs {
                Buffers::Heap { fds, size, .. } => {
                    s.video.qbuf_dmabuf(tag, fds[tag as usize].as_fd(), *size)?;
                }
                Buffers::Gbm { free, .. } => {
                    if let Some(i) = tag.checked_sub(GBM_TAG) {
                        free.push(i as usize);
                    }
                }
            }
        }
        for (capture, presented) in std::mem::take(&mut s.st.presented) {
            match presented {
                Some(at) if warmup_end_ns.is_some_and(|w| capture > w) => {
                    match at.checked_sub(capture) {
                        Some(ns) => run.latencies.push(Duration::from_nanos(ns)),
                        None => run.early += 1,
                    }
                }
                Some(_) => {}
                None => run.discarded += 1,
            }
        }
        if warmup_end_ns.is_some() && first_totals.is_none() {
            first_totals = s.totals_after(warmup_end_ns.unwrap_or(0));
        }
        if showing && run.latencies.len() >= frames && first_totals.is_some() {
            showing = false;
            stop_ns = now_ns();
        }
        if !showing {
            // Nothing more is shown: the next totals line covers what was.
            if let Some(last) = s.totals_after(stop_ns) {
                let first = first_totals.unwrap_or_default();
                run.compositor = last.since(&first);
                return Ok(());
            }
        }
        if !camera_ready {
            continue;
        }
        let memory = match bufs {
            Buffers::Heap { .. } => MEMORY_DMABUF,
            Buffers::Gbm { .. } => MEMORY_MMAP,
        };
        let b = match s.video.dqbuf(memory, 0) {
            Ok(b) => b,
            // Readable but taken already, or nothing after all (EAGAIN).
            Err(e) if e.starts_with("no frame within") || e.contains("os error 11") => continue,
            Err(e) => return Err(e),
        };
        let at = capture_ns(&b);
        match bufs {
            Buffers::Heap { fds, wl, size } => {
                if !showing {
                    s.video
                        .qbuf_dmabuf(b.index, fds[b.index as usize].as_fd(), *size)?;
                    continue;
                }
                let buffer = wl[b.index as usize].clone();
                s.show(&buffer, at);
            }
            Buffers::Gbm {
                maps,
                bos,
                wl,
                free,
                ..
            } => {
                let target = if showing { free.pop() } else { None };
                if let Some(i) = target {
                    let (fd, map) = &maps[b.index as usize];
                    run.client_copied +=
                        copy_frame(map, fd.as_fd(), s.pix.bytesperline as usize, &mut bos[i])?;
                }
                s.video.qbuf_mmap(b.index)?;
                let Some(i) = target else { continue };
                let buffer = wl[i].clone();
                s.show(&buffer, at);
            }
        }
        run.shown += 1;
        if run.shown as usize == WARMUP_FRAMES {
            warmup_end_ns = Some(at);
        }
    }
}

fn run_path(s: &mut Setup, path: CameraPath, frames: usize) -> Result<Run, String> {
    s.st.released.clear();
    s.st.presented.clear();
    let mut bufs = start_path(s, path)?;
    let mut run = Run::default();
    let result = measure(s, &mut bufs, path, frames, &mut run);
    // Back to an idle camera, whatever happened.
    let _ = s.video.streamoff();
    s.streaming = false;
    let memory = match &bufs {
        Buffers::Heap { .. } => MEMORY_DMABUF,
        Buffers::Gbm { .. } => MEMORY_MMAP,
    };
    match bufs {
        Buffers::Heap { wl, .. } | Buffers::Gbm { wl, .. } => {
            for b in wl {
                b.destroy();
            }
        }
    }
    let _ = s.video.reqbufs(0, memory);
    result.map(|()| run)
}

/// Both paths, `rounds` runs each in alternating order; prints `BENCH <boot>
/// camera` lines (format in crate::bench) and `TABLE` lines. False if a path
/// has no numbers.
pub fn bench(boot: &str, rounds: usize, frames: usize) -> bool {
    let mut setup = match Setup::new() {
        Ok(s) => s,
        Err(e) => {
            for p in [CameraPath::HeapZeroCopy, CameraPath::GbmCopy] {
                println!("BENCH {boot} camera {} error={}", p.name(), quote(&e));
            }
            println!("TABLE camera: no numbers: {e}");
            return false;
        }
    };
    println!(
        "TABLE camera: vivid {WIDTH}x{HEIGHT} XBGR32 -> heapland on vkms ({WIDTH}x{HEIGHT}@60); camera heap {}",
        setup.heap_name
    );
    let paths = [CameraPath::HeapZeroCopy, CameraPath::GbmCopy];
    let mut runs: Vec<(Vec<Run>, Option<String>)> =
        paths.iter().map(|_| (Vec::new(), None)).collect();
    for round in 0..rounds {
        for k in 0..paths.len() {
            let i = (k + round) % paths.len();
            if runs[i].1.is_some() {
                continue;
            }
            match run_path(&mut setup, paths[i], frames) {
                Ok(r) => runs[i].0.push(r),
                Err(e) => runs[i].1 = Some(e),
            }
        }
    }
    let frame_bytes = u64::from(WIDTH * HEIGHT * 4);
    let mut ok = true;
    for (path, (path_runs, error)) in paths.iter().zip(runs) {
        let head = format!(
            "BENCH {boot} camera {} width={WIDTH} height={HEIGHT} heap={}",
            path.name(),
            quote(&setup.heap_name)
        );
        if let Some(e) = error {
            ok = false;
            println!("{head} error={}", quote(&e));
            println!("TABLE camera {}: no numbers: {e}", path.name());
            continue;
        }
        let latencies: Vec<Duration> = path_runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        let Some(stats) = Stats::of(&latencies) else {
            ok = false;
            println!("{head} error=\"no frame presented\"");
            continue;
        };
        let shown: u64 = path_runs.iter().map(|r| r.shown).sum();
        let client: u64 = path_runs.iter().map(|r| r.client_copied).sum();
        let discarded: usize = path_runs.iter().map(|r| r.discarded).sum();
        let early: usize = path_runs.iter().map(|r| r.early).sum();
        if early > 0 {
            ok = false;
        }
        let (mut frames_c, mut composited, mut direct) = (0, 0, 0);
        for r in &path_runs {
            frames_c += r.compositor.frames;
            composited += r.compositor.composited;
            direct += r.compositor.direct;
        }
        let client_per_frame = client / shown.max(1);
        let compositor_per_frame = composited * frame_bytes / frames_c.max(1);
        println!(
            "{head} latency_median={} latency_min={} latency_p90={} n={} discarded={discarded} early={early} client_copied_per_frame={client_per_frame} compositor_copied_per_frame={compositor_per_frame} frames={frames_c} direct={direct} composited={composited}",
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
            stats.n,
        );
        println!(
            "TABLE camera {:<15} capture to flip median {} ms (min {}, p90 {}) over {} frames; copied per frame: client {} B, compositor {} B ({direct} of {frames_c} frames scanned out directly)",
            path.name(),
            ms(stats.median),
            ms(stats.min),
            ms(stats.p90),
            stats.n,
            client_per_frame,
            compositor_per_frame,
        );
    }
    let stopped = setup.comp.stop();
    if let Err(e) = stopped {
        println!("TABLE camera: heapland did not stop cleanly: {e}");
        ok = false;
    }
    ok
}
