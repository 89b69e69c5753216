//! The camera of the peers benchmark: vivid to the screen through standard
//! protocols only, so heapland, weston and sway serve it alike.
//!
//! [`latency`] is the bench's own camera client. It shows vivid's 640x480
//! XBGR32 frames full-screen and takes wp_presentation's `presented` time of
//! each frame minus the frame's V4L2 timestamp (start of exposure, as in
//! `camera_latency`). Where the compositor has linux-dmabuf, vivid captures
//! into dma-bufs of the heap that serves vkms and vivid (V4L2_MEMORY_DMABUF),
//! each attached as it is and queued back to the camera when the compositor
//! releases it; where it has not (weston's and wlroots' pixman renderers in
//! Debian 12), vivid captures into its own buffers and each frame is copied
//! into a wl_shm buffer.
//!
//! [`v4l_client_shown`] runs Debian's `weston-simple-dmabuf-v4l` on vivid and
//! tells whether its frames reach the display, by vkms's CRCs of what the CRTC
//! scans out: one CRC while the screen is still, a new one for (nearly)
//! every camera frame while the client runs.

use std::{
    collections::HashSet,
    fs::File,
    io::Read,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::{fs::OpenOptionsExt, net::UnixStream},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use heapland_allocator::{
    allocator_for,
    smithay::backend::allocator::{Allocator, Fourcc, Modifier},
    DeviceNumber, Discovery,
};
use wayland_client::{
    globals::{registry_queue_init, GlobalList},
    protocol::{
        wl_buffer::WlBuffer,
        wl_compositor::WlCompositor,
        wl_shm::{self, WlShm},
        wl_surface::WlSurface,
    },
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
    compositor::{self, State, XR24},
    dma_buf::{self, Mapping},
    drm_card, v4l2,
    v4l2::{Video, MEMORY_DMABUF, MEMORY_MMAP},
};

/// The camera's frame size (vivid's XBGR32 frames, shown as XRGB8888).
pub(super) const WIDTH: u32 = 640;
pub(super) const HEIGHT: u32 = 480;
/// Frames shown before the measured ones, at the start of every run.
pub(super) const WARMUP_FRAMES: usize = 10;
/// Capture buffers asked of vivid.
pub(super) const CAPTURE_BUFFERS: u32 = 4;
/// wl_shm buffers the copying path copies into, in turn as they are released.
const SHM_BUFFERS: usize = 3;
/// CLOCK_MONOTONIC, as wp_presentation.clock_id names it.
pub(super) const CLOCK_MONOTONIC: u32 = 1;

/// How the camera's frames reached the compositor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Captured into heap dma-bufs, attached as they are.
    Dmabuf,
    /// Captured into vivid's buffers, copied into wl_shm.
    Shm,
}

impl Memory {
    pub fn name(self) -> &'static str {
        match self {
            Memory::Dmabuf => "dma-buf",
            Memory::Shm => "shm",
        }
    }
}

/// What one camera run measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub memory: Memory,
    pub latencies: Vec<Duration>,
    /// Frames the compositor discarded (never shown).
    pub discarded: usize,
}

/// The capture buffers of one run and what the client holds per buffer.
enum Buffers {
    Dmabuf {
        fds: Vec<OwnedFd>,
        wl: Vec<WlBuffer>,
        size: u32,
    },
    Shm {
        captured: Vec<(OwnedFd, Mapping)>,
        pool: Mapping,
        wl: Vec<WlBuffer>,
        free: Vec<usize>,
        _memfd: OwnedFd,
    },
}

impl Buffers {
    fn memory(&self) -> Memory {
        match self {
            Buffers::Dmabuf { .. } => Memory::Dmabuf,
            Buffers::Shm { .. } => Memory::Shm,
        }
    }

    fn v4l2_memory(&self) -> u32 {
        match self {
            Buffers::Dmabuf { .. } => MEMORY_DMABUF,
            Buffers::Shm { .. } => MEMORY_MMAP,
        }
    }
}

