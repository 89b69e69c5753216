//! heapland as the session compositor on vkms, fed by the vivid camera: the
//! end-to-end claim of the project, that scanout, GPU and camera buffers can
//! come from one heap.
//!
//! `heapland --backend drm --share-with /dev/videoN` takes vkms through
//! libseat (builtin backend, as root) and allocates its scanout swapchain from
//! the heap that satisfies vkms, vgem's render node and the camera. A client
//! asks the heap protocol for the heap of the default tranche, declares the
//! camera with `add_device`, gets a heap fd, captures vivid frames straight
//! into buffers from it (V4L2_MEMORY_DMABUF, vb2 dma-contig), imports one into
//! vgem (the GPU) and attaches it with linux-dmabuf.
//!
//! How the test knows, from the kernel's own bookkeeping:
//! - `/sys/kernel/debug/dma_buf/bufinfo` lists every live dma-buf with its
//!   exporter name, which for device_heap buffers is the heap's name: the
//!   compositor's scanout buffers (attached to vkms) and the client's capture
//!   buffer (attached to vivid and vgem) must name the same heap;
//! - `/sys/kernel/debug/dri/N/state` shows vkms's primary plane holding a
//!   framebuffer allocated by heapland from an imported dma-buf;
//! - the screenshot is read from the scanout buffer itself (through a CPU
//!   mapping of the dma-buf) and must hold the captured camera frame.

use std::{
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::{fs::FileTypeExt, net::UnixStream},
    },
    path::Path,
    time::{Duration, Instant},
};

use drm::control::Device as _;
use heapland_protocols::v2::client::xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2;
use wayland_client::{
    globals::registry_queue_init,
    protocol::{wl_compositor::WlCompositor, wl_surface::WlSurface},
    Connection, QueueHandle,
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::{
    compositor::{feedback_scope, read_png, Heapland, State, RUNTIME_DIR, SOCKET, XR24},
    dma_buf::{self, Mapping},
    drm_card,
    v4l2::{self, MEMORY_DMABUF},
    Test,
};

const CAM_W: u32 = 640;
const CAM_H: u32 = 480;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "session::camera_frame_scanned_out_from_one_heap",
            run: camera_frame_scanned_out_from_one_heap,
        },
        Test {
            name: "session::fullscreen_camera_gets_scanout_tranche_and_plane",
            run: fullscreen_camera_gets_scanout_tranche_and_plane,
        },
    ]
}

/// One entry of bufinfo: exporter name, inode, buffer name, attached devices.
#[derive(Debug)]
pub(super) struct BufInfo {
    pub(super) exp_name: String,
    pub(super) inode: u64,
    pub(super) name: String,
    pub(super) attached: Vec<String>,
}

pub(super) fn bufinfo() -> Result<Vec<BufInfo>, String> {
    let text = std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo")
        .map_err(|e| format!("read bufinfo: {e}"))?;
    let mut out: Vec<BufInfo> = Vec::new();
    let mut in_attached = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // size flags mode count exp_name ino [name]
        if fields.len() >= 6 && fields[0].chars().all(|c| c.is_ascii_digit()) {
            out.push(BufInfo {
                exp_name: fields[4].to_owned(),
                inode: fields[5].parse().unwrap_or(0),
                name: fields[6..].join(" "),
                attached: Vec::new(),
            });
            in_attached = false;
        } else if line.trim() == "Attached Devices:" {
            in_attached = true;
        } else if in_attached && line.starts_with('\t') && !line.contains("Total") {
            if let Some(b) = out.last_mut() {
                b.attached.push(line.trim().to_owned());
            }
        } else {
            in_attached = false;
        }
    }
    Ok(out)
}

pub(super) fn dev_t_of(path: &Path) -> Result<u64, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{} is not a character device", path.display()));
    }
    Ok(std::os::unix::fs::MetadataExt::rdev(&meta))
}

