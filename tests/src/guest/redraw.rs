//! When heapland draws, and what it keeps of client buffers, on the drm
//! backend (vkms).
//!
//! - An idle compositor does not wake, with pixman and with GLES: with a
//!   window shown and nothing changing, its threads make no context switch
//!   over five seconds (read from `/proc/PID/task/*/status`, as a
//!   power-conscious user would with powertop), and its client gets no frame
//!   callback. One commit then brings exactly one frame callback, and the
//!   compositor wakes: the count can fail.
//! - A client dma-buf is freed when the client lets it go: once the surface
//!   shows another buffer and the client destroyed the `wl_buffer` and closed
//!   its fd, the kernel's list of live dma-bufs (`bufinfo`) no longer has it.
//!   Before that, bufinfo says who exported it (the heap) and who attached
//!   it (the renderer's device, when the renderer imports it through a
//!   device).

use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use wayland_client::{
    protocol::{wl_buffer::WlBuffer, wl_compositor::WlCompositor, wl_surface::WlSurface},
    Connection, EventQueue, QueueHandle,
};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::{
        xdg_surface::XdgSurface, xdg_toplevel::XdgToplevel, xdg_wm_base::XdgWmBase,
    },
};

use super::{
    compositor::{self, Heapland, State, XR24},
    dma_buf, dma_heap,
    session::{bufinfo, wait},
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "redraw::idle_drm_compositor_makes_no_wakeups_and_no_frame_callbacks",
            run: idle_drm_compositor_makes_no_wakeups_and_no_frame_callbacks,
        },
        Test {
            name: "redraw::client_dmabuf_is_freed_once_the_client_lets_it_go",
            run: client_dmabuf_is_freed_once_the_client_lets_it_go,
        },
        Test {
            name: "redraw::idle_gles_compositor_makes_no_wakeups",
            run: idle_gles_compositor_makes_no_wakeups,
        },
        Test {
            name: "redraw::gles_frees_a_client_dmabuf_once_the_client_lets_it_go",
            run: gles_frees_a_client_dmabuf_once_the_client_lets_it_go,
        },
    ]
}

const W: u32 = 256;
const H: u32 = 256;
const STRIDE: u32 = W * 4;

/// heapland on vkms with one client window showing a heap dma-buf.
struct Shown {
    comp: Heapland,
    conn: Connection,
    queue: EventQueue<State>,
    qh: QueueHandle<State>,
    st: State,
    heap: dma_heap::Heap,
    dmabuf: ZwpLinuxDmabufV1,
    _compositor: WlCompositor,
    _wm: XdgWmBase,
    surface: WlSurface,
    xdg: (XdgSurface, XdgToplevel),
    buffer: WlBuffer,
    buffer_fd: OwnedFd,
}

/// Starts heapland on the drm backend, and shows a window whose buffer is
/// a dma-buf the client allocated from the display's heap, named `name`.
fn show_window(name: &str, gles: bool) -> Result<Shown, String> {
    // With Xwayland, as a session runs: idle must stay idle with it.
    let config = super::compositor::WITH_X11_CONFIG;
    std::fs::write(config, "xwayland = true\n").map_err(|e| format!("{config}: {e}"))?;
    let args = ["--backend", "drm", "--config", config];
    let mut comp = if gles {
        Heapland::start_gles(&args)?
    } else {
        Heapland::start_with(&args)?
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let heap_name = loop {
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
    let (conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(&globals, &qh, 3..=4)?;
    let mut st = State::default();

    let heap = dma_heap::Heap::open(&heap_name)?;
    let (buffer, buffer_fd) = heap_buffer(&heap, &dmabuf, &qh, name, 0x00c0_4020, 1)?;
    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.configured,
        "configure",
    )?;
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, W as i32, H as i32);
    surface.frame(&qh, ());
    surface.commit();
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.frame_done,
        "first frame callback",
    )?;
    Ok(Shown {
        comp,
        conn,
        queue,
        qh,
        st,
        heap,
        dmabuf,
        _compositor: wl_compositor,
        _wm: wm,
        surface,
        xdg: (xdg, toplevel),
        buffer,
        buffer_fd,
    })
}

