//! Connector hot-plug on the drm backend: a vkms device made through
//! configfs (the 7.3 vkms has it, 6.12's has not), whose connectors are
//! unplugged and plugged back by writing their `status`. heapland hears the
//! change from udev (systemd-udevd from the host's /usr) and withdraws,
//! then re-adds, the output: clients see the wl_output global go and come
//! back. With two outputs, the window on the one unplugged moves to the
//! other and is drawn there, and the output plugged back scans out a frame
//! heapland drew (read from the KMS state).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use std::os::fd::AsFd;

use wayland_client::{
    backend::ObjectId,
    globals::GlobalList,
    protocol::{
        wl_compositor::WlCompositor,
        wl_output::{self, WlOutput},
        wl_surface::{self, WlSurface},
    },
    Connection, Dispatch, Proxy, QueueHandle,
};
use wayland_protocols::{
    wp::presentation_time::client::wp_presentation::WpPresentation,
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use super::{
    compositor::{self, Heapland, State},
    dma_buf, drm_card,
    input::Udevd,
    Test,
};

/// Only on kernels whose vkms has configfs (Debian's 7.x; 6.12's vkms has
/// none, so there is no connector to unplug and no test to count).
pub fn tests() -> Vec<Test> {
    if kernel_major() < 7 {
        return Vec::new();
    }
    vec![
        Test {
            name: "hotplug::unplugged_connector_withdraws_its_output",
            run: unplugged_connector_withdraws_its_output,
        },
        Test {
            name: "hotplug::an_unplugged_outputs_window_moves_and_the_replugged_output_renders",
            run: an_unplugged_outputs_window_moves_and_the_replugged_output_renders,
        },
    ]
}

fn kernel_major() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| r.split('.').next().and_then(|m| m.trim().parse().ok()))
        .unwrap_or(0)
}

const CONFIGFS: &str = "/sys/kernel/config";
const DEVICE: &str = "/sys/kernel/config/vkms/heapland";

/// connector_status_connected / _disconnected of enum drm_connector_status.
const CONNECTED: &str = "1";
const DISCONNECTED: &str = "2";

fn write(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

fn mkdir(path: &str) -> Result<(), String> {
    std::fs::create_dir(path).map_err(|e| format!("mkdir {path}: {e}"))
}

fn link(target: &str, at: &str) -> Result<(), String> {
    std::os::unix::fs::symlink(target, at).map_err(|e| format!("ln -s {target} {at}: {e}"))
}

/// A vkms device with `pipes` pipelines (primary plane, CRTC, encoder and
/// connector each), made through configfs; disabled and removed on drop.
struct ConfigfsVkms {
    pipes: usize,
}

impl ConfigfsVkms {
    fn create(pipes: usize) -> Result<ConfigfsVkms, String> {
        mkdir(DEVICE)?;
        let dev = ConfigfsVkms { pipes };
        for i in 0..pipes {
            mkdir(&format!("{DEVICE}/planes/primary{i}"))?;
            write(&format!("{DEVICE}/planes/primary{i}/type"), "1")?;
            mkdir(&format!("{DEVICE}/crtcs/crtc{i}"))?;
            mkdir(&format!("{DEVICE}/encoders/encoder{i}"))?;
            mkdir(&format!("{DEVICE}/connectors/connector{i}"))?;
            link(
                &format!("{DEVICE}/crtcs/crtc{i}"),
                &format!("{DEVICE}/planes/primary{i}/possible_crtcs/crtc{i}"),
            )?;
            link(
                &format!("{DEVICE}/crtcs/crtc{i}"),
                &format!("{DEVICE}/encoders/encoder{i}/possible_crtcs/crtc{i}"),
            )?;
            link(
                &format!("{DEVICE}/encoders/encoder{i}"),
                &format!("{DEVICE}/connectors/connector{i}/possible_encoders/encoder{i}"),
            )?;
        }
        write(&format!("{DEVICE}/enabled"), "1")?;
        Ok(dev)
    }

    fn set_status(&self, pipe: usize, status: &str) -> Result<(), String> {
        write(
            &format!("{DEVICE}/connectors/connector{pipe}/status"),
            status,
        )
    }
}

impl Drop for ConfigfsVkms {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("{DEVICE}/enabled"), "0");
        for i in 0..self.pipes {
            for l in [
                format!("planes/primary{i}/possible_crtcs/crtc{i}"),
                format!("encoders/encoder{i}/possible_crtcs/crtc{i}"),
                format!("connectors/connector{i}/possible_encoders/encoder{i}"),
            ] {
                let _ = std::fs::remove_file(format!("{DEVICE}/{l}"));
            }
            for d in [
                format!("planes/primary{i}"),
                format!("crtcs/crtc{i}"),
                format!("encoders/encoder{i}"),
                format!("connectors/connector{i}"),
            ] {
                let _ = std::fs::remove_dir(format!("{DEVICE}/{d}"));
            }
        }
        let _ = std::fs::remove_dir(DEVICE);
    }
}

