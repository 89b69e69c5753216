//! heapland on PL111 as a user starts it: `heapland --backend drm` with nothing but its
//! socket, on a display engine that has no render node and takes only contiguous memory.
//!
//! - the scanout buffers come from the heap that serves PL111 (the log, and bufinfo: a
//!   buffer exported by that heap attached to the display), and QEMU's screendump shows
//!   heapland's background;
//! - with no render node, the display's primary node is linux-dmabuf's main device: a
//!   client gets feedback and a heap batch, negotiates them with heapland-allocator, and
//!   a heap window and a shm window are composited correctly at 1024x768 (screendump);
//! - a heap the display refuses (made wrong on purpose: PL111 declared scatter-gather)
//!   fails the display's test commit, and the output falls back to dumb buffers with one
//!   log line instead of being abandoned.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use heapland_protocols::v2::client::xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2;
use wayland_client::protocol::{
    wl_compositor::WlCompositor,
    wl_shm::{self, WlShm},
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::compositor::{bind, connect, feedback_scope, Heapland, State, XR24};
use super::dma_buf;
use super::dma_heap;
use super::pl111::{parse_ppm, screendump, CLCD};
use super::session::{bufinfo, dev_t_of, wait};
use super::Test;

const HEAP: &str = "system-contiguous";
/// Scattered pages anywhere (the module's `system` here, made for vgem).
const SG_HEAP: &str = "system";
/// heapland's background (backend/headless.rs CLEAR_COLOR, 0.10 0.12 0.16), as pixman
/// rounds it.
const BACKGROUND: [u8; 3] = [26, 31, 41];

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "pl111_session::no_render_node",
            run: no_render_node,
        },
        Test {
            name: "pl111_session::scanout_from_the_display_heap",
            run: scanout_from_the_display_heap,
        },
        Test {
            name: "pl111_session::heap_and_shm_windows_composited",
            run: heap_and_shm_windows_composited,
        },
        Test {
            name: "pl111_session::camera_frame_scanned_out_without_copy",
            run: camera_frame_scanned_out_without_copy,
        },
        Test {
            name: "pl111_session::refused_heap_falls_back_to_dumb_buffers",
            run: refused_heap_falls_back_to_dumb_buffers,
        },
    ]
}

