//! DRM/KMS backend: heapland as the session compositor of a real display.
//!
//! The session comes from libseat (logind, seatd, or the builtin backend as
//! root), the display device from udev, input from libinput. Each connected connector gets a
//! `DrmCompositor` whose swapchain allocator `--allocator` chooses
//! ([`scanout`](super::scanout)): by default a `HeapAllocator` made for the
//! display device, so that the scanout buffers come from the DMA-BUF heap
//! that serves that device and `HeapFramebufferExporter` turns them into KMS
//! framebuffers with PRIME and `ADDFB2`; or Mesa's GBM, or KMS dumb buffers.
//! pixman renders into them on the CPU whichever they are. No GPU driver is
//! involved, and GBM only with `--allocator gbm`; the `GbmDevice` type
//! parameter below only fills a slot Smithay reserves for cursor buffers,
//! and is always `None`.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use calloop::{
    timer::{TimeoutAction, Timer},
    LoopHandle, RegistrationToken,
};
use heapland_allocator::DeviceNumber;
use smithay::{
    backend::{
        allocator::{gbm::GbmDevice, Format, Fourcc},
        drm::{
            compositor::{DrmCompositor, FrameFlags, PrimaryPlaneElement},
            DrmDevice, DrmDeviceFd, DrmDeviceNotifier, DrmEvent, DrmEventMetadata, DrmEventTime,
        },
        libinput::{LibinputInputBackend, LibinputSessionInterface},
        renderer::{pixman::PixmanRenderer, ImportDma},
        session::{libseat::LibSeatSession, Event as SessionEvent, Session},
        udev::{UdevBackend, UdevEvent},
    },
    desktop::utils::OutputPresentationFeedback,
    output::{Mode as OutputMode, Output, PhysicalProperties, Subpixel},
    reexports::{
        drm::{
            self,
            control::{connector, crtc, Device as ControlDevice, ModeTypeFlags},
        },
        input::Libinput,
        rustix::fs::OFlags,
        wayland_protocols::wp::presentation_time::server::wp_presentation_feedback::Kind,
        wayland_server::backend::GlobalId,
    },
    utils::{DeviceFd, Monotonic, Time, Transform},
    wayland::presentation::Refresh,
};
use tracing::{debug, info, warn};

use crate::{
    backend::{
        headless::CLEAR_COLOR,
        scanout::{self, OutputScanout, ScanoutAllocator, ScanoutExporter, ScanoutMemory},
    },
    cli::{Cli, OutputMode as CliMode},
    dmabuf_params::ParamsValidator,
    feedback::{self, cpu_formats},
    frame_stats::Shown,
    input::InputAction,
    scene::{self, CursorMode},
    screenshot::write_dmabuf_png,
    state::Heapland,
};

/// Why the DRM backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DrmBackendError {
    #[error("cannot open a libseat session ({0}); run from a VT as a seat user, under seatd, or as root")]
    Session(String),
    #[error("cannot enumerate DRM devices through udev: {0}")]
    Udev(#[source] std::io::Error),
    #[error("no DRM device with a connected display on seat {seat}: {tried}")]
    NoDisplay { seat: String, tried: String },
    #[error("--share-with {path}: {reason}")]
    ShareWith { path: PathBuf, reason: String },
    #[error("cannot register an event source: {0}")]
    Loop(String),
}

type ScanoutDrmCompositor = DrmCompositor<
    ScanoutAllocator,
    ScanoutExporter,
    Option<OutputPresentationFeedback>,
    DrmDeviceFd,
>;

/// One connector driven by one CRTC.
struct DrmOutput {
    output: Output,
    compositor: ScanoutDrmCompositor,
    renderer: PixmanRenderer,
    refresh: Duration,
    /// A frame is queued to KMS and its page flip has not completed.
    flip_pending: bool,
    /// Timer that retries a frame when there was nothing to draw.
    idle_timer: Option<RegistrationToken>,
    frames: u64,
    /// Formats of the primary plane that a client's buffer may be scanned
    /// out in (see `open_output`).
    scanout_formats: Vec<Format>,
    /// Where to write this output's picture (the first output only).
    screenshot: Option<PathBuf>,
    every_frame: bool,
    /// The connector it drives, to notice its unplugging.
    connector: connector::Handle,
    /// Its wl_output global, once published.
    global: Option<GlobalId>,
}