fn cards() -> Vec<PathBuf> {
    let mut cards: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("card"))
                })
                .collect()
        })
        .unwrap_or_default();
    cards.sort();
    cards
}

/// Mounts configfs and makes a vkms device of `pipes` pipelines there,
/// with udevd running for heapland to hear hot-plugs; its card node.
fn configfs_vkms(pipes: usize) -> Result<(Udevd, ConfigfsVkms, String), String> {
    if !Path::new(CONFIGFS).join("vkms").exists() {
        let out = Command::new("mount")
            .args(["-t", "configfs", "configfs", CONFIGFS])
            .output()
            .map_err(|e| format!("mount configfs: {e}"))?;
        if !out.status.success() && !Path::new(CONFIGFS).join("vkms").exists() {
            let msg = String::from_utf8_lossy(&out.stderr).into_owned();
            if !msg.contains("busy") {
                return Err(format!("mount configfs: {msg}"));
            }
        }
    }
    if !Path::new(CONFIGFS).join("vkms").exists() {
        return Err("vkms has no configfs directory on this 7.x kernel".into());
    }

    let udevd = Udevd::start()?;
    let before = cards();
    let vkms = ConfigfsVkms::create(pipes)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let card = loop {
        if let Some(c) = cards().into_iter().find(|c| !before.contains(c)) {
            break c;
        }
        if Instant::now() > deadline {
            return Err("the configfs vkms device made no /dev/dri/card".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok((udevd, vkms, card.to_string_lossy().into_owned()))
}

/// The wl_output globals a client sees now, by registry name.
fn output_globals(globals: &GlobalList) -> Vec<u32> {
    globals.contents().with_list(|l| {
        l.iter()
            .filter(|g| g.interface == "wl_output")
            .map(|g| g.name)
            .collect()
    })
}

fn unplugged_connector_withdraws_its_output() -> Result<(), String> {
    let (_udevd, vkms, card_path) = configfs_vkms(1)?;
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    let (_conn, globals, mut queue) = super::compositor::connect()?;
    let outputs = |globals: &wayland_client::globals::GlobalList| {
        globals
            .contents()
            .with_list(|l| l.iter().filter(|g| g.interface == "wl_output").count())
    };
    let mut st = State::default();
    let mut wait_outputs = |want: usize, what: &str| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while outputs(&globals) != want {
            queue
                .roundtrip(&mut st)
                .map_err(|e| format!("roundtrip waiting for {what}: {e}"))?;
            comp.alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{what}: {} wl_output globals, want {want}\n{}",
                    outputs(&globals),
                    comp.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait_outputs(1, "the configfs vkms output")?;
    vkms.set_status(0, DISCONNECTED)?;
    wait_outputs(0, "unplugging the connector")?;
    vkms.set_status(0, CONNECTED)?;
    wait_outputs(1, "plugging the connector back")?;
    let log = comp.log_text();
    for line in ["disconnected, output withdrawn", "connected, output added"] {
        if !log.contains(line) {
            return Err(format!("no \"{line}\" in the log:\n{log}"));
        }
    }
    println!("INFO hotplug: {card_path}: its output went with the connector and came back");
    comp.stop()?;
    super::input::released(&card_path)?;
    drop(vkms);
    Ok(())
}

/// A surface whose `enter` and `leave` events are recorded, by the
/// wl_output they name.
struct Tracked;

impl Dispatch<WlSurface, Tracked> for State {
    fn event(
        s: &mut Self,
        _: &WlSurface,
        e: wl_surface::Event,
        _: &Tracked,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            wl_surface::Event::Enter { output } => s.entered.push(output.id()),
            wl_surface::Event::Leave { output } => s.entered.retain(|o| *o != output.id()),
            _ => {}
        }
    }
}

impl Dispatch<WlOutput, u32> for State {
    fn event(
        _: &mut Self,
        _: &WlOutput,
        _: wl_output::Event,
        _: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

/// heapland's background, as either renderer rounds it.
fn is_background(xrgb: u32) -> bool {
    let [b, g, r, _] = xrgb.to_le_bytes();
    (24..=27).contains(&r) && (29..=32).contains(&g) && (39..=42).contains(&b)
}

/// The bottom-right pixel (where no window is) of what the CRTC of each
/// connected connector of `card` scans out, read from the KMS state.
fn scanned_out_corners(card: &drm_card::Card) -> Result<Vec<Option<u32>>, String> {
    use drm::control::{connector, Device as _};
    let resources = card
        .resource_handles()
        .map_err(|e| format!("resources of {}: {e}", card.path.display()))?;
    let mut corners = Vec::new();
    for handle in resources.connectors() {
        let info = card
            .get_connector(*handle, false)
            .map_err(|e| format!("connector {handle:?}: {e}"))?;
        if info.state() != connector::State::Connected {
            continue;
        }
        let crtc = info
            .current_encoder()
            .and_then(|e| card.get_encoder(e).ok())
            .and_then(|e| e.crtc())
            .and_then(|c| card.get_crtc(c).ok());
        let Some(fb) = crtc.as_ref().and_then(|c| c.framebuffer()) else {
            corners.push(None);
            continue;
        };
        let Ok(fb) = card.get_planar_framebuffer(fb) else {
            corners.push(None);
            continue;
        };
        let Some(buffer) = fb.buffers()[0] else {
            return Err("GETFB2 gave no buffer handle (not root?)".into());
        };
        let exported = card.buffer_to_prime_fd(buffer, rustix::fs::OFlags::CLOEXEC.bits());
        let _ = card.close_buffer(buffer);
        let fd = exported.map_err(|e| format!("PRIME export of a scanout buffer: {e}"))?;
        let (w, h) = fb.size();
        let pitch = fb.pitches()[0] as usize;
        let len = pitch * h as usize;
        let map = dma_buf::Mapping::new(fd.as_fd(), len)?;
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_READ)
            .map_err(|e| format!("sync start: {e}"))?;
        let corner = map.words()[(pitch / 4) * (h as usize - 1) + (w as usize - 1)];
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_READ)
            .map_err(|e| format!("sync end: {e}"))?;
        corners.push(Some(corner));
    }
    Ok(corners)
}

fn an_unplugged_outputs_window_moves_and_the_replugged_output_renders() -> Result<(), String> {
    let (_udevd, vkms, card_path) = configfs_vkms(2)?;
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    let result = two_outputs(&mut comp, &vkms, &card_path);
    let stopped = comp.stop();
    result?;
    stopped?;
    super::input::released(&card_path)
}

fn two_outputs(comp: &mut Heapland, vkms: &ConfigfsVkms, card_path: &str) -> Result<(), String> {
    let (_conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let mut st = State::default();
    let mut roundtrip = |st: &mut State, comp: &mut Heapland, what: &str| -> Result<(), String> {
        queue
            .roundtrip(st)
            .map_err(|e| format!("roundtrip ({what}): {e}"))?;
        comp.alive()?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    };
    let wait =
        |st: &mut State,
         comp: &mut Heapland,
         roundtrip: &mut dyn FnMut(&mut State, &mut Heapland, &str) -> Result<(), String>,
         done: &dyn Fn(&State) -> bool,
         what: &str|
         -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done(st) {
                roundtrip(st, comp, what)?;
                if Instant::now() > deadline {
                    return Err(format!("{what}: not within 30 s\n{}", comp.log_text()));
                }
            }
            Ok(())
        };
    let globals = &globals;
    let outputs = |n: usize| move |_: &State| output_globals(globals).len() == n;
    wait(
        &mut st,
        comp,
        &mut roundtrip,
        &outputs(2),
        "two wl_output globals",
    )?;
    // Every output bound, each proxy tagged with its registry name.
    let registry = globals.registry();
    let mut bound: Vec<(u32, WlOutput)> = Vec::new();
    let bind_new = |bound: &mut Vec<(u32, WlOutput)>| {
        for name in output_globals(globals) {
            if !bound.iter().any(|(n, _)| *n == name) {
                bound.push((name, registry.bind::<WlOutput, _, _>(name, 4, &qh, name)));
            }
        }
    };
    bind_new(&mut bound);

    // A window, drawn.
    let wl_compositor: WlCompositor = compositor::bind(globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(globals, &qh, 1..=1)?;
    let presentation: WpPresentation = compositor::bind(globals, &qh, 1..=1)?;
    let mut keep = Vec::new();
    let buffers = super::steady_state::shm_buffers(globals, &qh, (64, 64), &mut keep)?;
    let surface = wl_compositor.create_surface(&qh, Tracked);
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let _toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    wait(
        &mut st,
        comp,
        &mut roundtrip,
        &|s| s.configured,
        "configure",
    )?;
    surface.attach(Some(&buffers[0]), 0, 0);
    surface.damage_buffer(0, 0, 64, 64);
    surface.frame(&qh, ());
    surface.commit();
    wait(
        &mut st,
        comp,
        &mut roundtrip,
        &|s| s.frame_done && !s.entered.is_empty(),
        "the window drawn on an output",
    )?;
    let on = st.entered.clone();
    let on_name = bound
        .iter()
        .find(|(_, o)| on.contains(&o.id()))
        .map(|(n, _)| *n)
        .ok_or("the window entered an output the client did not bind")?;

    // Unplug the connector of the window's output (trying each: which
    // connector is which output is vkms's business).
    let mut unplugged = None;
    for pipe in 0..2 {
        vkms.set_status(pipe, DISCONNECTED)?;
        wait(
            &mut st,
            comp,
            &mut roundtrip,
            &outputs(1),
            "an output withdrawn",
        )?;
        if !output_globals(globals).contains(&on_name) {
            unplugged = Some(pipe);
            break;
        }
        vkms.set_status(pipe, CONNECTED)?;
        wait(
            &mut st,
            comp,
            &mut roundtrip,
            &outputs(2),
            "the other output back",
        )?;
        bind_new(&mut bound);
    }
    let pipe = unplugged.ok_or("unplugging either connector left the window's output")?;
    let remaining: Vec<ObjectId> = bound
        .iter()
        .filter(|(n, _)| output_globals(globals).contains(n))
        .map(|(_, o)| o.id())
        .collect();

    if on.iter().any(|o| remaining.contains(o)) {
        return Err(
            "the window was on the remaining output before the unplug: nothing to move".into(),
        );
    }
    // The window is now on the remaining output, and drawn there: its
    // frame presented on it (a frame callback alone would not tell, as one
    // comes once a second even to a surface on no output).
    const MOVED: u64 = 1;
    st.frame_done = false;
    surface.attach(Some(&buffers[1]), 0, 0);
    surface.damage_buffer(0, 0, 64, 64);
    surface.frame(&qh, ());
    presentation.feedback(&surface, &qh, MOVED);
    surface.commit();
    let moved = wait(
        &mut st,
        comp,
        &mut roundtrip,
        &|s| {
            s.frame_done
                && s.entered.iter().any(|o| remaining.contains(o))
                && s.presented.iter().any(|(t, _)| *t == MOVED)
        },
        "the window moved to the remaining output and drawn",
    );
    moved.map_err(|e| {
        format!(
            "{e}\n(frame callback: {}; the window is on {:?}; the remaining output is {remaining:?})",
            st.frame_done, st.entered
        )
    })?;
    let presented_on: Vec<&ObjectId> = st
        .sync_outputs
        .iter()
        .filter(|(t, _)| *t == MOVED)
        .map(|(_, o)| o)
        .collect();
    match st.presented.iter().find(|(t, _)| *t == MOVED) {
        Some((_, Some(_))) if presented_on.iter().any(|o| remaining.contains(o)) => {}
        Some((_, at)) => {
            return Err(format!(
                "the moved window's frame was {} on {presented_on:?}, not on the remaining output {remaining:?}",
                if at.is_some() { "presented" } else { "discarded" }
            ))
        }
        None => return Err("no presentation feedback for the moved window's frame".into()),
    }

    // The connector plugged back: its output comes back and scans out a
    // frame heapland drew (its background where no window is).
    vkms.set_status(pipe, CONNECTED)?;
    wait(
        &mut st,
        comp,
        &mut roundtrip,
        &outputs(2),
        "the output plugged back",
    )?;
    let card = drm_card::Card::open(Path::new(card_path))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let corners = loop {
        let corners = scanned_out_corners(&card)?;
        if corners.len() == 2 && corners.iter().all(|c| c.is_some_and(is_background)) {
            break corners;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after plugging connector {pipe} back, the connected CRTCs scan out corners {corners:x?}, want heapland's background on both\n{}",
                comp.log_text()
            ));
        }
        roundtrip(&mut st, comp, "the re-plugged output drawn")?;
    };
    println!(
        "INFO hotplug: {card_path}: the window left with connector {pipe}'s output for the other one and was drawn there; plugged back, both CRTCs scan out heapland's frames (corners {corners:x?})"
    );
    Ok(())
}