/// vgem (loaded for the pl111 phase) is PL111's only company with a render node: without
/// it the board is what the phase is about, a display engine and nothing to render with.
fn no_render_node() -> Result<(), String> {
    if super::modules::is_loaded("vgem") {
        super::modules::rmmod("vgem")?;
    }
    let render: Vec<String> = std::fs::read_dir("/dev/dri")
        .map_err(|e| format!("/dev/dri: {e}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("renderD"))
        .collect();
    if render.is_empty() {
        Ok(())
    } else {
        Err(format!("render nodes left: {render:?}"))
    }
}

/// Waits for a log line containing `needle`; returns the rest of that line.
fn log_line(comp: &mut Heapland, needle: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        comp.alive()?;
        let log = comp.log_text();
        if let Some(rest) = log.lines().find_map(|l| l.split(needle).nth(1)) {
            return Ok(rest.trim().to_owned());
        }
        if Instant::now() > deadline {
            return Err(format!("no \"{needle}\" in heapland's log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pixels of a screendump equal to `colour`, give or take one per channel.
fn count(px: &[u8], colour: [u8; 3]) -> usize {
    px.chunks_exact(3)
        .filter(|p| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 1))
        .count()
}

/// The most common colour of a screendump and how often it occurs.
fn dominant(px: &[u8]) -> ([u8; 3], usize) {
    let mut counts = std::collections::HashMap::new();
    for p in px.chunks_exact(3) {
        *counts.entry([p[0], p[1], p[2]]).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap_or(([0; 3], 0))
}

/// QEMU's screendumps until one shows heapland's background everywhere but the cursor:
/// the first frame may still be on its way, so up to five, a second apart.
fn shows_background(name: &str) -> Result<String, String> {
    let mut last = String::new();
    for attempt in 0..5 {
        let dump = screendump(&format!("{name}-{attempt}"))?;
        let (w, h, px) = parse_ppm(&dump)?;
        let bg = count(px, BACKGROUND);
        if (w, h) == (1024, 768) && bg + 1024 >= (w * h) as usize {
            return Ok(format!("screendump {attempt}: {bg} background pixels"));
        }
        last = format!(
            "screendump {w}x{h}: {bg} of {} pixels show heapland's background {BACKGROUND:?}, most are {:?}",
            w * h,
            dominant(px)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last)
}

fn scanout_from_the_display_heap() -> Result<(), String> {
    let mut comp = Heapland::start_bare(&["--backend", "drm"])?;
    let heap = log_line(&mut comp, "scanout buffers from DMA-BUF heap ")?;
    let mut errs = Vec::new();
    if heap != HEAP {
        errs.push(format!("scanout buffers from {heap}, not {HEAP}"));
    }
    if let Err(e) = log_line(&mut comp, "is linux-dmabuf's main device") {
        errs.push(e);
    }
    let held = bufinfo()?
        .into_iter()
        .filter(|b| b.exp_name == HEAP && b.attached.iter().any(|a| a == CLCD))
        .count();
    if held == 0 {
        errs.push(format!("bufinfo holds no {HEAP} buffer attached to {CLCD}"));
    }
    match shows_background("pl111-heapland-idle") {
        Ok(info) => println!("INFO pl111_session: {held} {HEAP} buffers on {CLCD}; {info}"),
        Err(e) => errs.push(e),
    }
    if let Err(e) = comp.stop() {
        errs.push(e);
    }
    super::all_ok(errs)
}

const SHM: [u8; 3] = [0x20, 0x90, 0xe0];
const DMABUF: [u8; 3] = [0xf0, 0xc0, 0x10];

fn heap_and_shm_windows_composited() -> Result<(), String> {
    let mut comp = Heapland::start_bare(&["--backend", "drm"])?;
    log_line(&mut comp, "scanout buffers from ")?;
    let (_conn, globals, mut queue) = connect()?;
    let qh = queue.handle();
    let mut st = State::default();
    let compositor: WlCompositor = bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = bind(&globals, &qh, 1..=1)?;
    let shm: WlShm = bind(&globals, &qh, 1..=1)?;
    let dmabuf: ZwpLinuxDmabufV1 = bind(&globals, &qh, 4..=5).map_err(|e| {
        format!("{e}: without a render node, linux-dmabuf must still send feedback")
    })?;
    let heaps: XxDmabufHeapManagerV2 = bind(&globals, &qh, 1..=1)?;

    // Feedback and heap batch: the display's primary node as main device, its heap.
    let _default = feedback_scope(&mut st, &qh, &dmabuf, &heaps, None);
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.heap_done,
        "the default heap batch",
    )?;
    let card = super::drm_card::find("pl111", "card")?;
    let main = st
        .dmabuf_feedback
        .clone()
        .ok_or("joined feedback without linux-dmabuf")?
        .main_device;
    let want = heapland_allocator::DeviceNumber::from_dev_t(dev_t_of(&card.path)?);
    if main != want {
        return Err(format!(
            "main device {main:?}, PL111's primary node is {want:?}"
        ));
    }
    let heap_fd = st
        .heap_fd
        .take()
        .ok_or_else(|| format!("no heap in the batch: {:?}", st.no_heap))?;
    if st.heap_name != HEAP {
        return Err(format!("the batch names {}, not {HEAP}", st.heap_name));
    }
    {
        use heapland_allocator::{
            drm_fourcc::DrmFourcc,
            negotiation::{negotiate, Request, Usage},
            Discovery,
        };
        let feedback = st.dmabuf_feedback.clone().ok_or("no feedback")?;
        let request = Request::new(
            200,
            150,
            vec![DrmFourcc::Xrgb8888],
            Usage {
                cpu: true,
                ..Default::default()
            },
        );
        let n = negotiate(&Discovery::scan(), &feedback, &request)
            .map_err(|e| format!("negotiating heapland's feedback on PL111: {e}"))?;
        println!(
            "INFO pl111_session: negotiated tranche {}, heap {}",
            n.tranche, n.heap.name
        );
        if n.heap.name != HEAP {
            return Err(format!(
                "heapland-allocator negotiates {}, not {HEAP}",
                n.heap.name
            ));
        }
    }

    // A toplevel, committed without a buffer until configured.
    let mut window = |st: &mut State, comp: &mut Heapland, what: &str| {
        st.configured = false;
        let surface = compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let toplevel = xdg.get_toplevel(&qh, ());
        surface.commit();
        wait(&mut queue, st, comp, |s| s.configured, what).map(|()| (surface, xdg, toplevel))
    };

    // First window: 400x300 of wl_shm.
    let (sw, sh) = (400i32, 300i32);
    let (surface1, _xdg1, _top1) = window(&mut st, &mut comp, "configure of the shm window")?;
    let memfd = rustix::fs::memfd_create("pl111-shm", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = File::from(memfd);
    let px = u32::from_le_bytes([SHM[2], SHM[1], SHM[0], 0]);
    let bytes: Vec<u8> = std::iter::repeat_n(px.to_le_bytes(), (sw * sh) as usize)
        .flatten()
        .collect();
    file.write_all(&bytes)
        .map_err(|e| format!("fill shm: {e}"))?;
    let pool = shm.create_pool(file.as_fd(), sw * sh * 4, &qh, ());
    let shm_buf = pool.create_buffer(0, sw, sh, sw * 4, wl_shm::Format::Xrgb8888, &qh, ());
    surface1.attach(Some(&shm_buf), 0, 0);
    surface1.damage_buffer(0, 0, sw, sh);
    surface1.commit();

    // Second window, on top: 200x150 from the heap the batch named.
    let (dw, dh) = (200u32, 150u32);
    let len = u64::from(dw * dh * 4);
    let buf =
        dma_heap::alloc(heap_fd.as_fd(), len).map_err(|e| format!("alloc from {HEAP}: {e}"))?;
    {
        let mut map = dma_buf::Mapping::new(buf.as_fd(), len as usize)?;
        dma_buf::sync(buf.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| e.to_string())?;
        map.words_mut()
            .fill(u32::from_le_bytes([DMABUF[2], DMABUF[1], DMABUF[0], 0]));
        dma_buf::sync(buf.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| e.to_string())?;
    }
    let params = dmabuf.create_params(&qh, ());
    params.add(buf.as_fd(), 0, 0, dw * 4, 0, 0);
    let dma_buf_obj = params.create_immed(dw as i32, dh as i32, XR24, Flags::empty(), &qh, ());
    let (surface2, _xdg2, _top2) = window(&mut st, &mut comp, "configure of the heap window")?;
    surface2.attach(Some(&dma_buf_obj), 0, 0);
    surface2.damage_buffer(0, 0, dw as i32, dh as i32);
    // Two frames: the first one's callback may come before its flip.
    for what in ["a frame with both windows", "a second frame"] {
        st.frame_done = false;
        surface2.frame(&qh, ());
        surface2.commit();
        wait(&mut queue, &mut st, &mut comp, |s| s.frame_done, what)?;
    }

    let dump = screendump("pl111-two-windows")?;
    let (w, h, px) = parse_ppm(&dump)?;
    let (shm_px, dma_px) = (count(px, SHM), count(px, DMABUF));
    println!("INFO pl111_session: screendump {w}x{h}: {shm_px} shm pixels, {dma_px} heap pixels");
    let mut errs = Vec::new();
    let dma_area = (dw * dh) as usize;
    // The heap window is on top; the cascade (48 px) puts it inside the shm window.
    let shm_area = (sw * sh) as usize - dma_area;
    if !(dma_area - 200..=dma_area).contains(&dma_px) {
        errs.push(format!(
            "{dma_px} pixels of the heap window's colour, want {dma_area}"
        ));
    }
    if !(shm_area - 200..=shm_area).contains(&shm_px) {
        errs.push(format!(
            "{shm_px} pixels of the shm window's colour, want {shm_area}"
        ));
    }
    drop(dma_buf_obj);
    drop(shm_buf);
    if let Err(e) = comp.stop() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// vivid's dma-contig instance captures 640x480 frames into buffers from the heap the
/// client's fullscreen surface is given for the display and the camera (`add_device`),
/// and PL111 scans the camera's buffer out as it is: one dma-buf, exported by the heap,
/// attached to the camera and to the display (session.rs's test, on this board).
fn camera_frame_scanned_out_without_copy() -> Result<(), String> {
    let (node, video) = super::pl111::vivid_instance(1)?;
    // vivid's webcam input captures at webcam sizes only: the display runs its 640x480
    // mode, at the refresh PL111's connector lists for it.
    let refresh = {
        use drm::control::Device as _;
        let card = super::drm_card::find("pl111", "card")?;
        let res = card
            .resource_handles()
            .map_err(|e| format!("GETRESOURCES: {e}"))?;
        res.connectors()
            .iter()
            .filter_map(|c| card.get_connector(*c, true).ok())
            .flat_map(|info| info.modes().to_vec())
            .find(|m| m.size() == (640, 480))
            .map(|m| m.vrefresh())
            .ok_or("PL111 lists no 640x480 mode")?
    };
    let mode = format!("640x480@{refresh}");
    let comp = Heapland::start_bare(&["--backend", "drm", "--output", &mode])?;
    super::session::fullscreen_camera_scanned_out(comp, &node, &video, (640, 480), (CLCD, "pl111"))
}

/// Serves PL111 as at boot again when dropped, whatever the test did before failing:
/// later phases need it.
struct RestoreDisplayHeap;

impl Drop for RestoreDisplayHeap {
    fn drop(&mut self) {
        let _ = dma_heap::control("remove", &format!("amba/{CLCD}:sg"));
        match dma_heap::control_raw("add", &format!("amba/{CLCD}")) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(17) => {} // EEXIST: served so already
            Err(e) => println!("FAIL pl111_session::restore_display_heap: {e}"),
        }
    }
}

/// Makes the module declare PL111 scatter-gather (a wrong description, on purpose): the
/// best heap for the display is then `system` (scattered pages, ranked before contiguous
/// memory), whose buffers PL111 refuses at the test commit. heapland must say so once and
/// scan out dumb buffers.
///
/// A fresh guest may hand out adjacent 1 MiB chunks, which PL111 would take: the heap's
/// free memory is cut into separate 1 MiB holes first (every other buffer of a run freed,
/// its neighbours kept), where the page allocator finds heapland's chunks.
fn refused_heap_falls_back_to_dumb_buffers() -> Result<(), String> {
    let _restore = RestoreDisplayHeap;
    dma_heap::control("remove", &format!("amba/{CLCD}"))?;
    dma_heap::control("add", &format!("amba/{CLCD}:sg"))?;
    let sg = super::dma_heap::Heap::open(SG_HEAP)?;
    let mut run = (0..32)
        .map(|_| sg.alloc(1 << 20))
        .collect::<Result<Vec<_>, _>>()?;
    let kept: Vec<_> = run.drain(..).step_by(2).collect();
    drop(run);
    let mut comp = Heapland::start_bare(&["--backend", "drm"])?;
    let refused = log_line(&mut comp, "the display refused ")?;
    let source = log_line(&mut comp, "scanout buffers from ")?;
    println!("INFO pl111_session: refused {refused}; now {source}");
    let mut errs = Vec::new();
    if !refused.contains(SG_HEAP) || refused.contains(HEAP) {
        errs.push(format!("refused {refused}, expected the sg heap {SG_HEAP}"));
    }
    if source != "KMS dumb buffers" {
        errs.push(format!("scanout buffers from {source}, not dumb buffers"));
    }
    if let Err(e) = shows_background("pl111-dumb-fallback") {
        errs.push(format!("after the fallback: {e}"));
    }
    if let Err(e) = comp.stop() {
        errs.push(e);
    }
    drop(kept);
    super::all_ok(errs)
}