/// The display device and its outputs; shared by the event sources.
struct DrmBackend {
    drm: DrmDevice,
    outputs: Vec<DrmOutput>,
    /// Held so that the device stays ours for as long as the loop runs.
    session: LibSeatSession,
    /// Where the scanout buffers of outputs plugged in later come from.
    memory: ScanoutMemory,
    device_name: String,
    /// `--output` modes, by output index, for outputs plugged in later.
    requested: Vec<CliMode>,
    /// `--screenshot` and `--screenshot-every-frame`, for the first output.
    screenshot: Option<PathBuf>,
    every_frame: bool,
}

/// A display device opened with its connected outputs, before they are
/// published.
struct OpenedDisplay {
    drm: DrmDevice,
    outputs: Vec<DrmOutput>,
    notifier: DrmDeviceNotifier,
    memory: ScanoutMemory,
    device_name: String,
    dev: u64,
}

/// Opens the session and the first display device with a connected
/// connector, and starts rendering to it.
pub fn init(
    cli: &Cli,
    state: &mut Heapland,
    handle: &LoopHandle<'static, Heapland>,
) -> Result<(), DrmBackendError> {
    let (mut session, session_notifier) =
        LibSeatSession::new().map_err(|e| DrmBackendError::Session(e.to_string()))?;
    let seat = session.seat();
    let udev = UdevBackend::new(&seat).map_err(DrmBackendError::Udev)?;

    let mut candidates: Vec<(u64, PathBuf)> = udev
        .device_list()
        .map(|(dev, path)| (dev, path.to_path_buf()))
        .filter(|(_, path)| cli.drm_device.as_ref().is_none_or(|wanted| wanted == path))
        .collect();
    candidates.sort_by(|a, b| a.1.cmp(&b.1));

    let shared = shared_devices(cli)?;
    let mut tried = Vec::new();
    let mut opened = None;
    for (dev, path) in &candidates {
        match open_display(&mut session, state, cli, *dev, path, &shared) {
            Ok(found) => {
                if !state.default_plan.has_feedback() {
                    match state.set_main_device(*dev) {
                        Ok(()) => info!(
                            "no DRM render node: the display's primary node {}:{} is linux-dmabuf's main device",
                            rustix_major(*dev),
                            rustix_minor(*dev)
                        ),
                        Err(err) => warn!("linux-dmabuf stays without feedback: {err}"),
                    }
                }
                set_scanout_plan(state, *dev, &found.outputs);
                opened = Some(found);
                break;
            }
            Err(err) => {
                info!("{}: not used: {err}", path.display());
                tried.push(format!("{}: {err}", path.display()));
            }
        }
    }
    let Some(opened) = opened else {
        return Err(DrmBackendError::NoDisplay {
            seat,
            tried: if tried.is_empty() {
                "udev lists no DRM card".into()
            } else {
                tried.join("; ")
            },
        });
    };
    let OpenedDisplay {
        drm,
        mut outputs,
        notifier: drm_notifier,
        memory,
        device_name,
        dev: display_dev,
    } = opened;
    // Only outputs that are fully set up become globals and take space.
    for out in &mut outputs {
        publish_output(state, out);
    }
    let backend = Rc::new(RefCell::new(DrmBackend {
        drm,
        outputs,
        session,
        memory,
        device_name,
        requested: cli.outputs.clone(),
        screenshot: cli.screenshot.clone(),
        every_frame: cli.screenshot_every_frame,
    }));

    let mut libinput = start_libinput(&backend.borrow().session, &seat, handle)?;

    let session_backend = backend.clone();
    let session_handle = handle.clone();
    handle
        .insert_source(session_notifier, move |event, _, state: &mut Heapland| {
            let mut backend = session_backend.borrow_mut();
            match event {
                SessionEvent::PauseSession => {
                    info!("session paused: releasing the display and input devices");
                    libinput.suspend();
                    backend.drm.pause();
                }
                SessionEvent::ActivateSession => {
                    info!("session active again: taking the display back");
                    if libinput.resume().is_err() {
                        warn!("cannot resume libinput");
                    }
                    if let Err(err) = backend.drm.activate(false) {
                        warn!("cannot reactivate the DRM device: {err}");
                    }
                    for out in &mut backend.outputs {
                        if let Err(err) = out.compositor.reset_state() {
                            warn!("cannot reset {}: {err}", out.output.name());
                        }
                        out.flip_pending = false;
                        render(out, state);
                        schedule_idle(out, &session_backend, &session_handle);
                    }
                    // Connectors plugged or unplugged while away.
                    drop(backend);
                    rescan_connectors(&session_backend, state, &session_handle);
                }
            }
        })
        .map_err(|e| DrmBackendError::Loop(e.to_string()))?;

    let vblank_backend = backend.clone();
    let loop_handle = handle.clone();
    handle
        .insert_source(
            drm_notifier,
            move |event, metadata, state: &mut Heapland| match event {
                DrmEvent::VBlank(crtc) => {
                    let mut backend = vblank_backend.borrow_mut();
                    if let Some(out) = backend
                        .outputs
                        .iter_mut()
                        .find(|o| o.compositor.crtc() == crtc)
                    {
                        frame_finished(out, metadata);
                        render(out, state);
                        schedule_idle(out, &vblank_backend, &loop_handle);
                    }
                }
                DrmEvent::Error(err) => warn!("DRM device error: {err}"),
            },
        )
        .map_err(|e| DrmBackendError::Loop(e.to_string()))?;

    // Connector hot-plug: udev reports a change of the display device.
    let hotplug_backend = backend.clone();
    let hotplug_handle = handle.clone();
    handle
        .insert_source(udev, move |event, _, state: &mut Heapland| {
            if let UdevEvent::Changed { device_id } = event {
                if device_id == display_dev {
                    rescan_connectors(&hotplug_backend, state, &hotplug_handle);
                }
            }
        })
        .map_err(|e| DrmBackendError::Loop(e.to_string()))?;
    let mut b = backend.borrow_mut();
    if let Some(first) = b.outputs.first_mut() {
        first.screenshot = cli.screenshot.clone();
        first.every_frame = cli.screenshot_every_frame;
    }
    for out in &mut b.outputs {
        render(out, state);
        schedule_idle(out, &backend, handle);
    }
    Ok(())
}

