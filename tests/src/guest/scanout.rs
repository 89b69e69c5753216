//! `heapland --backend drm --allocator heap|gbm|dumb` on vkms: each allocator's scanout
//! buffers drive the display, and vkms composes exactly what the compositor drew.
//!
//! For each allocator in turn: heapland shows a wl_shm window with a per-pixel pattern at
//! the origin of a 1024x768 output, on its clear colour. Then:
//! - the screenshot (SIGUSR1), read from the scanout buffer through its dma-buf, must be
//!   that picture, pixel for pixel, and so must Debian's grim's capture (wlr-screencopy);
//! - the buffer on vkms's primary plane is the test's to inspect: `GETFB2` (root) gives
//!   the test a GEM handle of it, and its dma-buf (PRIME export of that handle, the same
//!   dma-buf heapland made) must, in `/sys/kernel/debug/dma_buf/bufinfo`, come from the
//!   heap heapland named (`heap`), or from no heap at all and carry heapland's
//!   `heapland gbm`/`heapland dumb` name (`gbm`, `dumb`);
//! - vkms's writeback connector must read back that picture from that very buffer.
//!   Writeback needs an atomic commit, which needs DRM master, which heapland holds while
//!   it runs; so the test keeps its GEM handle of the buffer (which keeps the memory),
//!   stops heapland, takes master, and shows the buffer with writeback.
//!
//! GBM comes from the host's `/usr` (Mesa's libgbm loads kms_swrast_dri.so for vkms); where
//! that is missing the gbm test fails and says so.

use std::{
    fs::File,
    io::Write,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use drm::{
    buffer::{DrmFourcc, DrmModifier, Handle as BufferHandle, PlanarBuffer},
    control::{framebuffer, Device as _, FbCmd2Flags},
    Device as _,
};
use wayland_client::{
    protocol::{
        wl_compositor::WlCompositor,
        wl_shm::{self, WlShm},
        wl_surface::WlSurface,
    },
    Connection,
};
use wayland_protocols::xdg::shell::client::xdg_wm_base::XdgWmBase;

use super::{
    compositor::{self, read_png, Heapland, State},
    dma_buf, dma_heap,
    drm_card::Card,
    session, vkms, Test,
};

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "scanout::heap_allocator_drives_vkms",
            run: || drives_vkms("heap"),
        },
        Test {
            name: "scanout::dumb_allocator_drives_vkms",
            run: || drives_vkms("dumb"),
        },
        Test {
            name: "scanout::wlr_randr_sets_another_mode_of_the_connector",
            run: wlr_randr_sets_another_mode_of_the_connector,
        },
        // Last: loading Mesa (LLVM with it) from the 9p /usr is the slow one.
        Test {
            name: "scanout::gbm_allocator_drives_vkms",
            run: || drives_vkms("gbm"),
        },
    ]
}

/// The output: vkms's default mode.
const OUT: (u32, u32) = (1024, 768);
/// The client window, at the output's origin.
const WIN: (u32, u32) = (256, 192);
/// heapland's clear colour, `[0.10, 0.12, 0.16]` in 8 bits.
const BACKGROUND: [u8; 3] = [25, 30, 40];

/// The window's pixel at (x, y): every row and column differs, so that a wrong
/// stride or offset anywhere shows.
fn window_rgb(x: u32, y: u32) -> [u8; 3] {
    [x as u8, y as u8, (x * 3 + y * 5) as u8]
}

/// What the compositor draws at (x, y).
fn expected(x: u32, y: u32) -> [u8; 3] {
    if x < WIN.0 && y < WIN.1 {
        window_rgb(x, y)
    } else {
        BACKGROUND
    }
}

