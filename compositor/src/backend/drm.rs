//! DRM/KMS backend: heapland as the session compositor of a real display.
//!
//! The session comes from libseat (logind, seatd, or the builtin backend as
//! root), the display device from udev, input from libinput. Each connected
//! connector gets a `DrmCompositor` whose swapchain allocator `--allocator`
//! chooses ([`scanout`](super::scanout)): by default a `DmaHeapAllocator` of
//! the heap chosen for the display device, so that the scanout buffers come from the
//! DMA-BUF heap that serves that device and `HeapFramebufferExporter` turns
//! them into KMS framebuffers with PRIME and `ADDFB2`; or Mesa's GBM, or KMS
//! dumb buffers. One renderer per device draws into them
//! ([`DisplayRenderer`]): GLES over EGL on the device's GBM, the buffers
//! imported as EGL images, or pixman on the CPU. GBM allocates nothing
//! unless `--allocator gbm`; the `GbmDevice` type parameter below only fills
//! a slot Smithay reserves for cursor buffers, and is always `None`.
//!
//! An output draws when something on it changed and its previous frame is
//! on screen (`redraw`): no vblank event and no timer while nothing changes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use calloop::LoopHandle;
use heapland_allocator::{DeviceNumber, Discovery};
use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, gbm::GbmDevice, Format, Fourcc},
        drm::{
            compositor::{DrmCompositor, FrameFlags, PrimaryPlaneElement},
            DrmDevice, DrmDeviceFd, DrmDeviceNotifier, DrmEvent, DrmEventMetadata, DrmEventTime,
        },
        libinput::{LibinputInputBackend, LibinputSessionInterface},
        renderer::{Bind, ImportAll, ImportMem, Renderer, Texture},
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
        scanout::{OutputScanout, ScanoutAllocator, ScanoutExporter, ScanoutMemory},
        Backend, DrawError, DrawnFrame,
    },
    cli::{Cli, OutputMode as CliMode},
    cpu_upload::UploadingGles,
    dmabuf_params::ParamsValidator,
    feedback::cpu_formats,
    frame_stats::Shown,
    heaps::HeapDirectory,
    input::InputAction,
    renderer::DisplayRenderer,
    scene::{self, CursorMode, Scene},
    screenshot::{write_dmabuf_png, ScreenshotRequest},
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
    refresh: Duration,
    frames: u64,
    /// Formats of the primary plane that a client's buffer may be scanned
    /// out in (see `open_output`).
    scanout_formats: Vec<Format>,
    /// The connector it drives, to notice its unplugging.
    connector: connector::Handle,
    /// The modes the connector lists.
    modes: Vec<drm::control::Mode>,
    /// Its wl_output global, once published.
    global: Option<GlobalId>,
}

/// The session, the display device, its renderer and its outputs.
pub struct DrmBackend {
    /// Held so that the devices stay ours for as long as heapland runs.
    session: LibSeatSession,
    libinput: Libinput,
    drm: DrmDevice,
    /// Draws every output of the device, and checks client dma-bufs.
    pub renderer: DisplayRenderer,
    outputs: Vec<DrmOutput>,
    /// Where the scanout buffers of outputs plugged in later come from.
    memory: ScanoutMemory,
    device_name: String,
    dev: u64,
    /// `--output` modes, by output index, for outputs plugged in later.
    requested: Vec<CliMode>,
}

/// A display device opened with its connected outputs, before they are
/// published.
struct OpenedDisplay {
    drm: DrmDevice,
    outputs: Vec<DrmOutput>,
    notifier: DrmDeviceNotifier,
    memory: ScanoutMemory,
    renderer: DisplayRenderer,
    device_name: String,
    dev: u64,
}

/// The drm backend of the state, from an event source's callback.
fn backend_of(state: &mut Heapland) -> Option<&mut DrmBackend> {
    match &mut state.backend {
        Backend::Drm(b) => Some(b),
        _ => None,
    }
}