/// A `W`x`H` XR24 dma-buf from `heap` filled with `colour`, named `name`,
/// as a wl_buffer tagged `tag`.
fn heap_buffer(
    heap: &dma_heap::Heap,
    dmabuf: &ZwpLinuxDmabufV1,
    qh: &QueueHandle<State>,
    name: &str,
    colour: u32,
    tag: u32,
) -> Result<(WlBuffer, OwnedFd), String> {
    let len = u64::from(STRIDE * H);
    let fd = heap.alloc(len)?;
    dma_buf::set_name(fd.as_fd(), name)?;
    {
        let mut map = dma_buf::Mapping::new(fd.as_fd(), len as usize)?;
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC: {e}"))?;
        for px in map.bytes_mut().chunks_exact_mut(4) {
            px.copy_from_slice(&colour.to_le_bytes());
        }
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC: {e}"))?;
    }
    let params = dmabuf.create_params(qh, ());
    params.add(fd.as_fd(), 0, 0, STRIDE, 0, 0);
    let buffer = params.create_immed(W as i32, H as i32, XR24, Flags::empty(), qh, tag);
    params.destroy();
    Ok((buffer, fd))
}

/// Context switches of every thread of `pid` so far, by thread.
pub(super) fn context_switches(pid: u32) -> Result<HashMap<String, u64>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = entry.map_err(|e| format!("{dir}: {e}"))?.path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue; // the thread ended meanwhile
        };
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let tid = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let switches: u64 = status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(
            format!("{} ({})", comm.trim(), tid.unwrap_or_default()),
            switches,
        );
    }
    Ok(out)
}

/// Waits until `pid` has gone 2 s without a wake-up, or `limit` has passed.
pub(super) fn wait_until_quiet(pid: u32, limit: Duration) -> Result<(), String> {
    let by = Instant::now() + limit;
    loop {
        let a = context_switches(pid)?;
        std::thread::sleep(Duration::from_secs(2));
        if wakeups(&a, &context_switches(pid)?).is_empty() || Instant::now() > by {
            return Ok(());
        }
    }
}

