//! Drag and drop on the drm backend: a client starts a drag from its
//! window with a press of the uinput pointer, giving `start_drag` a 32x32
//! green icon placed with its centre on the pointer (`attach` at -16,-16).
//! heapland draws that icon where the pointer goes while the button is
//! held, and nothing once it is released (the drop). Read with grim.

use std::{
    fs::File,
    time::{Duration, Instant},
};

use wayland_client::{
    protocol::{
        wl_compositor::WlCompositor,
        wl_data_device_manager::{self, WlDataDeviceManager},
        wl_seat::WlSeat,
        wl_shm::WlShm,
        wl_surface::WlSurface,
    },
    Proxy,
};
use wayland_protocols::xdg::shell::client::xdg_wm_base::XdgWmBase;

use super::{
    compositor::{self, Heapland, State},
    input::described_node,
    pointer::{Pointer, NAME},
    session, Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "drag::the_drag_icon_follows_the_pointer_until_the_drop",
        run: the_drag_icon_follows_the_pointer_until_the_drop,
    }]
}

const GREEN: [u8; 3] = [0, 255, 0];
const ICON: i32 = 32;

/// An XRGB8888 wl_shm buffer of `w`x`h` filled with `xrgb`, and the file
/// behind it.
fn buffer(
    shm: &WlShm,
    qh: &wayland_client::QueueHandle<State>,
    w: i32,
    h: i32,
    xrgb: u32,
) -> Result<(wayland_client::protocol::wl_buffer::WlBuffer, File), String> {
    heapland_test_client::shm::solid_buffer(shm, qh, (w as u32, h as u32), xrgb, ())
}

/// Green pixels grim sees inside `rect` (x0, y0, x1, y1) and outside it.
fn green(comp: &mut Heapland, rect: (i32, i32, i32, i32)) -> Result<(usize, usize), String> {
    let (w, rgb) = compositor::grim(comp)?;
    let (mut inside, mut outside) = (0, 0);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if px == GREEN {
            let (x, y) = ((i as u32 % w) as i32, (i as u32 / w) as i32);
            if x >= rect.0 && x < rect.2 && y >= rect.1 && y < rect.3 {
                inside += 1;
            } else {
                outside += 1;
            }
        }
    }
    Ok((inside, outside))
}

/// Polls grim for up to 30 s until `done(inside, outside)`.
fn wait_for_green(
    comp: &mut Heapland,
    rect: (i32, i32, i32, i32),
    what: &str,
    done: impl Fn(usize, usize) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (inside, outside) = green(comp, rect)?;
        if done(inside, outside) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: {inside} green pixels in {rect:?}, {outside} elsewhere after 30 s:\n{}",
                comp.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn the_drag_icon_follows_the_pointer_until_the_drop() -> Result<(), String> {
    let _udevd = super::input::Udevd::start()?;
    let pointer = Pointer::create()?;
    let node = described_node(NAME, "ID_INPUT_MOUSE=1")?;
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;

    let (_conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    let shm: WlShm = compositor::bind(&globals, &qh, 1..=1)?;
    let seat: WlSeat = compositor::bind(&globals, &qh, 5..=7)?;
    let ddm: WlDataDeviceManager = compositor::bind(&globals, &qh, 3..=3)?;
    let _wl_pointer = seat.get_pointer(&qh, ());
    let data_device = ddm.get_data_device(&seat, &qh, ());
    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let _toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    let mut st = State::default();
    session::wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.configured,
        "configure",
    )?;
    let (window, _window_file) = buffer(&shm, &qh, 200, 200, 0x0000_00ff)?;
    surface.attach(Some(&window), 0, 0);
    surface.damage_buffer(0, 0, 200, 200);
    surface.commit();
    queue
        .roundtrip(&mut st)
        .map_err(|e| format!("roundtrip: {e}"))?;

    // The window is at the top left (no title bar: the client did not ask
    // for one); a press on it starts the drag.
    pointer.move_to((100, 100))?;
    std::thread::sleep(Duration::from_millis(300));
    pointer.button(true)?;
    session::wait(
        &mut queue,
        &mut st,
        &mut comp,
        |s| s.pressed.is_some(),
        "wl_pointer.button (is the uinput pointer on the window?)",
    )?;
    let serial = st.pressed.unwrap_or_default();
    let source = ddm.create_data_source(&qh, ());
    source.offer("text/plain".into());
    source.set_actions(wl_data_device_manager::DndAction::Copy);
    let icon: WlSurface = wl_compositor.create_surface(&qh, ());
    data_device.start_drag(Some(&source), &surface, Some(&icon), serial);
    let (icon_buffer, _icon_file) = buffer(&shm, &qh, ICON, ICON, 0x0000_ff00)?;
    // wl_surface 5 moves a surface with `offset`, earlier ones with
    // attach's x and y.
    if icon.version() >= 5 {
        icon.attach(Some(&icon_buffer), 0, 0);
        icon.offset(-ICON / 2, -ICON / 2);
    } else {
        icon.attach(Some(&icon_buffer), -ICON / 2, -ICON / 2);
    }
    icon.damage_buffer(0, 0, ICON, ICON);
    icon.commit();
    queue
        .roundtrip(&mut st)
        .map_err(|e| format!("roundtrip: {e}"))?;

    let to = (500, 400);
    for step in 1..=10 {
        pointer.move_to((
            100 + (to.0 - 100) * step / 10,
            100 + (to.1 - 100) * step / 10,
        ))?;
        std::thread::sleep(Duration::from_millis(30));
    }
    let rect = (
        to.0 - ICON / 2,
        to.1 - ICON / 2,
        to.0 + ICON / 2,
        to.1 + ICON / 2,
    );
    let full = (ICON * ICON) as usize;
    wait_for_green(
        &mut comp,
        rect,
        "the drag icon under the pointer",
        |i, o| i == full && o == 0,
    )?;
    println!(
        "INFO drag: the {ICON}x{ICON} drag icon is drawn centred on the pointer at {to:?} ({node})"
    );

    pointer.button(false)?;
    wait_for_green(&mut comp, rect, "no drag icon after the drop", |i, o| {
        i == 0 && o == 0
    })?;
    println!("INFO drag: released: the drop took the icon off the screen");
    queue
        .roundtrip(&mut st)
        .map_err(|e| format!("roundtrip: {e}"))?;
    drop(pointer);
    comp.stop()
}