impl DrmBackend {
    /// Opens the session and the first display device with a connected
    /// connector, its renderer and outputs, and input. The outputs are
    /// published by [`start`].
    pub fn new(
        cli: &Cli,
        heaps: &HeapDirectory,
        handle: &LoopHandle<'static, Heapland>,
    ) -> Result<Self, DrmBackendError> {
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
            match open_display(&mut session, heaps.discovery(), cli, *dev, path, &shared) {
                Ok(found) => {
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
        let libinput = start_libinput(&session, &seat, handle)?;
        let loop_err = |e: calloop::InsertError<_>| DrmBackendError::Loop(e.to_string());
        handle
            .insert_source(session_notifier, |event, _, state| {
                on_session_event(state, event)
            })
            .map_err(|e| DrmBackendError::Loop(e.to_string()))?;
        handle
            .insert_source(opened.notifier, |event, metadata, state| match event {
                DrmEvent::VBlank(crtc) => on_vblank(state, crtc, metadata),
                DrmEvent::Error(err) => warn!("DRM device error: {err}"),
            })
            .map_err(loop_err)?;
        // Connector hot-plug: udev reports a change of the display device.
        let display_dev = opened.dev;
        handle
            .insert_source(udev, move |event, _, state| {
                if let UdevEvent::Changed { device_id } = event {
                    if device_id == display_dev {
                        rescan_connectors(state);
                    }
                }
            })
            .map_err(|e| DrmBackendError::Loop(e.to_string()))?;
        Ok(DrmBackend {
            session,
            libinput,
            drm: opened.drm,
            renderer: opened.renderer,
            outputs: opened.outputs,
            memory: opened.memory,
            device_name: opened.device_name,
            dev: opened.dev,
            requested: cli.outputs.clone(),
        })
    }

    /// Draws `output` into its next swapchain buffer and queues that to
    /// KMS if anything changed.
    pub fn draw(
        &mut self,
        output: &Output,
        scene: &Scene<'_>,
        screenshot: Option<&ScreenshotRequest<'_>>,
    ) -> Result<DrawnFrame, DrawError> {
        if !self.drm.is_active() {
            // Another VT has the display; activation redraws everything.
            return Err(DrawError::Inactive);
        }
        let Some(out) = self.outputs.iter_mut().find(|o| &o.output == output) else {
            return Err(DrawError::Failed {
                refresh: Duration::from_secs(1),
            });
        };
        match &mut self.renderer {
            DisplayRenderer::Gles { gl, uploads } => {
                draw_with(&mut UploadingGles::new(gl, uploads), out, scene, screenshot)
            }
            DisplayRenderer::Pixman(renderer) => draw_with(renderer, out, scene, screenshot),
        }
    }
}

impl DrmBackend {
    /// Whether `output`'s connector lists `mode`.
    pub fn has_mode(&self, output: &Output, mode: OutputMode) -> bool {
        self.outputs
            .iter()
            .find(|o| &o.output == output)
            .is_some_and(|o| o.modes.iter().any(|m| OutputMode::from(*m) == mode))
    }

    /// Sets one of the connector's modes on `output`'s CRTC: the next frame
    /// is drawn whole into buffers of the new size and committed with it.
    pub fn set_mode(&mut self, output: &Output, mode: OutputMode) -> Result<(), String> {
        let Some(out) = self.outputs.iter_mut().find(|o| &o.output == output) else {
            return Err("not an output of this device".into());
        };
        let Some(drm_mode) = out
            .modes
            .iter()
            .find(|m| OutputMode::from(**m) == mode)
            .copied()
        else {
            return Err(format!(
                "{}: the connector has no {}x{}@{} mHz mode",
                output.name(),
                mode.size.w,
                mode.size.h,
                mode.refresh
            ));
        };
        out.compositor
            .use_mode(drm_mode)
            .map_err(|e| format!("{}: {e}", output.name()))?;
        let refresh_mhz = mode.refresh.max(1000) as u64;
        out.refresh = Duration::from_nanos(1_000_000_000_000 / refresh_mhz);
        out.compositor.reset_buffers();
        Ok(())
    }

    /// Checks a client dma-buf with the renderer that will draw it.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        let node = smithay::utils::DevPath::dev_path(self.drm.device_fd());
        self.renderer.import_dmabuf(dmabuf, node.as_deref())
    }

    /// Turns `output`'s CRTC off (DPMS off: no plane, `active` 0) or lets
    /// its next frame turn it on again. The next frame after turning on is
    /// drawn whole: the buffers' contents are from before.
    pub fn set_power(&mut self, output: &Output, on: bool) -> Result<(), String> {
        let Some(out) = self.outputs.iter_mut().find(|o| &o.output == output) else {
            return Err("not an output of this device".into());
        };
        if on {
            out.compositor.reset_buffers();
            Ok(())
        } else {
            out.compositor.clear().map_err(|e| e.to_string())
        }
    }
}

/// Publishes the outputs the backend opened, and gives linux-dmabuf the
/// display's main device (where there is no render node) and its scanout
/// tranche.
pub fn start(state: &mut Heapland) {
    let Some(b) = backend_of(state) else {
        return;
    };
    let dev = b.dev;
    let first_scanout = b.outputs.first().map(|o| o.scanout_formats.clone());
    if !state.default_plan.has_feedback() {
        state.set_main_device(dev);
        info!(
            "no DRM render node: the display's primary node {}:{} is linux-dmabuf's main device",
            rustix_major(dev),
            rustix_minor(dev)
        );
    }
    if let Some(formats) = first_scanout {
        set_scanout_plan(state, dev, &formats);
    }
    publish_new_outputs(state);
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
    handle
        .insert_source(
            LibinputInputBackend::new(libinput.clone()),
            |event, _, state: &mut Heapland| match state.process_input_event(event) {
                InputAction::None => {}
                InputAction::Quit => {
                    info!("quit key: shutting down");
                    state.loop_signal.stop();
                }
                InputAction::SwitchVt(vt) => {
                    if let Some(b) = backend_of(state) {
                        if let Err(err) = b.session.change_vt(vt) {
                            warn!("cannot switch to VT {vt}: {err}");
                        }
                    }
                }
            },
        )
        .map_err(|e| DrmBackendError::Loop(e.to_string()))?;
    Ok(libinput)
}

/// The session was paused (another VT) or is ours again.
fn on_session_event(state: &mut Heapland, event: SessionEvent) {
    let Some(b) = backend_of(state) else {
        return;
    };
    match event {
        SessionEvent::PauseSession => {
            info!("session paused: releasing the display and input devices");
            b.libinput.suspend();
            b.drm.pause();
        }
        SessionEvent::ActivateSession => {
            info!("session active again: taking the display back");
            if b.libinput.resume().is_err() {
                warn!("cannot resume libinput");
            }
            if let Err(err) = b.drm.activate(false) {
                warn!("cannot reactivate the DRM device: {err}");
            }
            for out in &mut b.outputs {
                if let Err(err) = out.compositor.reset_state() {
                    warn!("cannot reset {}: {err}", out.output.name());
                }
            }
            let outputs: Vec<Output> = b.outputs.iter().map(|o| o.output.clone()).collect();
            // An output turned off stays dark, whatever the other session
            // left on it (the console, lit).
            for output in state.outputs_off() {
                if let Err(err) = state.backend.set_power(&output, false) {
                    warn!("cannot keep {} off: {err}", output.name());
                }
            }
            // Whatever was in flight was lost with the display.
            for output in &outputs {
                state.restart_frame_cycle(output);
            }
            // Connectors plugged or unplugged while away.
            rescan_connectors(state);
        }
    }
}

/// A page flip completed: the frame is on screen.
fn on_vblank(state: &mut Heapland, crtc: crtc::Handle, metadata: &mut Option<DrmEventMetadata>) {
    let Some(b) = backend_of(state) else {
        return;
    };
    let Some(out) = b.outputs.iter_mut().find(|o| o.compositor.crtc() == crtc) else {
        return;
    };
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
    let output = out.output.clone();
    state.vblank(&output);
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

/// Announces outputs not yet announced, each right of the others.
fn publish_new_outputs(state: &mut Heapland) {
    let Some(b) = backend_of(state) else {
        return;
    };
    let new: Vec<(usize, Output)> = b
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.global.is_none())
        .map(|(i, o)| (i, o.output.clone()))
        .collect();
    for (i, output) in new {
        let x: i32 = state
            .outputs
            .iter()
            .filter_map(|o| state.space.output_geometry(o))
            .map(|g| g.loc.x + g.size.w)
            .max()
            .unwrap_or(0);
        output.change_current_state(None, None, None, Some((x, 0).into()));
        let global = state.add_output(&output, (x, 0).into());
        if let Some(out) = backend_of(state).and_then(|b| b.outputs.get_mut(i)) {
            out.global = Some(global);
        }
    }
}

/// After a udev change event of the display device: withdraws the outputs
/// of unplugged connectors and sets up newly connected ones.
fn rescan_connectors(state: &mut Heapland) {
    let Some(b) = backend_of(state) else {
        return;
    };
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
    let mut withdrawn = Vec::new();
    for mut out in std::mem::take(&mut b.outputs) {
        if unreadable.contains(&out.connector)
            || connected.iter().any(|i| i.handle() == out.connector)
        {
            kept.push(out);
            continue;
        }
        info!("{}: disconnected, output withdrawn", out.output.name());
        if let Some(global) = out.global.take() {
            withdrawn.push((out.output.clone(), global));
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
        let requested = b.requested.get(b.outputs.len()).copied();
        match open_output(
            &mut b.drm,
            &b.memory,
            &b.renderer,
            &b.device_name,
            requested,
            &info,
            crtc,
        ) {
            Ok(out) => {
                info!("{}: connected, output added", out.output.name());
                b.outputs.push(out);
            }
            Err(err) => warn!("hot-plug: {err}"),
        }
    }
    for (output, global) in withdrawn {
        state.remove_output(&output, global);
    }
    publish_new_outputs(state);
}

/// Opens one DRM device and sets up every connected connector on it.
fn open_display(
    session: &mut LibSeatSession,
    discovery: &Discovery,
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
        discovery,
        devices,
    )
    .map_err(|e| e.to_string())?;
    let mut renderer = DisplayRenderer::new(cli.renderer, drm.device_fd(), &device_name)
        .map_err(|e| e.to_string())?;
    info!("{device_name}: composing with {}", renderer.describe());

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
            &renderer,
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
        renderer,
        device_name,
        dev,
    })
}

