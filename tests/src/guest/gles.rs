//! heapland composing with GLES on vkms: Smithay's GLES renderer over EGL on
//! vkms's GBM (Mesa's kms_swrast, llvmpipe), drawing into scanout buffers
//! from the display's DMA-BUF heap, imported as EGL images.
//!
//! Debian 12's Mesa 22.3 cannot do this (its kms_swrast maps imported
//! buffers with MAP_DUMB, which the kernel refuses, and crashes), so these
//! tests run heapland on trixie-backports' Mesa 26.1: tests/vm/kernels
//! (`guest_mesa`) shares it as `/mesa`, with trixie's glibc, and heapland
//! runs through that tree's loader. Under TCG, llvmpipe samples correctly
//! only with 128-bit vectors (`LP_NATIVE_VECTOR_WIDTH`), a fact of the
//! emulator checked in the guest, not of heapland.
//!
//! What the tests check:
//! - the log names GLES on llvmpipe, and the scanout buffers come from the
//!   heap (bufinfo: exported by it, attached to vkms);
//! - an shm window and a heap dma-buf window are both in the picture read
//!   back from the scanout buffer itself (CPU mapping of the dma-buf);
//! - grim's capture (wlr-screencopy, read back with glReadPixels) is that
//!   picture, pixel for pixel;
//! - the client dma-buf is attached to vkms: EGL imported it through the
//!   display device (pixman would only have mapped it);
//! - Debian's GL clients, `weston-simple-egl` and `weston-simple-dmabuf-egl`
//!   (which renders with GBM and EGL into buffers of its own), are shown;
//! - a client that renders with EGL into a buffer from the heap the protocol
//!   gave it (`heapland-egl-client`, on Mesa 26.1 too) is shown, and the
//!   kernel says the buffer is the heap's and attached to vkms.

use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use wayland_client::{
    protocol::{
        wl_buffer::WlBuffer, wl_compositor::WlCompositor, wl_shm::WlShm, wl_surface::WlSurface,
    },
    EventQueue,
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
    compositor::{self, read_png, Heapland, State, RUNTIME_DIR, SOCKET, XR24},
    dma_buf, dma_heap, drm_card,
    session::{bufinfo, wait},
    Test,
};

/// How heapland is started on Mesa 26.1: trixie's loader and libraries first.
pub(super) const MESA_LAUNCH: &[&str] = &[
    "/mesa/lib64/ld-linux-x86-64.so.2",
    "--library-path",
    "/mesa/lib/x86_64-linux-gnu",
];

/// Its environment: GBM's backend in that tree, llvmpipe's vector width under
/// TCG, no shader cache (every run compiles, as a fresh machine does).
pub(super) const MESA_ENV: &[(&str, &str)] = &[
    ("GBM_BACKENDS_PATH", "/mesa/lib/x86_64-linux-gnu/gbm"),
    ("LP_NATIVE_VECTOR_WIDTH", "128"),
    ("MESA_SHADER_CACHE_DISABLE", "true"),
];

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "gles::shm_and_heap_dmabuf_windows_composed_into_heap_scanout_buffers",
            run: shm_and_heap_dmabuf_windows_composed_into_heap_scanout_buffers,
        },
        Test {
            name: "gles::debian_gl_clients_are_shown",
            run: debian_gl_clients_are_shown,
        },
        Test {
            name: "gles::heap_client_renders_with_egl_into_its_heap_buffer",
            run: heap_client_renders_with_egl_into_its_heap_buffer,
        },
    ]
}

const W: i32 = 200;
const H: i32 = 150;
/// What heapland clears its outputs to, as pixman rounds it.
const BACKGROUND: [u8; 3] = [25, 30, 40];
const SHM_RGB: [u8; 3] = [0xe0, 0x30, 0xa0];
const DMABUF_RGB: [u8; 3] = [0x20, 0xc0, 0x40];
const READ_ONLY_RGB: [u8; 3] = [0x30, 0x60, 0xd0];