/// Context switches between two samples, by thread, leaving out threads
/// that made none.
pub(super) fn wakeups(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut woke: Vec<(String, u64)> = after
        .iter()
        .map(|(t, n)| (t.clone(), n - before.get(t).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    woke.sort();
    woke
}

/// Reads whatever the compositor sent without waiting, and dispatches it.
fn read_pending(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    st: &mut State,
) -> Result<(), String> {
    queue
        .dispatch_pending(st)
        .map_err(|e| format!("dispatch: {e}"))?;
    if let Some(guard) = conn.prepare_read() {
        match guard.read() {
            Ok(_) => {}
            Err(wayland_client::backend::WaylandError::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    queue
        .dispatch_pending(st)
        .map_err(|e| format!("dispatch: {e}"))?;
    Ok(())
}

fn idle_drm_compositor_makes_no_wakeups_and_no_frame_callbacks() -> Result<(), String> {
    idle(false)
}

/// The same with GLES (Mesa 26.1, llvmpipe, see `gles`).
fn idle_gles_compositor_makes_no_wakeups() -> Result<(), String> {
    idle(true)
}

fn idle(gles: bool) -> Result<(), String> {
    let mut s = show_window("heapland-redraw-idle", gles)?;
    // Xwayland starts with heapland and talks to it while it does (seconds
    // under TCG): idle is after that.
    s.comp.wait_for_xwayland()?;
    let pid = s.comp.pid();
    s.conn.flush().map_err(|e| format!("flush: {e}"))?;
    // The frame cycle of the first frame ends one refresh after its vblank
    // (llvmpipe may take longer to draw it under TCG).
    std::thread::sleep(Duration::from_secs(if gles { 5 } else { 1 }));
    read_pending(&s.conn, &mut s.queue, &mut s.st)?;
    // Startup's tail (Xwayland's last requests, under TCG seconds after
    // it said it was ready) ends first: 2 s without a wakeup, at most 30 s
    // of waiting. A periodic wakeup still shows in the 5 s after.
    wait_until_quiet(pid, Duration::from_secs(30))?;
    read_pending(&s.conn, &mut s.queue, &mut s.st)?;
    let callbacks = s.st.callbacks;
    let before = context_switches(pid)?;
    std::thread::sleep(Duration::from_secs(5));
    let after = context_switches(pid)?;
    let idle = wakeups(&before, &after);
    read_pending(&s.conn, &mut s.queue, &mut s.st)?;
    if !idle.is_empty() {
        return Err(format!(
            "heapland woke while nothing changed (context switches in 5 s by thread): {idle:?}"
        ));
    }
    if s.st.callbacks != callbacks {
        return Err(format!(
            "{} frame callbacks came while the client committed nothing",
            s.st.callbacks - callbacks
        ));
    }

    // One commit: one frame callback, and the compositor woke to draw.
    s.surface.damage_buffer(0, 0, 8, 8);
    s.surface.frame(&s.qh, ());
    s.surface.commit();
    s.st.frame_done = false;
    wait(
        &mut s.queue,
        &mut s.st,
        &mut s.comp,
        |st| st.frame_done,
        "frame callback after a commit",
    )?;
    let drew = wakeups(&after, &context_switches(pid)?);
    std::thread::sleep(Duration::from_millis(500));
    read_pending(&s.conn, &mut s.queue, &mut s.st)?;
    if s.st.callbacks != callbacks + 1 {
        return Err(format!(
            "one commit brought {} frame callbacks",
            s.st.callbacks - callbacks
        ));
    }
    if drew.is_empty() {
        return Err(
            "no context switch counted while heapland drew a frame: the count is blind".into(),
        );
    }
    println!(
        "INFO redraw ({}): 0 context switches in 5 s idle with a window shown; one commit: 1 frame callback, {} switches",
        if gles { "gles" } else { "pixman" },
        drew.iter().map(|(_, n)| n).sum::<u64>()
    );
    drop(s.buffer);
    drop(s.conn);
    s.comp.stop()
}

fn client_dmabuf_is_freed_once_the_client_lets_it_go() -> Result<(), String> {
    client_dmabuf_freed(false)
}

/// As with pixman. The last buffer of a window that closed is the one the
/// GL driver sampled last, with no textured draw after it to replace that
/// binding: it is the case this checks.
fn gles_frees_a_client_dmabuf_once_the_client_lets_it_go() -> Result<(), String> {
    client_dmabuf_freed(true)
}

fn client_dmabuf_freed(gles: bool) -> Result<(), String> {
    let renderer = if gles { "gles" } else { "pixman" };
    let mut s = show_window("heapland-redraw-probe", gles)?;
    let inode = dma_buf::inode(s.buffer_fd.as_fd())?;
    let shown = bufinfo()?
        .into_iter()
        .find(|b| b.inode == inode)
        .ok_or_else(|| format!("the client's buffer (inode {inode}) is not in bufinfo"))?;
    if shown.exp_name != s.heap.name {
        return Err(format!(
            "bufinfo says {} exported the client's buffer, it came from {}",
            shown.exp_name, s.heap.name
        ));
    }
    println!(
        "INFO redraw ({renderer}): client buffer while shown: exported by {}, attached to {:?}",
        shown.exp_name, shown.attached
    );

    // Show another buffer, then let the first one go as a client does.
    let (second, second_fd) = heap_buffer(
        &s.heap,
        &s.dmabuf,
        &s.qh,
        "heapland-redraw-second",
        0x0020_40c0,
        2,
    )?;
    s.surface.attach(Some(&second), 0, 0);
    s.surface.damage_buffer(0, 0, W as i32, H as i32);
    s.surface.frame(&s.qh, ());
    s.surface.commit();
    s.st.frame_done = false;
    wait(
        &mut s.queue,
        &mut s.st,
        &mut s.comp,
        |st| st.frame_done,
        "frame callback of the second buffer",
    )?;
    s.buffer.destroy();
    drop(s.buffer_fd);
    s.queue
        .roundtrip(&mut s.st)
        .map_err(|e| format!("roundtrip: {e}"))?;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = bufinfo()?
            .into_iter()
            .filter(|b| b.inode == inode)
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "10 s after the client destroyed its wl_buffer and closed its fd, the buffer is still alive: {left:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The window goes (its role objects first, as xdg-shell wants): its
    // buffer follows once the client lets it go too.
    let second_inode = dma_buf::inode(second_fd.as_fd())?;
    let (xdg, toplevel) = s.xdg;
    toplevel.destroy();
    xdg.destroy();
    s.surface.destroy();
    second.destroy();
    drop(second_fd);
    s.queue
        .roundtrip(&mut s.st)
        .map_err(|e| format!("roundtrip: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = bufinfo()?.into_iter().find(|b| b.inode == second_inode) {
        if Instant::now() > deadline {
            let maps = std::fs::read_to_string(format!("/proc/{}/maps", s.comp.pid()))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("dmabuf"))
                .count();
            return Err(format!(
                "the buffer of a destroyed window stays alive after the client let it go: {left:?}; heapland maps {maps} dma-bufs"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "INFO redraw ({renderer}): both client buffers left bufinfo once the client let them go"
    );
    drop(s.conn);
    s.comp.stop()
}