/// A full-screen window showing the camera on one compositor.
struct Stream {
    conn: Connection,
    queue: EventQueue<State>,
    qh: QueueHandle<State>,
    st: State,
    globals: GlobalList,
    surface: WlSurface,
    presentation: WpPresentation,
    dmabuf: Option<ZwpLinuxDmabufV1>,
    video: Video,
    video_node: PathBuf,
    pix: v4l2::PixFormat,
    streaming: bool,
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl Stream {
    fn open(socket: &Path, alive: &mut dyn FnMut() -> Result<(), String>) -> Result<Self, String> {
        let (video_node, video) = v4l2::find_capture("vivid")?;
        let pix = video.set_format(WIDTH, HEIGHT, v4l2::PIX_FMT_XBGR32)?;
        if (pix.width, pix.height) != (WIDTH, HEIGHT) {
            return Err(format!("vivid chose {}x{}", pix.width, pix.height));
        }
        video.set_control(v4l2::VIVID_CID_TSTAMP_SRC, 1)?;
        let stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
        let conn = Connection::from_socket(stream).map_err(|e| format!("connection: {e}"))?;
        let (globals, queue): (_, EventQueue<State>) =
            registry_queue_init(&conn).map_err(|e| format!("registry: {e}"))?;
        let qh = queue.handle();
        let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
        let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
        let presentation: WpPresentation = compositor::bind(&globals, &qh, 1..=1)?;
        let dmabuf: Option<ZwpLinuxDmabufV1> = compositor::bind(&globals, &qh, 3..=4).ok();
        let surface = wl_compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let toplevel = xdg.get_toplevel(&qh, ());
        toplevel.set_fullscreen(None);
        surface.commit();
        let mut s = Stream {
            conn,
            queue,
            qh,
            st: State::default(),
            globals,
            surface,
            presentation,
            dmabuf,
            video,
            video_node,
            pix,
            streaming: false,
            _keep: vec![
                Box::new(wl_compositor),
                Box::new(wm),
                Box::new(xdg),
                Box::new(toplevel),
            ],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.st.configured || s.st.presentation_clock.is_none() {
            s.pump()?;
            alive()?;
            if Instant::now() > deadline {
                return Err("no configure or presentation clock within 30 s".into());
            }
        }
        if s.st.presentation_clock != Some(CLOCK_MONOTONIC) {
            return Err(format!(
                "wp_presentation clock {:?}, not CLOCK_MONOTONIC",
                s.st.presentation_clock
            ));
        }
        Ok(s)
    }

    fn pump(&mut self) -> Result<bool, String> {
        pump(
            &self.conn,
            &mut self.queue,
            &mut self.st,
            self.streaming.then_some(&self.video),
        )
    }

    /// Capture buffers, with linux-dmabuf where the compositor has it, and the
    /// stream started.
    fn start(&mut self) -> Result<Buffers, String> {
        let bufs = match self.dmabuf.clone() {
            Some(dmabuf) => self.dmabuf_buffers(&dmabuf)?,
            None => self.shm_buffers()?,
        };
        match &bufs {
            Buffers::Dmabuf { fds, size, .. } => {
                for (i, fd) in fds.iter().enumerate() {
                    self.video.qbuf_dmabuf(i as u32, fd.as_fd(), *size)?;
                }
            }
            Buffers::Shm { captured, .. } => {
                for i in 0..captured.len() {
                    self.video.qbuf_mmap(i as u32)?;
                }
            }
        }
        self.video.streamon()?;
        self.streaming = true;
        Ok(bufs)
    }

    fn dmabuf_buffers(&mut self, dmabuf: &ZwpLinuxDmabufV1) -> Result<Buffers, String> {
        let n = self
            .video
            .reqbufs_when_free(CAPTURE_BUFFERS, MEMORY_DMABUF)?;
        let vkms = drm_card::find("vkms", "card")?.path;
        let devices = [&vkms, &self.video_node]
            .into_iter()
            .map(|p| DeviceNumber::of_path(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut allocator = allocator_for(
            &Discovery::scan(),
            &devices,
            Fourcc::Xrgb8888,
            WIDTH,
            HEIGHT,
        )
        .map_err(|e| e.to_string())?;
        let mut fds = Vec::new();
        let mut wl = Vec::new();
        for i in 0..n {
            let buffer = allocator
                .create_buffer(WIDTH, HEIGHT, Fourcc::Xrgb8888, &[Modifier::Linear])
                .map_err(|e| format!("heap buffer for the camera: {e}"))?;
            let stride = buffer.strides().next().unwrap_or(WIDTH * 4);
            if stride != self.pix.bytesperline {
                return Err(format!(
                    "heap buffer pitch {stride}, vivid writes {}",
                    self.pix.bytesperline
                ));
            }
            let fd = buffer
                .handles()
                .next()
                .ok_or("no plane")?
                .try_clone_to_owned()
                .map_err(|e| e.to_string())?;
            let params = dmabuf.create_params(&self.qh, ());
            params.add(fd.as_fd(), 0, 0, stride, 0, 0);
            wl.push(params.create_immed(
                WIDTH as i32,
                HEIGHT as i32,
                XR24,
                Flags::empty(),
                &self.qh,
                i,
            ));
            params.destroy();
            fds.push(fd);
        }
        Ok(Buffers::Dmabuf {
            fds,
            wl,
            size: self.pix.sizeimage,
        })
    }

    fn shm_buffers(&mut self) -> Result<Buffers, String> {
        let n = self.video.reqbufs_when_free(CAPTURE_BUFFERS, MEMORY_MMAP)?;
        let mut captured = Vec::new();
        for i in 0..n {
            let b = self.video.querybuf(i, MEMORY_MMAP)?;
            let fd = self.video.expbuf(i)?;
            let map = Mapping::new(fd.as_fd(), b.length as usize)?;
            captured.push((fd, map));
        }
        let shm: WlShm = compositor::bind(&self.globals, &self.qh, 1..=1)?;
        let frame = (WIDTH * HEIGHT * 4) as usize;
        let memfd = rustix::fs::memfd_create("heapland-camera", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
        rustix::fs::ftruncate(&memfd, (frame * SHM_BUFFERS) as u64)
            .map_err(|e| format!("ftruncate: {e}"))?;
        let pool_map = Mapping::new(memfd.as_fd(), frame * SHM_BUFFERS)?;
        let pool = shm.create_pool(memfd.as_fd(), (frame * SHM_BUFFERS) as i32, &self.qh, ());
        let wl = (0..SHM_BUFFERS)
            .map(|i| {
                pool.create_buffer(
                    (frame * i) as i32,
                    WIDTH as i32,
                    HEIGHT as i32,
                    (WIDTH * 4) as i32,
                    wl_shm::Format::Xrgb8888,
                    &self.qh,
                    i as u32,
                )
            })
            .collect();
        pool.destroy();
        Ok(Buffers::Shm {
            captured,
            pool: pool_map,
            wl,
            free: (0..SHM_BUFFERS).collect(),
            _memfd: memfd,
        })
    }

    fn show(&mut self, buffer: &WlBuffer, capture_ns: u64) {
        show(
            &self.surface,
            &self.presentation,
            &self.qh,
            buffer,
            (WIDTH, HEIGHT),
            capture_ns,
        );
    }

    /// Shows frames until `frames` after the warm-up have been presented.
    fn measure(
        &mut self,
        bufs: &mut Buffers,
        frames: usize,
        alive: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Sample, String> {
        let mut sample = Sample {
            memory: bufs.memory(),
            latencies: Vec::new(),
            discarded: 0,
        };
        let mut warmup_end_ns: Option<u64> = None;
        let mut shown = 0usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sample.latencies.len() < frames {
            if Instant::now() > deadline {
                return Err(format!(
                    "camera: {} of {frames} frames presented in 120 s",
                    sample.latencies.len()
                ));
            }
            alive()?;
            let camera_ready = self.pump()?;
            for tag in std::mem::take(&mut self.st.released) {
                match bufs {
                    Buffers::Dmabuf { fds, size, .. } => {
                        let fd = fds.get(tag as usize).ok_or("unknown buffer released")?;
                        self.video.qbuf_dmabuf(tag, fd.as_fd(), *size)?;
                    }
                    Buffers::Shm { free, .. } => free.push(tag as usize),
                }
            }
            for (capture, presented) in std::mem::take(&mut self.st.presented) {
                match presented {
                    Some(at) if warmup_end_ns.is_some_and(|w| capture > w) => {
                        // Presented before it was captured: a broken clock.
                        let ns = at.checked_sub(capture).ok_or_else(|| {
                            format!("frame captured at {capture} ns presented at {at} ns")
                        })?;
                        sample.latencies.push(Duration::from_nanos(ns));
                    }
                    Some(_) => {}
                    None => sample.discarded += 1,
                }
            }
            if !camera_ready {
                continue;
            }
            let b = match self.video.dqbuf(bufs.v4l2_memory(), 0) {
                Ok(b) => b,
                Err(e) if e.starts_with("no frame within") || e.contains("os error 11") => continue,
                Err(e) => return Err(e),
            };
            let at = capture_ns(&b);
            match bufs {
                Buffers::Dmabuf { wl, .. } => {
                    let buffer = wl[b.index as usize].clone();
                    self.show(&buffer, at);
                }
                Buffers::Shm {
                    captured,
                    pool,
                    wl,
                    free,
                    ..
                } => {
                    let target = free.pop();
                    if let Some(i) = target {
                        let (fd, map) = &captured[b.index as usize];
                        copy_frame(map, fd.as_fd(), self.pix.bytesperline as usize, pool, i)?;
                    }
                    self.video.qbuf_mmap(b.index)?;
                    let Some(i) = target else { continue };
                    let buffer = wl[i].clone();
                    self.show(&buffer, at);
                }
            }
            shown += 1;
            if shown == WARMUP_FRAMES {
                warmup_end_ns = Some(at);
            }
        }
        Ok(sample)
    }

    /// Back to an idle camera and no buffers, whatever happened.
    fn stop(&mut self, bufs: Buffers) {
        let _ = self.video.streamoff();
        self.streaming = false;
        let memory = bufs.v4l2_memory();
        match bufs {
            Buffers::Dmabuf { wl, .. } | Buffers::Shm { wl, .. } => {
                for b in wl {
                    b.destroy();
                }
            }
        }
        self.surface.attach(None, 0, 0);
        self.surface.commit();
        let _ = self.conn.flush();
        let _ = self.video.reqbufs(0, memory);
    }
}

/// Flushes, waits up to 20 ms for the compositor or the `camera`, dispatches.
/// Returns whether the camera has a frame. The camera is passed only while
/// it streams: polling a queue that does not stream starts vb2's read()
/// emulation, and the queue is then busy for VIDIOC_REQBUFS.
pub(super) fn pump(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    st: &mut State,
    camera: Option<&Video>,
) -> Result<bool, String> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    conn.flush().map_err(|e| format!("flush: {e}"))?;
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    let camera_ready = match queue.prepare_read() {
        Some(guard) => {
            let wl = guard.connection_fd();
            let mut fds = vec![PollFd::new(&wl, PollFlags::IN)];
            fds.extend(camera.map(|v| PollFd::new(v, PollFlags::IN)));
            poll(&mut fds, Some(&timeout)).map_err(|e| format!("poll: {e}"))?;
            let wl_ready = !fds[0].revents().is_empty();
            let cam = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            if wl_ready {
                match guard.read() {
                    Ok(_) => {}
                    // Readable but nothing to read yet: the next round reads it.
                    Err(wayland_client::backend::WaylandError::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("read events: {e}")),
                }
            }
            cam
        }
        // Events are queued already: dispatch them, and look at the camera
        // without waiting.
        None => match camera {
            Some(v) => {
                let mut fds = [PollFd::new(v, PollFlags::IN)];
                poll(&mut fds, Some(&Timespec::default())).map_err(|e| format!("poll: {e}"))?;
                !fds[0].revents().is_empty()
            }
            None => false,
        },
    };
    queue
        .dispatch_pending(st)
        .map_err(|e| format!("dispatch: {e}"))?;
    Ok(camera_ready)
}

/// Attaches `buffer` of `size` with presentation feedback tagged with the
/// frame's capture time.
pub(super) fn show(
    surface: &WlSurface,
    presentation: &WpPresentation,
    qh: &QueueHandle<State>,
    buffer: &WlBuffer,
    (w, h): (u32, u32),
    capture_ns: u64,
) {
    surface.attach(Some(buffer), 0, 0);
    surface.damage_buffer(0, 0, w as i32, h as i32);
    let _ = presentation.feedback(surface, qh, capture_ns);
    surface.commit();
}

/// The V4L2 timestamp of a dequeued buffer, in nanoseconds.
pub(super) fn capture_ns(b: &v4l2::Buffer) -> u64 {
    b.tv_sec as u64 * 1_000_000_000 + b.tv_usec as u64 * 1000
}

/// Copies captured frame `src` into shm buffer `index` of `pool`, row by row.
fn copy_frame(
    src: &Mapping,
    src_fd: BorrowedFd<'_>,
    src_stride: usize,
    pool: &mut Mapping,
    index: usize,
) -> Result<(), String> {
    let row = WIDTH as usize * 4;
    let base = index * row * HEIGHT as usize;
    dma_buf::sync(src_fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
        .map_err(|e| format!("SYNC: {e}"))?;
    let dst = pool.bytes_mut();
    let bytes = src.bytes();
    for y in 0..HEIGHT as usize {
        dst[base + y * row..base + (y + 1) * row]
            .copy_from_slice(&bytes[y * src_stride..y * src_stride + row]);
    }
    dma_buf::sync(src_fd, dma_buf::SYNC_END | dma_buf::SYNC_READ).map_err(|e| format!("SYNC: {e}"))
}

/// One camera run on the compositor at `socket`: `frames` latencies after
/// the warm-up. `alive` fails when the compositor died.
pub fn latency(
    socket: &Path,
    frames: usize,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Sample, String> {
    let mut stream = Stream::open(socket, alive)?;
    let mut bufs = match stream.start() {
        Ok(b) => b,
        Err(e) => {
            let _ = stream.video.streamoff();
            let _ = stream.video.reqbufs(0, MEMORY_DMABUF);
            let _ = stream.video.reqbufs(0, MEMORY_MMAP);
            return Err(e);
        }
    };
    let result = stream.measure(&mut bufs, frames, alive);
    stream.stop(bufs);
    result
}

/// vkms's CRC capture of its first CRTC, open while this lives.
struct Crcs {
    data: File,
    pending: String,
}

impl Crcs {
    fn open() -> Result<Self, String> {
        // dri/<minor> on 6.12; newer kernels name the directory after the
        // device and may link the minor to it: found by what it says it is.
        let root = Path::new("/sys/kernel/debug/dri");
        let dir = std::fs::read_dir(root)
            .map_err(|e| format!("{}: {e}", root.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|d| {
                std::fs::read_to_string(d.join("name")).is_ok_and(|n| n.starts_with("vkms"))
                    && d.join("crtc-0/crc/control").exists()
            })
            .map(|d| d.join("crtc-0/crc"))
            .ok_or("no vkms CRC capture under /sys/kernel/debug/dri")?;
        std::fs::write(dir.join("control"), "auto")
            .map_err(|e| format!("{}/control: {e}", dir.display()))?;
        let data = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(dir.join("data"))
            .map_err(|e| format!("{}/data: {e}", dir.display()))?;
        Ok(Crcs {
            data,
            pending: String::new(),
        })
    }

    /// Reads until `quiet` passed with every frame alike, or fails after
    /// `limit`.
    fn wait_still(&mut self, quiet: Duration, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut since = Instant::now();
        let mut last: Option<String> = None;
        while since.elapsed() < quiet {
            if Instant::now() > deadline {
                return Err(format!(
                    "the screen never stayed still for {} ms in {} s",
                    quiet.as_millis(),
                    limit.as_secs()
                ));
            }
            for crc in self.collect(Duration::from_millis(50))? {
                if last.as_ref() != Some(&crc) {
                    last = Some(crc);
                    since = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// The CRCs of the frames scanned out during `window`.
    fn collect(&mut self, window: Duration) -> Result<Vec<String>, String> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.data.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => self.pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("vkms CRC data: {e}")),
            }
            while let Some(at) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=at).collect();
                // "<frame> <crc>...": the frame number is dropped.
                let crc = line
                    .split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push(crc);
            }
        }
        Ok(out)
    }
}

/// Frames the CRTC scanned out and how many of them differed.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub idle_distinct: usize,
    pub frames: usize,
    pub distinct: usize,
}

/// Runs Debian's `weston-simple-dmabuf-v4l` on vivid (XR24, as it is) against
/// the compositor at `socket` and counts the distinct frames vkms scanned
/// out meanwhile. An error when the client does not start or the screen
/// does not change with the camera.
pub fn v4l_client_shown(
    socket: &Path,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Shown, String> {
    let (video_node, video) = v4l2::find_capture("vivid")?;
    drop(video);
    let mut crcs = Crcs::open()?;
    // The last client's window may still be going away: the still sample
    // starts once half a second of frames were all the same.
    crcs.wait_still(Duration::from_millis(500), Duration::from_secs(10))?;
    let idle = crcs.collect(Duration::from_secs(1))?;
    let idle_distinct = idle.iter().collect::<HashSet<_>>().len();
    let log = "/tmp/peer-v4l-client.log";
    let out = File::create(log).map_err(|e| format!("{log}: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("{log}: {e}"))?;
    let mut child = Command::new("/usr/bin/weston-simple-dmabuf-v4l")
        .args(["-v", video_node.to_str().ok_or("non-UTF-8 video node")?])
        .args(["-f", "XR24", "-d", "XR24"])
        .env("WAYLAND_DISPLAY", socket)
        .env("WAYLAND_DEBUG", "client")
        .env(
            "XDG_RUNTIME_DIR",
            socket.parent().unwrap_or(Path::new("/tmp")),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn weston-simple-dmabuf-v4l: {e} (package weston)"))?;
    let result = (|| {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            alive()?;
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited ({status})"));
            }
            // Read and drop the start-up frames: the kernel keeps only 128,
            // and the measured ones must be new.
            crcs.collect(Duration::from_millis(100))?;
        }
        let crcs = crcs.collect(Duration::from_secs(2))?;
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited ({status})"));
        }
        Ok(Shown {
            idle_distinct,
            frames: crcs.len(),
            distinct: crcs.iter().collect::<HashSet<_>>().len(),
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    let result = result.map_err(|e| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "weston-simple-dmabuf-v4l {e}: {}",
            lines[lines.len().saturating_sub(25)..].join(" | ")
        )
    })?;
    if result.idle_distinct > 1 || result.distinct < 5 {
        return Err(format!(
            "weston-simple-dmabuf-v4l ran, but the screen did not follow the camera: {} distinct of {} frames while it ran, {} while still",
            result.distinct, result.frames, result.idle_distinct
        ));
    }
    Ok(result)
}