fn xrgb(rgb: [u8; 3]) -> u32 {
    u32::from_le_bytes([rgb[2], rgb[1], rgb[0], 0xff])
}

/// Starts heapland with GLES on vkms and waits for its first output; returns
/// it with the heap its scanout buffers come from.
fn start() -> Result<(Heapland, String), String> {
    if !Path::new("/mesa/lib64/ld-linux-x86-64.so.2").exists() {
        return Err("Mesa 26.1 is not shared as /mesa (tests/vm/kernels guest_mesa)".into());
    }
    let mut comp = Heapland::start_gles(&["--backend", "drm"])?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        comp.alive()?;
        let log = comp.log_text();
        let renderer = log.lines().find(|l| l.contains("composing with "));
        let heap = log
            .lines()
            .find_map(|l| l.split("scanout buffers from DMA-BUF heap ").nth(1));
        if let (Some(renderer), Some(heap)) = (renderer, heap) {
            if !renderer.contains("composing with GLES (llvmpipe") {
                return Err(format!("heapland does not compose with GLES: {renderer}"));
            }
            println!(
                "INFO gles: {}",
                renderer.split("composing with ").nth(1).unwrap_or(renderer)
            );
            return Ok((comp, heap.trim().to_owned()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "heapland with GLES did not set up its output:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks for a screenshot until `check` accepts it (or 60 s pass); returns
/// the last picture's width and RGB bytes.
fn picture_until(
    comp: &mut Heapland,
    what: &str,
    check: impl Fn(u32, &[u8]) -> Result<(), String>,
) -> Result<(u32, Vec<u8>), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        comp.alive()?;
        comp.signal(rustix::process::Signal::USR1);
        std::thread::sleep(Duration::from_millis(500));
        let verdict = match read_png(&comp.png) {
            Some((w, rgb)) => check(w, &rgb).map(|()| (w, rgb)),
            None => Err("no screenshot yet".into()),
        };
        match verdict {
            Ok(pic) => return Ok(pic),
            Err(e) if Instant::now() > deadline => return Err(format!("{what}: {e}")),
            Err(_) => {}
        }
    }
}

/// An XRGB8888 dumb buffer of vgem, exported read-only (PRIME without
/// `DRM_RDWR`), as V4L2 and GBM on kms_swrast export theirs. It is 256 px
/// wide, wider than the `W` px the client says, so its pitch is more than a
/// row of the picture.
struct ReadOnlyVgem {
    vgem: drm_card::Card,
    bo: drm::control::dumbbuffer::DumbBuffer,
    fd: OwnedFd,
}

impl ReadOnlyVgem {
    fn new() -> Result<Self, String> {
        use drm::control::Device as _;
        let vgem = drm_card::find("vgem", "card")?;
        let bo = vgem
            .create_dumb_buffer((256, H as u32), drm::buffer::DrmFourcc::Xrgb8888, 32)
            .map_err(|e| format!("vgem CREATE_DUMB: {e}"))?;
        let fd = vgem
            .buffer_to_prime_fd(drm::buffer::Buffer::handle(&bo), drm::CLOEXEC)
            .map_err(|e| format!("vgem PRIME export: {e}"))?;
        Ok(Self { vgem, bo, fd })
    }

    fn pitch(&self) -> u32 {
        drm::buffer::Buffer::pitch(&self.bo)
    }

    /// Paints the whole buffer `rgb` through vgem's own mapping.
    fn fill(&mut self, rgb: [u8; 3]) -> Result<(), String> {
        use drm::control::Device as _;
        let mut map = self
            .vgem
            .map_dumb_buffer(&mut self.bo)
            .map_err(|e| format!("vgem MAP_DUMB: {e}"))?;
        for px in map.as_mut().chunks_exact_mut(4) {
            px.copy_from_slice(&xrgb(rgb).to_le_bytes());
        }
        Ok(())
    }
}

/// Where pixels of `colour` are in a picture `w` wide, for a failure's text.
fn bounding_box(w: u32, rgb: &[u8], colour: [u8; 3]) -> String {
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    let mut n = 0;
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if px.iter().zip(colour).all(|(&g, c)| g.abs_diff(c) <= 1) {
            let (x, y) = (i as u32 % w, i as u32 / w);
            n += 1;
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    match bbox {
        None => "none".into(),
        Some((x0, y0, x1, y1)) => format!("{n} in ({x0},{y0})..=({x1},{y1})"),
    }
}

fn pixel(w: u32, rgb: &[u8], x: u32, y: u32) -> [u8; 3] {
    let i = ((y * w + x) * 3) as usize;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

/// An shm buffer of `W`x`H` filled with `rgb`.
fn shm_buffer(
    shm: &WlShm,
    qh: &wayland_client::QueueHandle<State>,
    rgb: [u8; 3],
) -> Result<wayland_client::protocol::wl_buffer::WlBuffer, String> {
    // The file may go: the compositor maps the pool's own copy of the fd.
    heapland_test_client::shm::solid_buffer(shm, qh, (W as u32, H as u32), xrgb(rgb), 10u32)
        .map(|(buffer, _file)| buffer)
}

/// A toplevel of its own showing `buffer`, once heapland sent the frame
/// callback of its first commit (so it was drawn).
fn show_toplevel(
    queue: &mut EventQueue<State>,
    st: &mut State,
    comp: &mut Heapland,
    (wl_compositor, wm): (&WlCompositor, &XdgWmBase),
    buffer: &WlBuffer,
) -> Result<(WlSurface, (XdgSurface, XdgToplevel)), String> {
    let qh = queue.handle();
    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    st.configured = false;
    wait(queue, st, comp, |s| s.configured, "configure")?;
    surface.attach(Some(buffer), 0, 0);
    surface.damage_buffer(0, 0, W, H);
    surface.frame(&qh, ());
    surface.commit();
    st.frame_done = false;
    wait(queue, st, comp, |s| s.frame_done, "frame callback")?;
    Ok((surface, (xdg, toplevel)))
}

fn shm_and_heap_dmabuf_windows_composed_into_heap_scanout_buffers() -> Result<(), String> {
    let (mut comp, heap_name) = start()?;
    let (conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    let shm: WlShm = compositor::bind(&globals, &qh, 1..=1)?;
    let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(&globals, &qh, 3..=4)?;
    let mut st = State::default();

    // The shm window first (cascaded at the origin), the dma-buf one above it
    // 48 px further (heapland's cascade): each keeps a corner of its own.
    let mut windows: Vec<(WlSurface, _)> = Vec::new();
    let shm_buf = shm_buffer(&shm, &qh, SHM_RGB)?;
    let heap = dma_heap::Heap::open(&heap_name)?;
    let len = (W * H * 4) as u64;
    let dmabuf_fd: OwnedFd = heap.alloc(len)?;
    dma_buf::set_name(dmabuf_fd.as_fd(), "heapland-gles-client")?;
    {
        let mut map = dma_buf::Mapping::new(dmabuf_fd.as_fd(), len as usize)?;
        dma_buf::sync(dmabuf_fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC: {e}"))?;
        for w in map.words_mut() {
            *w = xrgb(DMABUF_RGB);
        }
        dma_buf::sync(dmabuf_fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC: {e}"))?;
    }
    let params = dmabuf.create_params(&qh, ());
    params.add(dmabuf_fd.as_fd(), 0, 0, (W * 4) as u32, 0, 0);
    let dma_buf = params.create_immed(W, H, XR24, Flags::empty(), &qh, 11);
    for buffer in [&shm_buf, &dma_buf] {
        windows.push(show_toplevel(
            &mut queue,
            &mut st,
            &mut comp,
            (&wl_compositor, &wm),
            buffer,
        )?);
    }

    let (w, shown) = picture_until(&mut comp, "the GLES picture", |w, rgb| {
        let want = [
            ((10, 10), SHM_RGB, "shm window"),
            ((40, 140), SHM_RGB, "shm window"),
            ((60, 60), DMABUF_RGB, "dma-buf window"),
            ((240, 190), DMABUF_RGB, "dma-buf window"),
            ((600, 500), BACKGROUND, "background"),
        ];
        for ((x, y), rgb_want, what) in want {
            let got = pixel(w, rgb, x, y);
            // GLES rounds the clear colour differently from pixman (26 for 0.10).
            if got.iter().zip(rgb_want).any(|(&g, w)| g.abs_diff(w) > 1) {
                return Err(format!("({x},{y}) {what} is {got:?}, want {rgb_want:?}"));
            }
        }
        Ok(())
    })?;
    // grim (wlr-screencopy) reads GLES's own rendering of the scene back
    // through glReadPixels: the scanout buffer's picture, the right way up.
    let (grim_w, grabbed) = compositor::grim(&mut comp)?;
    let differing = grabbed
        .chunks_exact(3)
        .zip(shown.chunks_exact(3))
        .filter(|(a, b)| a != b)
        .count();
    if grim_w != w || grabbed.len() != shown.len() || differing > 0 {
        return Err(format!(
            "grim's capture ({grim_w} wide, {} bytes) differs from the scanout buffer ({w} wide, {} bytes) in {differing} pixels",
            grabbed.len(),
            shown.len()
        ));
    }
    println!("INFO gles: grim's capture is the scanout buffer's picture, pixel for pixel");

    let infos = bufinfo()?;
    let scanout: Vec<_> = infos
        .iter()
        .filter(|b| b.name.starts_with("heapland") && b.attached.iter().any(|d| d == "vkms"))
        .filter(|b| b.name != "heapland-gles-client")
        .collect();
    if scanout.is_empty() || scanout.iter().any(|b| b.exp_name != heap_name) {
        return Err(format!(
            "scanout buffers are not all from {heap_name} and attached to vkms: {infos:?}"
        ));
    }
    let inode = dma_buf::inode(dmabuf_fd.as_fd())?;
    let client = infos
        .iter()
        .find(|b| b.inode == inode)
        .ok_or("the client's dma-buf is not in bufinfo")?;
    if !client.attached.iter().any(|d| d == "vkms") {
        return Err(format!(
            "the client's dma-buf is not attached to vkms: EGL did not import it through the display device: {client:?}"
        ));
    }
    println!(
        "INFO gles: shm and heap dma-buf windows composed by GLES into {} scanout buffers from {heap_name}; client buffer attached to {:?}",
        scanout.len(),
        client.attached
    );

    // A read-only dma-buf of another device (as V4L2's VIDIOC_EXPBUF gives
    // without O_RDWR, and GBM's export without DRM_RDWR): llvmpipe would
    // import it and then sample through a null pointer. heapland draws it
    // through a copy, above the other two, and draws them on.
    let mut read_only = ReadOnlyVgem::new()?;
    read_only.fill(READ_ONLY_RGB)?;
    let pitch = read_only.pitch();
    if pitch <= (W * 4) as u32 {
        return Err(format!(
            "vgem's pitch {pitch} is a row of {W} px: the copy's packing would go untested"
        ));
    }
    let params = dmabuf.create_params(&qh, ());
    params.add(read_only.fd.as_fd(), 0, 0, pitch, 0, 0);
    params.create(W, H, XR24, Flags::empty());
    wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.params_failed + s.params_created > 0,
        "created or failed for a read-only dma-buf",
    )?;
    comp.alive()?;
    let Some(read_only_buf) = st.created.take() else {
        let log = comp.log_text();
        let refusal = log
            .lines()
            .rfind(|l| l.contains("refusing linux-dmabuf buffer"))
            .unwrap_or("no refusal in its log");
        return Err(format!(
            "heapland refused a read-only dma-buf instead of drawing it through a copy: {refusal}"
        ));
    };
    if !comp
        .log_text()
        .contains("drawing a client dma-buf through a copy after each attach")
    {
        return Err("heapland took the read-only dma-buf without saying how it draws it".into());
    }
    let (surface, roles) = show_toplevel(
        &mut queue,
        &mut st,
        &mut comp,
        (&wl_compositor, &wm),
        &read_only_buf,
    )?;
    let read_only_shown = |comp: &mut Heapland, what: &str, want: [u8; 3]| {
        picture_until(comp, what, |w, rgb| {
            let want = [
                ((10, 10), SHM_RGB, "shm window"),
                ((60, 60), DMABUF_RGB, "dma-buf window"),
                ((280, 230), want, "read-only dma-buf window"),
                ((100, 100), want, "read-only dma-buf window"),
            ];
            for ((x, y), rgb_want, what) in want {
                let got = pixel(w, rgb, x, y);
                if got.iter().zip(rgb_want).any(|(&g, w)| g.abs_diff(w) > 1) {
                    return Err(format!(
                        "({x},{y}) {what} is {got:?}, want {rgb_want:?} (pixels of that colour: {})",
                        bounding_box(w, rgb, rgb_want)
                    ));
                }
            }
            Ok(())
        })
    };
    let read_only_inode = dma_buf::inode(read_only.fd.as_fd())?;
    let diagnose = |comp: &Heapland, e: String| {
        let log = comp.log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("Supported GL Extensions") && !l.contains("SIGUSR1"))
            .collect();
        let warnings = &lines[lines.len().saturating_sub(25)..];
        let attached = bufinfo().ok().and_then(|infos| {
            infos
                .into_iter()
                .find(|b| b.inode == read_only_inode)
                .map(|b| b.attached)
        });
        format!("{e}; the read-only buffer is attached to {attached:?}; heapland's log ends: {warnings:?}")
    };
    if let Err(e) = read_only_shown(&mut comp, "the read-only dma-buf's window", READ_ONLY_RGB) {
        let client = match queue.roundtrip(&mut st) {
            Ok(_) => "the client is connected".to_owned(),
            Err(err) => format!(
                "the client lost its connection: {err} ({:?})",
                conn.protocol_error()
            ),
        };
        return Err(format!("{}; {client}", diagnose(&comp, e)));
    }
    // Repainted and attached again: copied again. (Repainting an attached
    // buffer breaks the protocol's rules only for a real client, which
    // must wait for the release; a copy taken at the attach is what this
    // checks.)
    read_only.fill(DMABUF_RGB)?;
    surface.attach(Some(&read_only_buf), 0, 0);
    surface.damage_buffer(0, 0, W, H);
    surface.commit();
    conn.flush().map_err(|e| format!("flush: {e}"))?;
    read_only_shown(&mut comp, "the read-only dma-buf re-attached", DMABUF_RGB)
        .map_err(|e| diagnose(&comp, e))?;
    windows.push((surface, roles));
    comp.alive()?;
    println!(
        "INFO gles: a read-only vgem dma-buf (pitch {pitch}, {W} px wide) drawn through a copy beside the other windows, and copied again when attached again"
    );
    drop(windows);
    comp.stop()
}

/// A Debian client from the shared /usr, on heapland's socket, with its own
/// Mesa (Debian's 22.3).
fn client(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(Path::new("/usr/bin").join(name));
    c.args(args)
        .env("XDG_RUNTIME_DIR", RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", SOCKET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Pixels of the area `(0,0)..(size,size)` close to red, green and blue.
fn primaries(w: u32, rgb: &[u8], size: u32) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for y in 0..size {
        for x in 0..size {
            let [r, g, b] = pixel(w, rgb, x, y);
            let name = match (r > 150, g > 150, b > 150, r < 90, g < 90, b < 90) {
                (true, _, _, _, true, true) => "red",
                (_, true, _, true, _, true) => "green",
                (_, _, true, true, true, _) => "blue",
                _ => continue,
            };
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

fn debian_gl_clients_are_shown() -> Result<(), String> {
    let (mut comp, _) = start()?;
    // simple-egl: EGL on Wayland (Mesa falls back to software and wl_shm
    // without a render node it can drive). simple-dmabuf-egl: GBM and EGL
    // on vkms's node, its own buffers shared with linux-dmabuf.
    let runs: [(&str, &[&str], u32); 2] = [
        ("weston-simple-egl", &[], 250),
        (
            "weston-simple-dmabuf-egl",
            &["--drm-render-node=/dev/dri/card0", "--size=256"],
            256,
        ),
    ];
    for (name, args, size) in runs {
        let mut child = client(name, args)
            .spawn()
            .map_err(|e| format!("spawn /usr/bin/{name}: {e}"))?;
        let shown = picture_until(&mut comp, name, |w, rgb| {
            let counts = primaries(w, rgb, size);
            let colours = ["red", "green", "blue"];
            if colours
                .iter()
                .all(|c| counts.get(c).copied().unwrap_or(0) > 10)
            {
                Ok(())
            } else {
                Err(format!("primaries in its window: {counts:?}"))
            }
        });
        let exited = child.try_wait().ok().flatten();
        let _ = child.kill();
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match shown {
            Ok(_) => println!("INFO gles: {name} (Debian's Mesa) shown in heapland's GLES output"),
            Err(e) => {
                return Err(format!(
                    "{e}; {name} {}; its stderr: {}",
                    exited.map_or("was running".to_owned(), |s| format!("exited ({s})")),
                    stderr.trim()
                ))
            }
        }
        // The next client's window takes the same place once this one is gone.
        std::thread::sleep(Duration::from_millis(500));
    }
    comp.stop()
}

/// The EGL client's `(x, y)` probes: its background and its square (it is
/// the first window, at the origin).
const EGL_PROBES: [((u32, u32), [u8; 3]); 4] = [
    ((6, 6), [0x30, 0x60, 0xf0]),
    ((250, 186), [0x30, 0x60, 0xf0]),
    ((128, 96), [0xf0, 0xd0, 0x10]),
    ((70, 52), [0xf0, 0xd0, 0x10]),
];

fn heap_client_renders_with_egl_into_its_heap_buffer() -> Result<(), String> {
    let (mut comp, _) = start()?;
    let mut args: Vec<&str> = MESA_LAUNCH.to_vec();
    args.extend(["/bin/heapland-egl-client", "/dev/dri/card0"]);
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .envs(MESA_ENV.iter().copied())
        .env("XDG_RUNTIME_DIR", RUNTIME_DIR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn heapland-egl-client: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let shown = rx.recv_timeout(Duration::from_secs(90));
    let result = match shown {
        Ok(line) if line.starts_with("EGL-CLIENT shown ") => check_egl_client(&mut comp, &line),
        other => Err(format!("the client did not show its buffer: {other:?}")),
    };
    let _ = child.kill();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    result.map_err(|e| {
        format!(
            "{e}; heapland-egl-client stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    comp.stop()
}

fn check_egl_client(comp: &mut Heapland, line: &str) -> Result<(), String> {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .map(str::to_owned)
    };
    let inode: u64 = field("inode=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no inode in {line:?}"))?;
    let heap = field("heap=").ok_or_else(|| format!("no heap in {line:?}"))?;
    picture_until(comp, "the EGL client's picture", |w, rgb| {
        for ((x, y), want) in EGL_PROBES {
            let got = pixel(w, rgb, x, y);
            if got.iter().zip(want).any(|(&g, w)| g.abs_diff(w) > 1) {
                return Err(format!("({x},{y}) is {got:?}, the client drew {want:?}"));
            }
        }
        Ok(())
    })?;
    let infos = bufinfo()?;
    let buffer = infos
        .iter()
        .find(|b| b.inode == inode)
        .ok_or("the client's buffer is not in bufinfo")?;
    if buffer.exp_name != heap || !buffer.attached.iter().any(|d| d == "vkms") {
        return Err(format!(
            "the client's buffer should come from {heap} and be attached to vkms: {buffer:?}"
        ));
    }
    println!(
        "INFO gles: heapland-egl-client rendered with EGL into a buffer from {heap} (attached to {:?}), shown on vkms",
        buffer.attached
    );
    Ok(())
}