/// `None` when every pixel of the output is as drawn, else how many differ and the first.
fn differences(what: &str, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Option<String> {
    let mut bad = 0usize;
    let mut first = None;
    for y in 0..OUT.1 {
        for x in 0..OUT.0 {
            let got = pixel(x, y);
            if got != expected(x, y) {
                bad += 1;
                first.get_or_insert((x, y, got));
            }
        }
    }
    first.map(|(x, y, got)| {
        format!(
            "{what}: {bad} of {} pixels differ; first at ({x},{y}): {got:?}, drawn {:?}",
            OUT.0 * OUT.1,
            expected(x, y)
        )
    })
}

fn drives_vkms(allocator: &str) -> Result<(), String> {
    // Mesa's loader says which DRI driver GBM loaded (into the compositor's log).
    let env: &[(&str, &str)] = if allocator == "gbm" {
        gbm_available()?;
        &[("LIBGL_DEBUG", "verbose")]
    } else {
        &[]
    };
    let mode = format!("{}x{}@60", OUT.0, OUT.1);
    let mut comp = Heapland::start_with_env(
        &[
            "--backend",
            "drm",
            "--allocator",
            allocator,
            "--output",
            &mode,
        ],
        env,
    )?;
    let source = scanout_source(&mut comp)?;
    for line in comp
        .log_text()
        .lines()
        .filter(|l| l.contains("MESA-LOADER"))
    {
        println!("INFO scanout: --allocator gbm: {}", line.trim());
    }
    let heap = match (allocator, source.strip_prefix("DMA-BUF heap ")) {
        ("heap", Some(heap)) => Some(heap.to_owned()),
        ("gbm", None) if source == "GBM" => None,
        ("dumb", None) if source == "KMS dumb buffers" => None,
        _ => {
            return Err(format!(
                "--allocator {allocator} scans out of {source}:\n{}",
                comp.log_text()
            ))
        }
    };

    let window = Window::show(&mut comp)?;
    screenshot_shows_the_picture(&mut comp)?;
    grim_shows_the_picture(&mut comp)?;

    let card = vkms::open_card()?;
    let pipe = vkms::pipeline(&card, OUT)?;
    let plane = PlaneBuffer::showing_the_picture(&card, &pipe, &mut comp)?;
    // The window stays until heapland is gone: a frame without it could be drawn into
    // the buffer the test holds once it leaves the plane.
    let result = exporter_is_right(&plane, allocator, heap.as_deref())
        .and_then(|()| comp.stop())
        .and_then(|()| writeback_shows_the_picture(&card, &pipe, &plane.info));
    drop(window);
    let _ = card.close_buffer(plane.handle);
    result
}

/// The buffer on vkms's primary plane, held by the test: its framebuffer as GETFB2
/// describes it, the test's GEM handle of it, and its dma-buf.
struct PlaneBuffer {
    info: framebuffer::PlanarInfo,
    handle: BufferHandle,
    dmabuf: OwnedFd,
}

impl PlaneBuffer {
    /// Waits until the plane shows a buffer that holds the picture (the page flip of the
    /// frame that drew the window may still be pending), read through its dma-buf.
    fn showing_the_picture(
        card: &Card,
        pipe: &vkms::Pipeline,
        comp: &mut Heapland,
    ) -> Result<PlaneBuffer, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            comp.alive()?;
            let plane = card
                .get_plane(pipe.plane)
                .map_err(|e| format!("GETPLANE: {e}"))?;
            let Some(fb) = plane.framebuffer() else {
                if Instant::now() > deadline {
                    return Err(format!(
                        "vkms's primary plane shows nothing:\n{}",
                        comp.log_text()
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            let info = card
                .get_planar_framebuffer(fb)
                .map_err(|e| format!("GETFB2 {fb:?}: {e:?}"))?;
            if info.size() != OUT || (info.pitches()[0] as usize) < OUT.0 as usize * 4 {
                return Err(format!(
                    "the plane's framebuffer is {:?} with pitch {}, the output {OUT:?}",
                    info.size(),
                    info.pitches()[0]
                ));
            }
            let handle =
                info.buffers()[0].ok_or("GETFB2 gave no GEM handle (the test is not root?)")?;
            let held = card
                .buffer_to_prime_fd(handle, drm::CLOEXEC)
                .map_err(|e| format!("PRIME export of the plane's buffer: {e}"))
                .and_then(|dmabuf| {
                    let plane = PlaneBuffer {
                        info,
                        handle,
                        dmabuf,
                    };
                    Ok((plane.differences()?, plane))
                });
            match held {
                Ok((None, plane)) => return Ok(plane),
                Ok((Some(d), _)) if Instant::now() > deadline => {
                    let _ = card.close_buffer(handle);
                    return Err(d);
                }
                Err(e) => {
                    let _ = card.close_buffer(handle);
                    return Err(e);
                }
                Ok((Some(_), _)) => {
                    let _ = card.close_buffer(handle);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// How the buffer's pixels differ from the picture, read through a mapping of its
    /// dma-buf bracketed by DMA_BUF_IOCTL_SYNC.
    fn differences(&self) -> Result<Option<String>, String> {
        let pitch = self.info.pitches()[0] as usize;
        let offset = self.info.offsets()[0] as usize;
        let map = dma_buf::Mapping::new(&self.dmabuf, offset + pitch * OUT.1 as usize)?;
        let fd = self.dmabuf.as_fd();
        dma_buf::sync(fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
            .map_err(|e| format!("SYNC: {e}"))?;
        let bytes = &map.bytes()[offset..];
        let diff = differences("the plane's buffer", |x, y| {
            let i = y as usize * pitch + x as usize * 4;
            [bytes[i + 2], bytes[i + 1], bytes[i]]
        });
        dma_buf::sync(fd, dma_buf::SYNC_END | dma_buf::SYNC_READ)
            .map_err(|e| format!("SYNC: {e}"))?;
        Ok(diff)
    }
}

/// Mesa's GBM in the guest: libgbm (with heapland) and kms_swrast, the DRI driver it uses
/// for display-only devices, from the host's /usr.
fn gbm_available() -> Result<(), String> {
    let dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map_err(|e| format!("GBM cannot work in the guest: /usr/lib: {e} (is the host's /usr shared into the guest?)"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("dri")))
        .chain([PathBuf::from("/usr/lib/dri")])
        .collect();
    if dirs.iter().any(|d| d.join("kms_swrast_dri.so").exists()) {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let usr = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/usr"))
        .unwrap_or("nothing mounted on /usr");
    Err(format!(
        "GBM cannot work in the guest: no kms_swrast_dri.so in /usr/lib/*/dri (Mesa's software \
         driver that GBM loads for vkms, from Debian's libgl1-mesa-dri on the host); /usr: {usr}"
    ))
}

/// Where heapland says its output scans out of (its log line for the output).
fn scanout_source(comp: &mut Heapland) -> Result<String, String> {
    // GBM loads Mesa and LLVM from the 9p /usr first: slow without KVM.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        comp.alive()?;
        let log = comp.log_text();
        if let Some(source) = log
            .lines()
            .find_map(|l| l.split(", scanout buffers from ").nth(1))
        {
            return Ok(source.trim().to_owned());
        }
        if Instant::now() > deadline {
            return Err(format!("no output in the compositor's log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// grim's capture (wlr-screencopy: the scene rendered again, into the client's
/// wl_shm buffer) is the picture, pixel for pixel: the picture the writeback
/// must read back too.
fn grim_shows_the_picture(comp: &mut Heapland) -> Result<(), String> {
    let (w, rgb) = compositor::grim(comp)?;
    if w != OUT.0 || rgb.len() != (OUT.0 * OUT.1 * 3) as usize {
        return Err(format!(
            "grim's PNG is {w} pixels wide with {} bytes, the output {}x{}",
            rgb.len(),
            OUT.0,
            OUT.1
        ));
    }
    match differences("grim", |x, y| {
        let i = ((y * w + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }) {
        None => {
            println!("INFO scanout: grim's capture of the output is the picture heapland drew");
            Ok(())
        }
        Some(d) => Err(d),
    }
}

fn screenshot_shows_the_picture(comp: &mut Heapland) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        comp.alive()?;
        comp.signal(rustix::process::Signal::USR1);
        std::thread::sleep(Duration::from_millis(300));
        let diff = match read_png(&comp.png) {
            Some((w, rgb)) if w == OUT.0 && rgb.len() == (OUT.0 * OUT.1 * 3) as usize => {
                differences("screenshot", |x, y| {
                    let i = ((y * w + x) * 3) as usize;
                    [rgb[i], rgb[i + 1], rgb[i + 2]]
                })
            }
            Some((w, rgb)) => Some(format!(
                "screenshot is {w} pixels wide with {} bytes, the output {}x{}",
                rgb.len(),
                OUT.0,
                OUT.1
            )),
            None => Some("no screenshot yet".into()),
        };
        match diff {
            None => return Ok(()),
            Some(d) if Instant::now() > deadline => {
                return Err(format!("{d}\n{}", comp.log_text()))
            }
            Some(_) => {}
        }
    }
}

/// Every heap's name: what bufinfo names as the exporter of a heap's buffers.
fn heap_names() -> Vec<String> {
    let mut names = dma_heap::device_heaps().unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/dev/dma_heap") {
        names.extend(
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    names
}

/// The dma-buf of the plane's buffer, in bufinfo: from `heap`, or from no heap and named
/// by heapland for `allocator`.
fn exporter_is_right(
    plane: &PlaneBuffer,
    allocator: &str,
    heap: Option<&str>,
) -> Result<(), String> {
    let inode = dma_buf::inode(plane.dmabuf.as_fd())?;
    let infos = session::bufinfo()?;
    let buf = infos
        .iter()
        .find(|b| b.inode == inode)
        .ok_or_else(|| format!("the plane's dma-buf (inode {inode}) is not in bufinfo"))?;
    let heaps = heap_names();
    let from_a_heap = heaps.contains(&buf.exp_name);
    match heap {
        Some(heap) if buf.exp_name != heap => Err(format!(
            "the plane's buffer comes from {}, heapland said heap {heap}: {buf:?}",
            buf.exp_name
        )),
        Some(heap) => {
            println!("INFO scanout: --allocator heap: the plane's buffer comes from heap {heap}");
            Ok(())
        }
        None if from_a_heap => Err(format!(
            "--allocator {allocator}: the plane's buffer comes from heap {}: {buf:?}",
            buf.exp_name
        )),
        None if !buf.name.starts_with(&format!("heapland {allocator} ")) => Err(format!(
            "--allocator {allocator}: the plane's buffer is not named `heapland {allocator} ...`: {buf:?}"
        )),
        None => {
            println!(
                "INFO scanout: --allocator {allocator}: the plane's buffer `{}` exported by {}, not a heap ({})",
                buf.name,
                buf.exp_name,
                heaps.join(" ")
            );
            Ok(())
        }
    }
}

/// The framebuffer as GETFB2 described it, with the test's own GEM handle.
struct Planes<'a>(&'a framebuffer::PlanarInfo);

impl PlanarBuffer for Planes<'_> {
    fn size(&self) -> (u32, u32) {
        self.0.size()
    }
    fn format(&self) -> DrmFourcc {
        self.0.pixel_format()
    }
    fn modifier(&self) -> Option<DrmModifier> {
        self.0.modifier()
    }
    fn pitches(&self) -> [u32; 4] {
        self.0.pitches()
    }
    fn handles(&self) -> [Option<BufferHandle>; 4] {
        self.0.buffers()
    }
    fn offsets(&self) -> [u32; 4] {
        self.0.offsets()
    }
}

/// With heapland gone: master, the buffer it scanned out on the primary plane, a dumb
/// buffer as writeback target, and the picture read back from it.
fn writeback_shows_the_picture(
    card: &Card,
    pipe: &vkms::Pipeline,
    info: &framebuffer::PlanarInfo,
) -> Result<(), String> {
    card.acquire_master_lock()
        .map_err(|e| format!("SET_MASTER after heapland exited: {e}"))?;
    let flags = if info.modifier().is_some() {
        FbCmd2Flags::MODIFIERS
    } else {
        FbCmd2Flags::empty()
    };
    let src_fb = card
        .add_planar_framebuffer(&Planes(info), flags)
        .map_err(|e| format!("ADDFB2 of heapland's buffer: {e}"))?;
    let result = card
        .create_dumb_buffer(OUT, DrmFourcc::Xrgb8888, 32)
        .map_err(|e| format!("CREATE_DUMB for the writeback: {e}"))
        .and_then(|mut dst| {
            let read = card
                .add_framebuffer(&dst, 24, 32)
                .map_err(|e| format!("ADDFB of the writeback buffer: {e}"))
                .and_then(|dst_fb| {
                    let shown = vkms::show_with_writeback(card, pipe, src_fb, dst_fb, OUT);
                    let _ = card.destroy_framebuffer(dst_fb);
                    shown
                })
                .and_then(|()| {
                    let pitch = drm::buffer::Buffer::pitch(&dst) as usize;
                    let map = card
                        .map_dumb_buffer(&mut dst)
                        .map_err(|e| format!("MAP_DUMB of the writeback buffer: {e}"))?;
                    let bytes: &[u8] = &map;
                    match differences("writeback", |x, y| {
                        let i = y as usize * pitch + x as usize * 4;
                        [bytes[i + 2], bytes[i + 1], bytes[i]]
                    }) {
                        None => Ok(()),
                        Some(d) => Err(d),
                    }
                });
            let _ = card.destroy_dumb_buffer(dst);
            read
        });
    let _ = card.destroy_framebuffer(src_fb);
    let _ = card.release_master_lock();
    if result.is_ok() {
        println!(
            "INFO scanout: vkms's writeback of heapland's {}x{} buffer matches what heapland drew",
            OUT.0, OUT.1
        );
    }
    result
}

/// A wl_shm toplevel showing the window pattern; the connection lives as long as it does.
struct Window {
    _conn: Connection,
}

impl Window {
    fn show(comp: &mut Heapland) -> Result<Window, String> {
        let (conn, globals, mut queue) = compositor::connect()?;
        let qh = queue.handle();
        let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
        let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
        let shm: WlShm = compositor::bind(&globals, &qh, 1..=1)?;

        let (w, h) = WIN;
        let stride = w * 4;
        let mut pixels = Vec::with_capacity((stride * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = window_rgb(x, y);
                pixels.extend_from_slice(&[b, g, r, 0xff]);
            }
        }
        let memfd =
            rustix::fs::memfd_create("heapland-scanout-window", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| format!("memfd_create: {e}"))?;
        let mut file = File::from(memfd);
        file.write_all(&pixels)
            .map_err(|e| format!("write the window's pixels: {e}"))?;
        let pool = shm.create_pool(file.as_fd(), pixels.len() as i32, &qh, ());
        let buffer = pool.create_buffer(
            0,
            w as i32,
            h as i32,
            stride as i32,
            wl_shm::Format::Xrgb8888,
            &qh,
            (),
        );
        let surface: WlSurface = wl_compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let _toplevel = xdg.get_toplevel(&qh, ());
        surface.commit();
        let mut st = State::default();
        session::wait(&mut queue, &mut st, comp, |s| s.configured, "configure")?;
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, w as i32, h as i32);
        surface.frame(&qh, ());
        surface.commit();
        session::wait(
            &mut queue,
            &mut st,
            comp,
            |s| s.frame_done,
            "frame callback",
        )?;
        Ok(Window { _conn: conn })
    }
}

/// Waits up to 30 s for vkms's CRTC to scan out `mode` ("WxH", as the KMS
/// state in debugfs names it).
fn wait_for_crtc_mode(comp: &mut Heapland, mode: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = format!("mode: \"{mode}\"");
    loop {
        comp.alive()?;
        let state = session::kms_state("vkms")?;
        if state.contains(&want) && state.contains("active=1") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "vkms's CRTC never scanned out {mode}:\n{state}\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's wlr-randr with `args` against the running heapland: (success,
/// stdout and stderr).
fn wlr_randr(args: &[&str]) -> Result<(bool, String), String> {
    let out = std::process::Command::new("/usr/bin/wlr-randr")
        .args(args)
        .env("XDG_RUNTIME_DIR", compositor::RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", compositor::SOCKET)
        .output()
        .map_err(|e| {
            format!("run /usr/bin/wlr-randr (package wlr-randr, installed by tests/deps): {e}")
        })?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// wlr-randr (wlr-output-management) lists vkms's modes and sets another:
/// the CRTC scans it out (KMS state), heapland draws at its size (grim's
/// capture), and a size the connector does not list is refused with the
/// mode left as it was.
fn wlr_randr_sets_another_mode_of_the_connector() -> Result<(), String> {
    let mode = format!("{}x{}@60", OUT.0, OUT.1);
    let mut comp = Heapland::start_with(&["--backend", "drm", "--output", &mode])?;
    wait_for_crtc_mode(&mut comp, "1024x768")?;
    let (ok, listed) = wlr_randr(&[])?;
    if !ok || !listed.contains("Virtual-1") || !listed.contains("800x600 px") {
        return Err(format!(
            "wlr-randr's list has no 800x600 mode of Virtual-1:\n{listed}"
        ));
    }
    let (ok, said) = wlr_randr(&["--output", "Virtual-1", "--mode", "800x600"])?;
    if !ok {
        return Err(format!(
            "wlr-randr --mode 800x600: {said}\n{}",
            comp.log_text()
        ));
    }
    wait_for_crtc_mode(&mut comp, "800x600")?;
    let (w, rgb) = compositor::grim(&mut comp)?;
    if w != 800 || rgb.len() != 800 * 600 * 3 {
        return Err(format!(
            "grim's capture after the mode change is {w} wide with {} bytes",
            rgb.len()
        ));
    }
    let (ok, _) = wlr_randr(&["--output", "Virtual-1", "--custom-mode", "1000x700"])?;
    if ok {
        return Err("a custom mode vkms does not list was taken".into());
    }
    wait_for_crtc_mode(&mut comp, "800x600")?;
    println!("INFO scanout: wlr-randr set vkms's 800x600 mode: the CRTC scans it out and grim captures 800x600");
    comp.stop()
}