fn open_output(
    drm: &mut DrmDevice,
    memory: &ScanoutMemory,
    renderer: &DisplayRenderer,
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
    for m in info.modes() {
        output.add_mode(OutputMode::from(*m));
    }
    output.add_mode(wl_mode);
    output.set_preferred(wl_mode);
    output.change_current_state(Some(wl_mode), Some(Transform::Normal), None, None);

    let texture_formats = renderer.texture_formats();
    let render_formats = renderer.render_formats();
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
            .filter(|f| texture_formats.contains(f) && packed.contains(f))
            .copied()
            .collect();
        Ok(DrmCompositor::new(
            &output,
            surface,
            None,
            scanout.allocator,
            scanout.exporter,
            [Fourcc::Xrgb8888, Fourcc::Argb8888],
            render_formats.iter().copied(),
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
            let dumb = memory.dumb(&drm_fd);
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
        refresh: Duration::from_nanos(1_000_000_000_000 / refresh_mhz),
        frames: 0,
        scanout_formats,
        connector: info.handle(),
        modes: info.modes().to_vec(),
        global: None,
    })
}

/// Gives the state the scanout plan of the display device `dev`: the
/// default plan with a scanout tranche of the first output's primary plane
/// formats (see `feedback`), and lets linux-dmabuf params use them.
fn set_scanout_plan(state: &mut Heapland, dev: u64, scanout_formats: &[Format]) {
    if !state.default_plan.has_feedback() || scanout_formats.is_empty() {
        info!(
            "no scanout tranche: no linux-dmabuf feedback, or no plane format the renderer imports"
        );
        return;
    }
    let plan = state.default_plan.with_scanout(dev, scanout_formats);
    let names: Vec<String> = scanout_formats
        .iter()
        .map(|f| format!("{:?}", f.code))
        .collect();
    info!(
        "scanout tranche on {}:{} for surfaces the display can show directly: {}",
        rustix_major(dev),
        rustix_minor(dev),
        names.join(" ")
    );
    let mut formats = state.backend.dmabuf_formats();
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

/// Draws one output with `renderer` (see [`DrmBackend::draw`]).
fn draw_with<R>(
    renderer: &mut R,
    out: &mut DrmOutput,
    scene: &Scene<'_>,
    screenshot: Option<&ScreenshotRequest<'_>>,
) -> Result<DrawnFrame, DrawError>
where
    R: Renderer + ImportAll + ImportMem + Bind<Dmabuf>,
    R::TextureId: Texture + Send + Clone + 'static,
{
    let elements = scene::output_elements(scene, renderer, &out.output, CursorMode::Draw);
    let result =
        match out
            .compositor
            .render_frame(renderer, &elements, CLEAR_COLOR, FrameFlags::DEFAULT)
        {
            Ok(result) => result,
            Err(err) => {
                warn!("{}: rendering failed: {err}", out.output.name());
                return Err(DrawError::Failed {
                    refresh: out.refresh,
                });
            }
        };
    let damaged = !result.is_empty;
    // A renderer whose fence KMS cannot wait for (software GL, pixman):
    // the frame must be complete before it is queued.
    if damaged && result.needs_sync() {
        if let PrimaryPlaneElement::Swapchain(element) = &result.primary_element {
            if element.sync.wait().is_err() {
                warn!("{}: interrupted waiting for the frame", out.output.name());
            }
        }
    }
    let mut screenshot_written = false;
    if let Some(request) = screenshot.filter(|r| r.wanted(damaged, out.frames == 0)) {
        match &result.primary_element {
            PrimaryPlaneElement::Swapchain(element) => {
                // The GPU may still be drawing into it.
                if element.sync.wait().is_err() {
                    warn!("screenshot: interrupted while waiting for the frame");
                }
                match write_dmabuf_png(request.path, element.buffer().dmabuf()) {
                    Ok(()) => debug!(
                        "screenshot of the scanout buffer in {}",
                        request.path.display()
                    ),
                    Err(err) => warn!("screenshot: {err}"),
                }
            }
            PrimaryPlaneElement::Element(_) => {
                info!("screenshot skipped: a client buffer is scanned out directly")
            }
        }
        screenshot_written = true;
    }
    let shown = match &result.primary_element {
        PrimaryPlaneElement::Swapchain(_) => Shown::Composited,
        PrimaryPlaneElement::Element(_) => Shown::Direct,
    };
    let states = result.states.clone();
    drop(result);

    scene.update_primary_scanout_output(&out.output, &states);
    let feedback = scene.frame_done(&out.output, Some(&states));
    let mut awaits_vblank = false;
    let mut retry = false;
    if damaged {
        match out.compositor.queue_frame(Some(feedback)) {
            Ok(()) => {
                awaits_vblank = true;
                out.frames += 1;
                debug!(output = %out.output.name(), frame = out.frames, "queued");
            }
            Err(err) => {
                // Its damage is spent: draw everything again next cycle.
                warn!("{}: cannot queue the frame: {err}", out.output.name());
                out.compositor.reset_buffers();
                retry = true;
            }
        }
    }
    Ok(DrawnFrame {
        damaged: awaits_vblank,
        shown,
        awaits_vblank,
        refresh: out.refresh,
        states,
        screenshot_written,
        retry,
    })
}