fn camera_frame_scanned_out_from_one_heap() -> Result<(), String> {
    let (video_node, video) = v4l2::find_capture("vivid")?;
    let video_path = video_node
        .to_str()
        .ok_or("non-UTF-8 video node path")?
        .to_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--share-with", &video_path])?;

    // The compositor's scanout heap, from its log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let scanout_heap = loop {
        comp.alive()?;
        let log = comp.log_text();
        if let Some(heap) = log
            .lines()
            .find_map(|l| l.split("scanout buffers from DMA-BUF heap ").nth(1))
        {
            break heap.trim().to_owned();
        }
        if Instant::now() > deadline {
            return Err(format!("no scanout heap in the compositor's log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let Client {
        conn,
        mut queue,
        qh,
        mut st,
        compositor,
        wm,
        dmabuf,
        heaps,
    } = Client::connect()?;

    // 1. The heap for the default tranche once the camera is declared.
    let (_linux, feedback) = feedback_scope(&mut st, &qh, &dmabuf, &heaps, None);
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "first heap batch",
    )?;
    st.expect_new_batch();
    feedback.add_device(dev_t_of(&video_node)?.to_ne_bytes().to_vec());
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "heap batch after add_device",
    )?;
    let heap_fd = match (st.heap_fd.take(), &st.no_heap) {
        (Some(fd), _) => fd,
        (None, Some(msg)) => return Err(format!("no heap for display + camera: {msg}")),
        (None, None) => return Err("heap batch without heap or no_heap".into()),
    };
    if st.heap_name != scanout_heap {
        return Err(format!(
            "the client was given heap {} for the camera, the compositor scans out from {scanout_heap}",
            st.heap_name
        ));
    }

    // 2. Capture a camera frame straight into buffers from that heap.
    let capture = Capture::run(&video, (CAM_W, CAM_H), heap_fd.as_fd(), &st.heap_name)?;
    let (pix, frame) = (capture.pix, &capture.frame);
    let frame_fd = capture.frame_fd();

    // 3. The GPU (vgem) imports the same buffer.
    let gpu = drm_card::find("vgem", "renderD")?;
    let gem = gpu
        .prime_fd_to_buffer(frame_fd)
        .map_err(|e| format!("vgem PRIME import: {e}"))?;

    // 4. Show the frame: linux-dmabuf buffer on an xdg toplevel.
    let params = dmabuf.create_params(&qh, ());
    params.add(frame_fd, 0, 0, pix.bytesperline, 0, 0);
    let buffer = params.create_immed(CAM_W as i32, CAM_H as i32, XR24, Flags::empty(), &qh, ());
    let surface: WlSurface = compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let _toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.configured,
        "configure",
    )?;
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, CAM_W as i32, CAM_H as i32);
    surface.frame(&qh, ());
    surface.commit();
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.frame_done,
        "frame callback",
    )?;

    // 5. The scanout buffer holds the camera's pixels.
    let stride = pix.bytesperline as usize;
    let camera_rgb = |x: usize, y: usize| {
        let i = y * stride + x * 4;
        [frame[i + 2], frame[i + 1], frame[i]]
    };
    let probes = [
        (8usize, 8usize),
        (320, 100),
        (600, 240),
        (100, 400),
        (639, 479),
    ];
    comp.signal(rustix::process::Signal::USR1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mismatch = match read_png(&comp.png) {
            Some((pw, rgb)) => probes.iter().find_map(|&(x, y)| {
                let i = (y * pw as usize + x) * 3;
                let got = [rgb[i], rgb[i + 1], rgb[i + 2]];
                (got != camera_rgb(x, y))
                    .then(|| format!("({x},{y}) is {got:?}, camera has {:?}", camera_rgb(x, y)))
            }),
            None => Some("no screenshot yet".to_owned()),
        };
        match mismatch {
            None => break,
            Some(m) if Instant::now() > deadline => {
                return Err(format!(
                    "scanout buffer does not show the camera frame: {m}"
                ))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }

    // 6. The kernel's view: one heap for scanout, camera and GPU.
    let infos = bufinfo()?;
    let scanout: Vec<&BufInfo> = infos
        .iter()
        .filter(|b| b.name.starts_with("heapland") && b.attached.iter().any(|d| d == "vkms"))
        .collect();
    if scanout.is_empty() {
        return Err(format!(
            "no heapland buffer attached to vkms in bufinfo: {infos:?}"
        ));
    }
    if let Some(bad) = scanout.iter().find(|b| b.exp_name != scanout_heap) {
        return Err(format!("scanout buffer {bad:?} is not from {scanout_heap}"));
    }
    let frame_inode = dma_buf::inode(frame_fd)?;
    let camera_buf = infos
        .iter()
        .find(|b| b.inode == frame_inode)
        .ok_or_else(|| format!("camera buffer (inode {frame_inode}) not in bufinfo"))?;
    if camera_buf.exp_name != scanout_heap {
        return Err(format!(
            "camera buffer comes from {}, scanout from {scanout_heap}",
            camera_buf.exp_name
        ));
    }
    for dev in ["vivid.0", "vgem"] {
        if !camera_buf.attached.iter().any(|d| d == dev) {
            return Err(format!(
                "camera buffer is not attached to {dev}: {camera_buf:?}"
            ));
        }
    }
    let state = kms_state("vkms")?;
    if !state.contains("allocated by = heapland") || !state.contains("imported=yes") {
        return Err(format!(
            "vkms's plane does not hold an imported heapland framebuffer:\n{state}"
        ));
    }
    println!(
        "INFO session: scanout ({} buffers), camera and GPU share heap {scanout_heap}",
        scanout.len()
    );

    let _ = gpu.close_buffer(gem);
    drop(buffer);
    drop(conn);
    capture.stop(&video);
    drop(heap_fd);
    comp.stop()
}

/// A fullscreen camera window: its surface feedback gains a scanout tranche
/// on the display device once it covers the output, with a heap that serves
/// display and camera; and the camera buffer goes on vkms's primary plane
/// untouched (bufinfo lists vkms among the devices attached to it).
fn fullscreen_camera_gets_scanout_tranche_and_plane() -> Result<(), String> {
    let (video_node, video) = v4l2::find_capture("vivid")?;
    let video_path = video_node
        .to_str()
        .ok_or("non-UTF-8 video node path")?
        .to_owned();
    let mode = format!("{CAM_W}x{CAM_H}@60");
    let comp = Heapland::start_with(&[
        "--backend",
        "drm",
        "--output",
        &mode,
        "--share-with",
        &video_path,
    ])?;
    fullscreen_camera_scanned_out(comp, &video_node, &video, (CAM_W, CAM_H), ("vkms", "vkms"))
}

/// The body of the fullscreen camera test, for any display whose only mode is
/// `(cam_w, cam_h)`, with heapland already started: `display` is its device
/// name in bufinfo and the DRM driver name of its card.
pub(super) fn fullscreen_camera_scanned_out(
    mut comp: Heapland,
    video_node: &Path,
    video: &v4l2::Video,
    (cam_w, cam_h): (u32, u32),
    (display, driver): (&str, &str),
) -> Result<(), String> {
    let Client {
        conn,
        mut queue,
        qh,
        mut st,
        compositor,
        wm,
        dmabuf,
        heaps,
    } = Client::connect()?;

    let surface: WlSurface = compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_fullscreen(None);
    let (_linux, feedback) = feedback_scope(&mut st, &qh, &dmabuf, &heaps, Some(&surface));
    surface.commit();
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.configured,
        "configure",
    )?;
    if st.configured_size != (cam_w as i32, cam_h as i32) {
        return Err(format!(
            "fullscreen configure is {:?}, the output is {cam_w}x{cam_h}",
            st.configured_size
        ));
    }
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "surface heap batch",
    )?;
    if st.first_tranche_flags == Some(1) {
        return Err("scanout tranche before the surface shows anything".into());
    }
    st.expect_new_batch();
    feedback.add_device(dev_t_of(video_node)?.to_ne_bytes().to_vec());
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "batch after add_device",
    )?;
    let heap_fd = st
        .heap_fd
        .take()
        .ok_or_else(|| format!("no heap for the camera: {:?}", st.no_heap))?;
    let heap_name = st.heap_name.clone();

    let capture = Capture::run(video, (cam_w, cam_h), heap_fd.as_fd(), &heap_name)?;
    let params = dmabuf.create_params(&qh, ());
    params.add(capture.frame_fd(), 0, 0, capture.pix.bytesperline, 0, 0);
    let buffer = params.create_immed(cam_w as i32, cam_h as i32, XR24, Flags::empty(), &qh, ());
    st.expect_new_batch();
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, cam_w as i32, cam_h as i32);
    surface.frame(&qh, ());
    surface.commit();

    // Covering the output makes the surface scanout-capable: a new batch
    // whose first tranche is the scanout one, served by the same heap.
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "re-sent batch with a scanout tranche",
    )?;
    if st.first_tranche_flags != Some(1) {
        return Err(format!(
            "the re-sent batch starts with tranche flags {:?}, not scanout",
            st.first_tranche_flags
        ));
    }
    if st.heap_name != heap_name {
        return Err(format!(
            "scanout tranche heap {} differs from the camera's {heap_name}",
            st.heap_name
        ));
    }
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.frame_done,
        "frame callback",
    )?;

    // Feedback asked for only now starts from the surface's current plan,
    // on both protocols alike: scanout tranche first, then the main one.
    st.expect_new_batch();
    let _late = feedback_scope(&mut st, &qh, &dmabuf, &heaps, Some(&surface));
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done && s.dmabuf_tranches.is_some(),
        "late surface feedback",
    )?;
    let dmabuf_tranches = st.dmabuf_tranches.clone().unwrap_or_default();
    if dmabuf_tranches.len() != 2
        || dmabuf_tranches.first() != Some(&1)
        || st.first_tranche_flags != Some(1)
    {
        return Err(format!(
            "late surface feedback: linux-dmabuf tranche flags {dmabuf_tranches:?}, heap protocol first tranche flags {:?}",
            st.first_tranche_flags
        ));
    }

    // Direct scanout: KMS imported the camera buffer itself.
    let frame_inode = dma_buf::inode(capture.frame_fd())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let infos = bufinfo()?;
        let camera_buf = infos.iter().find(|b| b.inode == frame_inode);
        if camera_buf.is_some_and(|b| b.attached.iter().any(|d| d == display)) {
            // Zero copies: the dma-buf the camera wrote, exported by the heap, is the
            // one the display reads.
            if camera_buf.is_some_and(|b| b.exp_name != heap_name) {
                return Err(format!(
                    "camera buffer not exported by {heap_name}: {camera_buf:?}"
                ));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the camera buffer was not scanned out directly (not attached to {display}): {camera_buf:?}\n{}",
                comp.log_text()
            ));
        }
        queue
            .roundtrip(&mut st)
            .map_err(|e| format!("roundtrip: {e}"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    // And in the KMS state: the display's primary plane scans out the very
    // dma-buf the camera wrote (not a copy of it, nor a buffer that is
    // merely attached).
    let card = super::drm_card::find(driver, "card")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let plane = loop {
        match card.plane_showing(frame_inode)? {
            Some((plane, true)) => break plane,
            Some((plane, false)) => {
                return Err(format!(
                    "the camera buffer is on plane {plane} of {display}, not the primary plane"
                ))
            }
            None if Instant::now() > deadline => {
                return Err(format!(
                    "no plane of {display} scans out the camera buffer (inode {frame_inode}) in the KMS state"
                ))
            }
            None => {
                queue
                    .roundtrip(&mut st)
                    .map_err(|e| format!("roundtrip: {e}"))?;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    println!(
        "INFO session: camera buffer from {heap_name} is the framebuffer of {display}'s primary plane {plane} in the KMS state, no copy"
    );

    drop(buffer);
    drop(conn);
    capture.stop(video);
    comp.stop()
}

/// A connected client with the globals the tests use.
struct Client {
    conn: Connection,
    queue: wayland_client::EventQueue<State>,
    qh: QueueHandle<State>,
    st: State,
    compositor: WlCompositor,
    wm: XdgWmBase,
    dmabuf: ZwpLinuxDmabufV1,
    heaps: XxDmabufHeapManagerV2,
}

impl Client {
    fn connect() -> Result<Client, String> {
        let stream = UnixStream::connect(Path::new(RUNTIME_DIR).join(SOCKET))
            .map_err(|e| format!("connect: {e}"))?;
        let conn =
            Connection::from_socket(stream).map_err(|e| format!("wayland connection: {e}"))?;
        let (globals, queue) =
            registry_queue_init::<State>(&conn).map_err(|e| format!("registry: {e}"))?;
        let qh: QueueHandle<State> = queue.handle();
        let bind_err =
            |what: &str, e: wayland_client::globals::BindError| format!("bind {what}: {e}");
        Ok(Client {
            compositor: globals
                .bind(&qh, 4..=5, ())
                .map_err(|e| bind_err("wl_compositor", e))?,
            wm: globals
                .bind(&qh, 1..=1, ())
                .map_err(|e| bind_err("xdg_wm_base", e))?,
            // Version 6: no main_device (steady_state's clients, in the
            // same phase, bind version 4).
            dmabuf: globals
                .bind(&qh, 6..=6, ())
                .map_err(|e| bind_err("linux-dmabuf at version 6", e))?,
            heaps: globals
                .bind(&qh, 1..=1, ())
                .map_err(|e| bind_err("heap manager", e))?,
            conn,
            queue,
            qh,
            st: State::default(),
        })
    }
}

/// Camera frames captured into heap buffers; the first frame is kept out of
/// the queue for the test to use.
struct Capture {
    pix: v4l2::PixFormat,
    bufs: Vec<OwnedFd>,
    frame_index: usize,
    frame: Vec<u8>,
}

impl Capture {
    fn run(
        video: &v4l2::Video,
        (cam_w, cam_h): (u32, u32),
        heap: BorrowedFd<'_>,
        heap_name: &str,
    ) -> Result<Capture, String> {
        let pix = video.set_format(cam_w, cam_h, v4l2::PIX_FMT_XBGR32)?;
        if (pix.width, pix.height) != (cam_w, cam_h) {
            return Err(format!("vivid chose {}x{}", pix.width, pix.height));
        }
        let size = u64::from(pix.sizeimage).div_ceil(4096) * 4096;
        let granted = video.reqbufs(2, MEMORY_DMABUF)?;
        let bufs: Vec<OwnedFd> = (0..granted)
            .map(|_| super::dma_heap::alloc(heap, size))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC from {heap_name}: {e}"))?;
        for (i, b) in bufs.iter().enumerate() {
            video.qbuf_dmabuf(i as u32, b.as_fd(), size as u32)?;
        }
        video.streamon()?;
        let mut captured = None;
        for _ in 0..2 {
            let b = video.dqbuf(MEMORY_DMABUF, 20_000)?;
            if captured.is_some() {
                video.qbuf_dmabuf(b.index, bufs[b.index as usize].as_fd(), size as u32)?;
            } else {
                captured = Some(b.index as usize);
            }
        }
        let frame_index = captured.ok_or("no frame captured")?;
        let fd = bufs[frame_index].as_fd();
        let frame = {
            let map = Mapping::new(fd, size as usize)?;
            dma_buf::sync(fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
                .map_err(|e| format!("SYNC: {e}"))?;
            let bytes = map.bytes()[..pix.sizeimage as usize].to_vec();
            dma_buf::sync(fd, dma_buf::SYNC_END | dma_buf::SYNC_READ)
                .map_err(|e| format!("SYNC: {e}"))?;
            bytes
        };
        if frame.iter().all(|&b| b == 0) {
            return Err("the captured frame is all zero".into());
        }
        Ok(Capture {
            pix,
            bufs,
            frame_index,
            frame,
        })
    }

    fn frame_fd(&self) -> BorrowedFd<'_> {
        self.bufs[self.frame_index].as_fd()
    }

    fn stop(self, video: &v4l2::Video) {
        let _ = video.streamoff();
        let _ = video.reqbufs(0, MEMORY_DMABUF);
    }
}

/// The atomic state of the DRM device whose driver is `driver`, from debugfs.
pub(super) fn kms_state(driver: &str) -> Result<String, String> {
    let dir =
        std::fs::read_dir("/sys/kernel/debug/dri").map_err(|e| format!("debugfs dri: {e}"))?;
    for entry in dir.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.split_whitespace().next() == Some(driver) {
            return std::fs::read_to_string(entry.path().join("state"))
                .map_err(|e| format!("{}: {e}", entry.path().display()));
        }
    }
    Err(format!("no {driver} under /sys/kernel/debug/dri"))
}

pub(super) fn wait(
    queue: &mut wayland_client::EventQueue<State>,
    st: &mut State,
    comp: &mut Heapland,
    done: fn(&State) -> bool,
    what: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(st) {
        queue
            .roundtrip(st)
            .map_err(|e| format!("roundtrip waiting for {what}: {e}\n{}", comp.log_text()))?;
        if let Some(err) = &st.feedback_error {
            return Err(format!("waiting for {what}: {err}"));
        }
        comp.alive()?;
        if Instant::now() > deadline {
            return Err(format!("no {what}:\n{}", comp.log_text()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
