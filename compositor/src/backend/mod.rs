//! Start-up shared by every backend (the Wayland display and socket, signal
//! handling, the event loop) and [`Backend`], the part of the state that
//! owns the renderer and the outputs' buffers.
//!
//! The backend lives inside the state, so that any handler can reach it:
//! a commit queues a redraw of the outputs it touches (see `redraw`), the
//! linux-dmabuf handler has a client buffer checked by the renderer that
//! will draw it. Every backend draws an output the same way ([`Backend::draw`]):
//! the scene's elements, damage-tracked rendering into a buffer of the
//! output, the screenshot, frame callbacks and presentation feedback.

pub mod drm;
pub mod headless;
pub mod scanout;
#[cfg(feature = "winit")]
pub mod winit;

use std::{path::PathBuf, sync::Arc, time::Duration};

use calloop::{
    generic::Generic,
    signals::{Signal, Signals},
    EventLoop, Interest, Mode, PostAction,
};
use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, Format, Fourcc},
        renderer::element::RenderElementStates,
    },
    output::Output,
    reexports::wayland_server::Display,
    utils::{Physical, Rectangle},
    wayland::socket::ListeningSocketSource,
};
use tracing::{debug, info, warn};

use crate::{
    capture::{render_to_memory, CaptureError, Pixels},
    cli::{BackendKind, Cli},
    cpu_upload::UploadingGles,
    feedback::{find_render_node, FeedbackPlan},
    frame_stats::Shown,
    heaps::HeapDirectory,
    peer::Peer,
    scene::{CursorMode, Scene},
    screenshot::ScreenshotRequest,
    state::{ClientState, Heapland},
};