/// Feeds seat0 from libinput (devices opened through the session) and
/// carries out the compositor's own key bindings.
fn start_libinput(
    session: &LibSeatSession,
    seat: &str,
    handle: &LoopHandle<'static, Heapland>,
) -> Result<Libinput, DrmBackendError> {
    let mut libinput =
        Libinput::new_with_udev::<LibinputSessionInterface<LibSeatSession>>(session.clone().into());
    if libinput.udev_assign_seat(seat).is_err() {
        warn!("libinput cannot use seat {seat}: no input devices");
    }
    let mut vt_session = session.clone();
    handle
        .insert_source(
            LibinputInputBackend::new(libinput.clone()),
            move |event, _, state: &mut Heapland| match state.process_input_event(event) {
                InputAction::None => {}
                InputAction::Quit => {
                    info!("Ctrl+Alt+Backspace: shutting down");
                    state.loop_signal.stop();
                }
                InputAction::SwitchVt(vt) => {
                    if let Err(err) = vt_session.change_vt(vt) {
                        warn!("cannot switch to VT {vt}: {err}");
                    }
                }
            },
        )
        .map_err(|e| DrmBackendError::Loop(e.to_string()))?;
    Ok(libinput)
}

/// Devices besides the display whose constraints scanout buffers must meet:
/// the render node clients render with, and every `--share-with` node.
fn shared_devices(cli: &Cli) -> Result<Vec<DeviceNumber>, DrmBackendError> {
    let mut devices: Vec<DeviceNumber> = crate::feedback::find_render_node()
        .map(DeviceNumber::from_dev_t)
        .into_iter()
        .collect();
    for path in &cli.share_with {
        let dev = DeviceNumber::of_path(path).map_err(|e| DrmBackendError::ShareWith {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        devices.push(dev);
    }
    Ok(devices)
}

/// Announces an output to clients and places it right of the others.
fn publish_output(state: &mut Heapland, out: &mut DrmOutput) {
    let x: i32 = state
        .outputs
        .iter()
        .filter_map(|o| state.space.output_geometry(o))
        .map(|g| g.loc.x + g.size.w)
        .max()
        .unwrap_or(0);
    out.output
        .change_current_state(None, None, None, Some((x, 0).into()));
    out.global = Some(state.add_output(&out.output, (x, 0).into()));
}

/// After a udev change event of the display device: withdraws the outputs
/// of unplugged connectors and sets up newly connected ones.
fn rescan_connectors(
    backend: &Rc<RefCell<DrmBackend>>,
    state: &mut Heapland,
    handle: &LoopHandle<'static, Heapland>,
) {
    let mut b = backend.borrow_mut();
    if !b.drm.is_active() {
        // Not ours now; the rescan on activation catches up.
        return;
    }
    let resources = match b.drm.resource_handles() {
        Ok(r) => r,
        Err(err) => {
            warn!("hot-plug: cannot read KMS resources: {err}");
            return;
        }
    };
    let mut connected: Vec<connector::Info> = Vec::new();
    // A connector that cannot be read keeps its output as it is.
    let mut unreadable: Vec<connector::Handle> = Vec::new();
    for c in resources.connectors() {
        match b.drm.get_connector(*c, true) {
            Ok(i) if i.state() == connector::State::Connected && !i.modes().is_empty() => {
                connected.push(i)
            }
            Ok(_) => {}
            Err(err) => {
                warn!("hot-plug: cannot read connector {c:?}: {err}");
                unreadable.push(*c);
            }
        }
    }
    let mut kept = Vec::new();
    for mut out in std::mem::take(&mut b.outputs) {
        if unreadable.contains(&out.connector)
            || connected.iter().any(|i| i.handle() == out.connector)
        {
            kept.push(out);
            continue;
        }
        info!("{}: disconnected, output withdrawn", out.output.name());
        if let Some(token) = out.idle_timer.take() {
            handle.remove(token);
        }
        if let Some(global) = out.global.take() {
            state.remove_output(&out.output, global);
        }
    }
    b.outputs = kept;
    for info in connected {
        if b.outputs.iter().any(|o| o.connector == info.handle()) {
            continue;
        }
        let used: Vec<crtc::Handle> = b.outputs.iter().map(|o| o.compositor.crtc()).collect();
        let Some(crtc) = info
            .encoders()
            .iter()
            .filter_map(|enc| b.drm.get_encoder(*enc).ok())
            .flat_map(|enc| resources.filter_crtcs(enc.possible_crtcs()))
            .find(|crtc| !used.contains(crtc))
        else {
            warn!(
                "{}-{} connected, but no CRTC is free for it",
                info.interface().as_str(),
                info.interface_id()
            );
            continue;
        };
        let b = &mut *b;
        let requested = b.requested.get(b.outputs.len()).copied();
        match open_output(
            &mut b.drm,
            &b.memory,
            &b.device_name,
            requested,
            &info,
            crtc,
        ) {
            Ok(mut out) => {
                info!("{}: connected, output added", out.output.name());
                publish_output(state, &mut out);
                render(&mut out, state);
                b.outputs.push(out);
            }
            Err(err) => warn!("hot-plug: {err}"),
        }
    }
    // The screenshot follows the first output, whichever it is now.
    let (screenshot, every_frame) = (b.screenshot.clone(), b.every_frame);
    for (i, out) in b.outputs.iter_mut().enumerate() {
        out.screenshot = if i == 0 { screenshot.clone() } else { None };
        out.every_frame = i == 0 && every_frame;
    }
    drop(b);
    let crtcs: Vec<crtc::Handle> = backend
        .borrow()
        .outputs
        .iter()
        .filter(|o| o.idle_timer.is_none())
        .map(|o| o.compositor.crtc())
        .collect();
    for crtc in crtcs {
        let mut b = backend.borrow_mut();
        if let Some(out) = b.outputs.iter_mut().find(|o| o.compositor.crtc() == crtc) {
            schedule_idle(out, backend, handle);
        }
    }
}

/// Opens one DRM device and sets up every connected connector on it.
fn open_display(
    session: &mut LibSeatSession,
    state: &mut Heapland,
    cli: &Cli,
    dev: u64,
    path: &Path,
    shared: &[DeviceNumber],
) -> Result<OpenedDisplay, String> {
    let fd = session
        .open(
            path,
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        )
        .map_err(|e| format!("cannot open: {e}"))?;
    let fd = DrmDeviceFd::new(DeviceFd::from(fd));
    let (mut drm, notifier) =
        DrmDevice::new(fd, true).map_err(|e| format!("not a KMS device: {e}"))?;
    let device_name = format!("DRM device {}:{}", rustix_major(dev), rustix_minor(dev));
    let devices: Vec<DeviceNumber> = std::iter::once(DeviceNumber::from_dev_t(dev))
        .chain(shared.iter().copied())
        .collect();
    let memory = ScanoutMemory::open(
        cli.allocator,
        drm.device_fd(),
        &device_name,
        state.heaps.discovery(),
        devices,
    )
    .map_err(|e| e.to_string())?;

    let resources = drm
        .resource_handles()
        .map_err(|e| format!("cannot read KMS resources: {e}"))?;
    let mut outputs = Vec::new();
    let mut used_crtcs: Vec<crtc::Handle> = Vec::new();
    for conn in resources.connectors() {
        let Ok(info) = drm.get_connector(*conn, false) else {
            continue;
        };
        if info.state() != connector::State::Connected || info.modes().is_empty() {
            continue;
        }
        let Some(crtc) = info
            .encoders()
            .iter()
            .filter_map(|enc| drm.get_encoder(*enc).ok())
            .flat_map(|enc| resources.filter_crtcs(enc.possible_crtcs()))
            .find(|crtc| !used_crtcs.contains(crtc))
        else {
            continue;
        };
        let requested = cli.outputs.get(outputs.len()).copied();
        outputs.push(open_output(
            &mut drm,
            &memory,
            &device_name,
            requested,
            &info,
            crtc,
        )?);
        used_crtcs.push(crtc);
    }
    if outputs.is_empty() {
        return Err("no connected connector".into());
    }
    Ok(OpenedDisplay {
        drm,
        outputs,
        notifier,
        memory,
        device_name,
        dev,
    })
}

fn open_output(
    drm: &mut DrmDevice,
    memory: &ScanoutMemory,
    device_name: &str,
    requested: Option<CliMode>,
    info: &connector::Info,
    crtc: crtc::Handle,
) -> Result<DrmOutput, String> {
    let wanted = |m: &&drm::control::Mode| {
        requested.is_some_and(|r| {
            (u32::from(m.size().0), u32::from(m.size().1), m.vrefresh())
                == (r.width, r.height, r.refresh_hz)
        })
    };
    let mode = info
        .modes()
        .iter()
        .find(wanted)
        .or_else(|| {
            info.modes()
                .iter()
                .find(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED))
        })
        .copied()
        .unwrap_or(info.modes()[0]);
    if let Some(r) = requested.filter(|_| !wanted(&&mode)) {
        warn!(
            "{}-{} has no {}x{}@{} mode, using its preferred one",
            info.interface().as_str(),
            info.interface_id(),
            r.width,
            r.height,
            r.refresh_hz
        );
    }
    let name = format!("{}-{}", info.interface().as_str(), info.interface_id());
    let scanout = memory.for_output(
        drm.device_fd(),
        device_name,
        u32::from(mode.size().0),
        u32::from(mode.size().1),
    );

    let wl_mode = OutputMode::from(mode);
    let (phys_w, phys_h) = info.size().unwrap_or((0, 0));
    let output = Output::new(
        name.clone(),
        PhysicalProperties {
            size: (phys_w as i32, phys_h as i32).into(),
            subpixel: Subpixel::Unknown,
            make: "heapland".into(),
            model: name.clone(),
        },
    );
    output.add_mode(wl_mode);
    output.set_preferred(wl_mode);
    output.change_current_state(Some(wl_mode), Some(Transform::Normal), None, None);

    let renderer = PixmanRenderer::new().map_err(|e| format!("pixman: {e}"))?;
    let renderer_formats: Vec<_> = renderer.dmabuf_formats().into_iter().collect();
    // What a client buffer on the primary plane may use: the plane takes
    // it, the renderer can still composite it, and it is one of the packed
    // formats heapland checks linux-dmabuf params against.
    let packed = cpu_formats();
    let mut scanout_formats = Vec::new();
    let cursor_size = drm.cursor_size();
    let drm_fd = drm.device_fd().clone();
    // The outer error: no surface; the inner one: the compositor, whose first
    // test commit uses the allocator's buffer, did not start.
    let mut start = |scanout: OutputScanout| -> Result<_, String> {
        let surface = drm
            .create_surface(crtc, mode, &[info.handle()])
            .map_err(|e| format!("{name}: cannot create a KMS surface: {e}"))?;
        scanout_formats = surface
            .plane_info()
            .formats
            .iter()
            .filter(|f| renderer_formats.contains(f) && packed.contains(f))
            .copied()
            .collect();
        Ok(DrmCompositor::new(
            &output,
            surface,
            None,
            scanout.allocator,
            scanout.exporter,
            [Fourcc::Xrgb8888, Fourcc::Argb8888],
            renderer_formats.iter().copied(),
            cursor_size,
            None::<GbmDevice<DrmDeviceFd>>,
        ))
    };
    // The display's test commit is the last word on heap memory: a device the
    // kernel described wrongly refuses the buffer there. The output then
    // scans out dumb buffers rather than being abandoned.
    let is_heap = scanout.is_heap();
    let mut source = scanout.source.clone();
    let compositor = match start(scanout)? {
        Ok(c) => c,
        Err(refused) if is_heap => {
            warn!(
                "{name}: the display refused {source} ({refused}); using KMS dumb buffers instead"
            );
            let dumb = scanout::dumb(&drm_fd);
            source = dumb.source.clone();
            start(dumb)?.map_err(|e| {
                format!("{name}: cannot start the KMS compositor with {source} ({e}), nor with heap memory ({refused})")
            })?
        }
        Err(e) => return Err(format!("{name}: cannot start the KMS compositor: {e}")),
    };

    let refresh_mhz = wl_mode.refresh.max(1000) as u64;
    info!(
        "output {name}: {}x{}@{:.2}Hz, scanout buffers from {}",
        wl_mode.size.w,
        wl_mode.size.h,
        refresh_mhz as f64 / 1000.0,
        source
    );
    Ok(DrmOutput {
        output,
        compositor,
        renderer,
        refresh: Duration::from_nanos(1_000_000_000_000 / refresh_mhz),
        flip_pending: false,
        idle_timer: None,
        frames: 0,
        screenshot: None,
        every_frame: false,
        scanout_formats,
        connector: info.handle(),
        global: None,
    })
}

/// Gives the state the scanout plan of the display device `dev`: the
/// default plan with a scanout tranche of the first output's primary plane
/// formats (see `feedback`), and lets linux-dmabuf params use them.
fn set_scanout_plan(state: &mut Heapland, dev: u64, outputs: &[DrmOutput]) {
    let Some(first) = outputs.first() else {
        return;
    };
    if !state.default_plan.has_feedback() || first.scanout_formats.is_empty() {
        info!(
            "no scanout tranche: no linux-dmabuf feedback, or no plane format the renderer imports"
        );
        return;
    }
    let plan = state.default_plan.with_scanout(dev, &first.scanout_formats);
    let names: Vec<String> = first
        .scanout_formats
        .iter()
        .map(|f| format!("{:?}", f.code))
        .collect();
    info!(
        "scanout tranche on {}:{} for surfaces the display can show directly: {}",
        rustix_major(dev),
        rustix_minor(dev),
        names.join(" ")
    );
    let mut formats = cpu_formats();
    for t in plan.tranches() {
        for f in &t.formats {
            if !formats.contains(f) {
                formats.push(*f);
            }
        }
    }
    state.params = ParamsValidator::new(formats);
    state.scanout_plan = Some(Arc::new(plan));
}

fn rustix_major(dev: u64) -> u32 {
    smithay::reexports::rustix::fs::major(dev)
}

fn rustix_minor(dev: u64) -> u32 {
    smithay::reexports::rustix::fs::minor(dev)
}

/// Draws the space into the next swapchain buffer and queues it to KMS.
fn render(out: &mut DrmOutput, state: &mut Heapland) {
    if out.flip_pending {
        return;
    }
    let elements = scene::output_elements(state, &mut out.renderer, &out.output, CursorMode::Draw);
    let result = match out.compositor.render_frame(
        &mut out.renderer,
        &elements,
        CLEAR_COLOR,
        FrameFlags::DEFAULT,
    ) {
        Ok(result) => result,
        Err(err) => {
            warn!("{}: rendering failed: {err}", out.output.name());
            return;
        }
    };
    let damaged = !result.is_empty;
    let requested = out.screenshot.is_some() && state.screenshot_requested;
    if let (true, Some(path)) = (
        requested || (out.every_frame && (damaged || out.frames == 0)),
        out.screenshot.as_ref(),
    ) {
        if requested {
            state.screenshot_requested = false;
        }
        match &result.primary_element {
            PrimaryPlaneElement::Swapchain(element) => {
                match write_dmabuf_png(path, element.buffer().dmabuf()) {
                    Ok(()) => debug!("screenshot of the scanout buffer in {}", path.display()),
                    Err(err) => warn!("screenshot: {err}"),
                }
            }
            PrimaryPlaneElement::Element(_) => {
                info!("screenshot skipped: a client buffer is scanned out directly")
            }
        }
    }
    let shown = match &result.primary_element {
        PrimaryPlaneElement::Swapchain(_) => Shown::Composited,
        PrimaryPlaneElement::Element(_) => Shown::Direct,
    };
    let states = result.states;

    let output = out.output.clone();
    let mut decisions = Vec::new();
    for window in state.space.elements_for_output(&output) {
        if let Some(toplevel) = window.toplevel() {
            let surface = toplevel.wl_surface();
            decisions.push((surface.clone(), feedback::wants_scanout(&states, surface)));
        }
        window.with_surfaces(|surface, surface_data| {
            smithay::desktop::utils::update_surface_primary_scanout_output(
                surface,
                &output,
                surface_data,
                &states,
                smithay::backend::renderer::element::default_primary_scanout_output_compare,
            );
        });
    }
    for (surface, scanout) in decisions {
        feedback::scanout_decided(state, &surface, scanout);
    }
    let feedback = state.frame_done(&output);

    if damaged {
        match out.compositor.queue_frame(Some(feedback)) {
            Ok(()) => {
                out.flip_pending = true;
                out.frames += 1;
                state.frame_stats.frame(shown);
                debug!(output = %output.name(), frame = out.frames, "queued");
            }
            Err(err) => warn!("{}: cannot queue the frame: {err}", output.name()),
        }
    }
}

/// A page flip completed: the frame is on screen.
fn frame_finished(out: &mut DrmOutput, metadata: &mut Option<DrmEventMetadata>) {
    out.flip_pending = false;
    match out.compositor.frame_submitted() {
        Ok(Some(Some(mut feedback))) => {
            let (time, flags) = match metadata.as_ref().map(|m| m.time) {
                Some(DrmEventTime::Monotonic(t)) => (
                    Time::<Monotonic>::from(t),
                    Kind::Vsync | Kind::HwClock | Kind::HwCompletion,
                ),
                _ => (smithay::utils::Clock::<Monotonic>::new().now(), Kind::Vsync),
            };
            let seq = metadata.as_ref().map(|m| m.sequence).unwrap_or(0);
            feedback.presented(time, Refresh::Fixed(out.refresh), u64::from(seq), flags);
        }
        Ok(_) => {}
        Err(err) => warn!("{}: frame_submitted: {err}", out.output.name()),
    }
}

/// With nothing queued, no vblank event comes; poll for client updates at
/// the refresh rate until a frame is queued again.
fn schedule_idle(
    out: &mut DrmOutput,
    backend: &Rc<RefCell<DrmBackend>>,
    handle: &LoopHandle<'static, Heapland>,
) {
    if out.flip_pending || out.idle_timer.is_some() {
        return;
    }
    let crtc = out.compositor.crtc();
    let backend = backend.clone();
    let refresh = out.refresh;
    let token = handle.insert_source(Timer::from_duration(refresh), move |_, _, state| {
        let mut b = backend.borrow_mut();
        let active = b.drm.is_active();
        let Some(out) = b.outputs.iter_mut().find(|o| o.compositor.crtc() == crtc) else {
            return TimeoutAction::Drop;
        };
        if !active {
            // The session is paused (another VT): nothing to draw until it
            // is activated again, which restarts the timer.
            out.idle_timer = None;
            return TimeoutAction::Drop;
        }
        render(out, state);
        if out.flip_pending {
            out.idle_timer = None;
            TimeoutAction::Drop
        } else {
            TimeoutAction::ToDuration(refresh)
        }
    });
    match token {
        Ok(token) => out.idle_timer = Some(token),
        Err(err) => warn!("cannot start the idle timer: {err}"),
    }
}