/// Why the compositor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("XDG_RUNTIME_DIR is not set or is not a directory; set it to a private directory (mode 0700), e.g. /run/user/$(id -u)")]
    NoRuntimeDir,
    #[error("cannot create the event loop: {0}")]
    EventLoop(#[source] calloop::Error),
    #[error("cannot create the Wayland display: {0}")]
    Display(String),
    #[error("cannot create the Wayland socket {name:?} in XDG_RUNTIME_DIR: {reason} (is another compositor using it? choose another with --socket)")]
    Socket { name: String, reason: String },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] calloop::Error),
    #[error(transparent)]
    Headless(#[from] headless::HeadlessError),
    #[cfg(feature = "winit")]
    #[error(transparent)]
    Winit(#[from] winit::WinitError),
    #[error(transparent)]
    Drm(#[from] drm::DrmBackendError),
    #[error(transparent)]
    Stats(#[from] crate::frame_stats::StatsError),
    #[error("event loop failed: {0}")]
    Loop(String),
}

/// The renderer and the outputs' buffers of the backend heapland runs on.
pub enum Backend {
    Headless(Box<headless::HeadlessBackend>),
    Drm(Box<drm::DrmBackend>),
    #[cfg(feature = "winit")]
    Winit(Box<winit::WinitBackend>),
}

/// What drawing one output did.
pub struct DrawnFrame {
    /// The output's picture changed (and, on drm, went to the display).
    pub damaged: bool,
    /// How the picture reached the output.
    pub shown: Shown,
    /// The frame was queued to the display: its page flip ends the frame
    /// cycle. Otherwise a timer of one `refresh` does.
    pub awaits_vblank: bool,
    pub refresh: Duration,
    /// Where each element went (a plane, the composition, nowhere).
    pub states: RenderElementStates,
    /// The screenshot was written.
    pub screenshot_written: bool,
    /// The frame could not reach the display: draw again at the end of the
    /// cycle.
    pub retry: bool,
}

/// Why an output was not drawn.
#[derive(Debug)]
pub enum DrawError {
    /// Another session has the display (drm).
    Inactive,
    /// Rendering failed (logged); `refresh` paces what comes next.
    Failed { refresh: Duration },
}

impl Backend {
    /// Draws `output`, one of this backend's outputs.
    pub fn draw(
        &mut self,
        output: &Output,
        scene: &Scene<'_>,
        screenshot: Option<&ScreenshotRequest<'_>>,
    ) -> Result<DrawnFrame, DrawError> {
        match self {
            Backend::Headless(b) => b.draw(output, scene, screenshot),
            Backend::Drm(b) => b.draw(output, scene, screenshot),
            #[cfg(feature = "winit")]
            Backend::Winit(b) => b.draw(output, scene),
        }
    }

    /// Checks a client dma-buf with the renderer that will draw it.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        match self {
            Backend::Headless(b) => b.import_dmabuf(dmabuf),
            Backend::Drm(b) => b.import_dmabuf(dmabuf),
            #[cfg(feature = "winit")]
            Backend::Winit(b) => b.import_dmabuf(dmabuf),
        }
    }

    /// Renders `region` of `output`'s picture into memory (see
    /// [`crate::capture`]).
    pub fn capture(
        &mut self,
        output: &Output,
        scene: &Scene<'_>,
        cursor: bool,
        region: Rectangle<i32, Physical>,
    ) -> Result<Pixels, CaptureError> {
        use crate::renderer::DisplayRenderer;
        use smithay::{backend::renderer::gles::GlesRenderbuffer, reexports::pixman::Image};
        let cursor = if cursor && self.draws_cursor() {
            CursorMode::Draw
        } else {
            CursorMode::Hidden
        };
        // GL renders into RGBA8 renderbuffers everywhere (GLES 2 has no
        // BGRA or RGBX renderbuffer); pixman into the format it reads.
        let (gl, cpu) = (Fourcc::Abgr8888, Fourcc::Xrgb8888);
        match self {
            Backend::Headless(b) => {
                render_to_memory::<_, Image>(b.renderer(), cpu, scene, output, cursor, region)
            }
            Backend::Drm(b) => match &mut b.renderer {
                DisplayRenderer::Gles {
                    gl: renderer,
                    uploads,
                } => render_to_memory::<_, GlesRenderbuffer>(
                    &mut UploadingGles::new(renderer, uploads),
                    gl,
                    scene,
                    output,
                    cursor,
                    region,
                ),
                DisplayRenderer::Pixman(r) => {
                    render_to_memory::<_, Image>(r, cpu, scene, output, cursor, region)
                }
            },
            #[cfg(feature = "winit")]
            Backend::Winit(b) => render_to_memory::<_, GlesRenderbuffer>(
                &mut b.renderer(),
                gl,
                scene,
                output,
                cursor,
                region,
            ),
        }
    }

    /// Blanks `output` (`on` false) or lights it again. Only the drm
    /// backend has a display to blank; the others just stop drawing it.
    pub fn set_power(&mut self, output: &Output, on: bool) -> Result<(), String> {
        match self {
            Backend::Drm(b) => b.set_power(output, on),
            _ => Ok(()),
        }
    }

    /// Whether outputs can be rotated and flipped: drawn for a display
    /// (drm, headless), not into a host window (winit), whose own
    /// orientation heapland does not choose.
    pub fn takes_transforms(&self) -> bool {
        matches!(self, Backend::Headless(_) | Backend::Drm(_))
    }

    /// Whether outputs take modes of any size (headless), rather than the
    /// ones their connector lists.
    pub fn takes_custom_modes(&self) -> bool {
        matches!(self, Backend::Headless(_))
    }

    /// Whether `output` can be set to `mode` (`custom`: not one of the
    /// modes it listed), and if not, why.
    pub fn can_take_mode(
        &self,
        output: &Output,
        mode: smithay::output::Mode,
        custom: bool,
    ) -> Result<(), String> {
        /// Larger virtual outputs would be a client's way to make heapland
        /// allocate gigabytes.
        const MAX_SIDE: i32 = 8192;
        let name = output.name();
        let (w, h) = (mode.size.w, mode.size.h);
        match self {
            Backend::Headless(_) if w > MAX_SIDE || h > MAX_SIDE => Err(format!(
                "{name}: {w}x{h} is larger than {MAX_SIDE}x{MAX_SIDE}"
            )),
            Backend::Headless(_) => Ok(()),
            Backend::Drm(b) if custom || !b.has_mode(output, mode) => Err(format!(
                "{name}: the display takes the modes its connector lists, not {w}x{h}@{} mHz",
                mode.refresh
            )),
            Backend::Drm(_) => Ok(()),
            #[cfg(feature = "winit")]
            Backend::Winit(_) if Some(mode) != output.current_mode() => Err(format!(
                "{name}: the nested output takes the size of its window"
            )),
            #[cfg(feature = "winit")]
            Backend::Winit(_) => Ok(()),
        }
    }

    /// Sets `output`'s mode (one of its modes, or any on headless); the
    /// caller then changes the output's state.
    pub fn set_mode(&mut self, output: &Output, mode: smithay::output::Mode) -> Result<(), String> {
        match self {
            Backend::Headless(b) => b.set_mode(output, mode),
            Backend::Drm(b) => b.set_mode(output, mode),
            #[cfg(feature = "winit")]
            Backend::Winit(_) => Err("the nested output takes the size of its window".into()),
        }
    }

    /// Lets the renderer drop what it holds of client buffers that are
    /// gone.
    pub fn cleanup_texture_cache(&mut self) {
        match self {
            Backend::Headless(b) => b.cleanup_texture_cache(),
            Backend::Drm(b) => b.renderer.cleanup(),
            #[cfg(feature = "winit")]
            Backend::Winit(b) => b.cleanup_texture_cache(),
        }
    }

    /// The formats and modifiers client dma-bufs may have: what the
    /// renderer imports, among the layouts linux-dmabuf params are checked
    /// against (`dmabuf_params`: one linear plane of a packed format).
    pub fn dmabuf_formats(&self) -> Vec<Format> {
        let imported = match self {
            Backend::Headless(b) => b.dmabuf_formats(),
            Backend::Drm(b) => b.renderer.texture_formats(),
            #[cfg(feature = "winit")]
            Backend::Winit(b) => b.dmabuf_formats(),
        };
        imported
            .into_iter()
            .filter(crate::dmabuf_params::is_checked_layout)
            .collect()
    }

    /// Whether the backend draws the pointer's cursor itself, so that a
    /// pointer motion changes the picture.
    pub fn draws_cursor(&self) -> bool {
        matches!(self, Backend::Drm(_))
    }

    fn start(state: &mut Heapland) {
        match &state.backend {
            Backend::Headless(_) => headless::start(state),
            Backend::Drm(_) => drm::start(state),
            #[cfg(feature = "winit")]
            Backend::Winit(_) => winit::start(state),
        }
    }
}

/// Runs the compositor until SIGINT or SIGTERM.
pub fn run(cli: Cli) -> Result<(), RunError> {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .ok_or(RunError::NoRuntimeDir)?;

    let backend = cli.resolved_backend();
    if cli.backend == BackendKind::Auto {
        if !crate::cli::display_present() {
            info!("no WAYLAND_DISPLAY or DISPLAY: using the headless backend");
        } else if backend == BackendKind::Headless {
            info!("a display is present but heapland was built without the `winit` feature: using the headless backend");
        } else {
            info!("a display is present: using the nested (winit) backend");
        }
    }

    // Signals first: calloop blocks them for this thread, before any other
    // thread exists.
    let signals = Signals::new(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR1])
        .map_err(RunError::Signals)?;

    let mut event_loop: EventLoop<'static, Heapland> =
        EventLoop::try_new().map_err(RunError::EventLoop)?;
    let display: Display<Heapland> =
        Display::new().map_err(|e| RunError::Display(e.to_string()))?;
    let dh = display.handle();

    let socket = match &cli.socket {
        Some(name) => ListeningSocketSource::with_name(name),
        None => ListeningSocketSource::new_auto(),
    }
    .map_err(|e| RunError::Socket {
        name: cli.socket.clone().unwrap_or_else(|| "wayland-N".into()),
        reason: e.to_string(),
    })?;
    let socket_name = socket.socket_name().to_string_lossy().into_owned();

    let handle = event_loop.handle();
    handle
        .insert_source(socket, |stream, _, state: &mut Heapland| {
            let client_state = ClientState {
                peer: Peer::accepted(&stream),
                ..ClientState::default()
            };
            let peer = client_state.peer.clone();
            match state
                .display_handle
                .insert_client(stream, Arc::new(client_state))
            {
                Ok(client) => debug!(
                    client = ?client.id(),
                    pid = ?peer.as_ref().and_then(|p| p.pid),
                    uid = ?peer.as_ref().map(|p| p.uid),
                    groups = ?peer.as_ref().map(|p| &p.groups),
                    "client connected"
                ),
                Err(err) => warn!("cannot add client: {err}"),
            }
        })
        .map_err(|e| RunError::Loop(e.to_string()))?;
    handle
        .insert_source(
            Generic::new(display, Interest::READ, Mode::Level),
            |_, display, state: &mut Heapland| {
                // SAFETY: the display is not dropped while the source lives.
                unsafe {
                    display.get_mut().dispatch_clients(state)?;
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| RunError::Loop(e.to_string()))?;
    handle
        .insert_source(signals, |event, _, state: &mut Heapland| {
            match event.signal() {
                Signal::SIGUSR1 => {
                    info!("SIGUSR1: screenshot requested");
                    state.screenshot_requested = true;
                    if let Some(first) = state.outputs.first().cloned() {
                        state.queue_redraw(&first);
                    }
                }
                sig => {
                    info!("{sig:?}: shutting down");
                    state.loop_signal.stop();
                }
            }
        })
        .map_err(|e| RunError::Loop(e.to_string()))?;

    let render_node = find_render_node();
    match render_node {
        Some(dev) => info!(
            "main device: DRM render node {}:{}",
            rustix::fs::major(dev),
            rustix::fs::minor(dev)
        ),
        None => info!(
            "no DRM render node: linux-dmabuf without feedback (version 3) unless the \
             display's primary node becomes the main device (drm backend)"
        ),
    }
    let heaps = HeapDirectory::scan();
    let list = |names: Vec<&str>| match names {
        names if names.is_empty() => "none".to_owned(),
        names => names.join(", "),
    };
    match heaps.discovery().empty_reason() {
        Some(reason) => info!("DMA-BUF heaps: none ({reason})"),
        None => info!(
            "DMA-BUF heaps: {}; bounded per user, for any client: {}; the others only for \
             clients that may open the node themselves; for sandboxed clients, only those \
             charged to their memory cgroup: {}",
            heaps.names().join(", "),
            list(heaps.bounded_names()),
            list(heaps.accounted_names())
        ),
    }
    let backend = match backend {
        BackendKind::Headless | BackendKind::Auto => {
            Backend::Headless(Box::new(headless::HeadlessBackend::new(&cli, &heaps)?))
        }
        BackendKind::Drm => Backend::Drm(Box::new(drm::DrmBackend::new(&cli, &heaps, &handle)?)),
        #[cfg(feature = "winit")]
        BackendKind::Winit => Backend::Winit(Box::new(winit::WinitBackend::new(&handle)?)),
    };
    let formats = backend.dmabuf_formats();
    let plan = render_node.map_or_else(FeedbackPlan::none, |node| {
        FeedbackPlan::composited(node, formats.clone())
    });
    let mut state = Heapland::new(
        dh,
        handle.clone(),
        event_loop.get_signal(),
        socket_name,
        formats,
        plan,
        heaps,
        backend,
    );
    state.screenshot = cli
        .screenshot
        .clone()
        .map(|path| crate::screenshot::ScreenshotTarget {
            path,
            every_frame: cli.screenshot_every_frame,
        });
    Backend::start(&mut state);
    if let Err(err) = crate::heap_watch::watch(&handle) {
        warn!("heaps and devices coming and going are not noticed: {err}");
    }
    state.config_path = cli.config.clone().or_else(crate::config::default_path);
    if let Some(path) = state.config_path.clone() {
        match crate::config::Config::load(&path) {
            Ok(config) => state.apply_config(config),
            Err(err) => warn!("{err}; running with the default configuration"),
        }
        if let Err(err) = crate::config_watch::watch(&path, &handle) {
            warn!("the configuration is not reloaded when it changes: {err}");
        }
    }

    if state.config.xwayland {
        state.start_xwayland();
    } else {
        info!("Xwayland is off in the configuration: X11 apps cannot run");
    }

    if let Some(path) = &cli.stats {
        crate::frame_stats::start(path, &handle)?;
    }

    println!(
        "heapland: listening on WAYLAND_DISPLAY={} in {}",
        state.socket_name,
        runtime_dir.display()
    );
    println!(
        "heapland: connect a client with: WAYLAND_DISPLAY={} weston-simple-shm",
        state.socket_name
    );

    // With Xwayland starting, programs wait until it is ready: an X11
    // program's first window then meets its window manager.
    let startup: Vec<String> = state
        .config
        .autostart
        .iter()
        .chain(&cli.exec)
        .cloned()
        .collect();
    state.spawn_at_start(startup);

    // The first frame of every output (a modeset on drm), before anything
    // wakes the loop.
    state.redraw_queued_outputs();
    // No timeout: the loop wakes for clients, input, vblanks and timers of
    // outputs with something to draw, and for nothing else.
    event_loop
        .run(None, &mut state, |state| {
            let windows = state.space.elements().count();
            state.space.refresh();
            if state.space.elements().count() != windows {
                // A window whose surface died without its role: gone from
                // the screen too.
                state.queue_redraw_all();
            }
            state.update_idle_inhibit();
            state.pair_x11_surfaces();
            state.update_foreign_toplevels();
            state.popups.cleanup();
            state.redraw_queued_outputs();
            if let Err(err) = state.display_handle.flush_clients() {
                warn!("flushing clients: {err}");
            }
        })
        .map_err(|e| RunError::Loop(e.to_string()))?;
    info!("stopped");
    Ok(())
}
