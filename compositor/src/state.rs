//! The compositor's state: every protocol's Smithay state, the stacking
//! layout, and the handlers that tie them together.
//!
//! Backends own the renderer and the outputs' buffers; this module knows
//! nothing about how pixels are produced.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use smithay::{
    backend::{allocator::dmabuf::Dmabuf, renderer::utils::on_commit_buffer_handler},
    delegate_compositor, delegate_fractional_scale, delegate_output, delegate_presentation,
    delegate_seat, delegate_shm, delegate_viewporter, delegate_xdg_shell,
    desktop::{utils::OutputPresentationFeedback, Space, Window},
    input::{keyboard::XkbConfig, Seat, SeatHandler, SeatState},
    output::Output,
    reexports::{
        calloop::{LoopHandle, LoopSignal},
        wayland_protocols::{
            wp::presentation_time::server::wp_presentation_feedback::Kind,
            xdg::shell::server::xdg_toplevel,
        },
        wayland_server::{
            backend::{ClientData, ClientId, DisconnectReason},
            protocol::{
                wl_buffer::WlBuffer, wl_output::WlOutput, wl_seat::WlSeat, wl_surface::WlSurface,
            },
            Client, DisplayHandle,
        },
    },
    utils::{Logical, Point, Serial},
    wayland::{
        buffer::BufferHandler,
        compositor::{
            get_parent, is_sync_subsurface, CompositorClientState, CompositorHandler,
            CompositorState,
        },
        dmabuf::{DmabufFeedback, DmabufGlobal, DmabufHandler, DmabufState, ImportNotifier},
        fractional_scale::{
            with_fractional_scale, FractionalScaleHandler, FractionalScaleManagerState,
        },
        output::{OutputHandler, OutputManagerState},
        presentation::PresentationState,
        security_context::{SecurityContext, SecurityContextState},
        shell::xdg::{
            PopupSurface, PositionerState, ToplevelSurface, XdgShellHandler, XdgShellState,
        },
        shm::{ShmHandler, ShmState},
        viewporter::ViewporterState,
    },
};
use tracing::{debug, info, warn};

use crate::{
    dmabuf_params::ParamsValidator,
    feedback::{self, FeedbackPlan},
    heap_protocol::HeapProtocolState,
    heaps::HeapDirectory,
};

/// Per-client data Smithay needs, and what heapland knows of the client.
#[derive(Default)]
pub struct ClientState {
    pub compositor_state: CompositorClientState,
    /// The `wp_security_context_v1` context the client connected through;
    /// `None` for clients of the main socket (see `security_context`).
    pub security_context: Option<SecurityContext>,
}

impl ClientData for ClientState {
    fn initialized(&self, _client_id: ClientId) {}
    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        debug!(?client_id, ?reason, "client disconnected");
    }
}

/// Everything the event loop callbacks mutate.
pub struct Heapland {
    pub display_handle: DisplayHandle,
    pub loop_handle: LoopHandle<'static, Heapland>,
    pub loop_signal: LoopSignal,
    pub start_time: Instant,
    /// The socket clients connect to (WAYLAND_DISPLAY).
    pub socket_name: String,

    pub space: Space<Window>,
    pub outputs: Vec<Output>,

    pub compositor_state: CompositorState,
    pub xdg_shell_state: XdgShellState,
    pub shm_state: ShmState,
    pub seat_state: SeatState<Self>,
    /// seat0: the keyboard and pointer input backends feed.
    pub seat: Seat<Self>,
    pub dmabuf_state: DmabufState,
    /// Protocol states that own globals and are never read again: holding
    /// them keeps their globals and per-client bookkeeping alive.
    pub _globals: PassiveGlobals,
    pub params: ParamsValidator,
    /// The default feedback plan; surfaces start with it.
    pub default_plan: Arc<FeedbackPlan>,
    pub heaps: HeapDirectory,
    pub heap_protocol: HeapProtocolState,

    /// Number of toplevels mapped so far, for the cascade of the stacking layout.
    pub mapped_count: u32,
    /// Set by SIGUSR1; the backend writes the screenshot after its next frame.
    pub screenshot_requested: bool,
    /// The display device, when the backend can put a client's buffer on a
    /// KMS plane: surfaces covering an output then get a scanout tranche.
    pub scanout_device: Option<u64>,
    /// The feedback Smithay is to give the linux-dmabuf surface feedback
    /// object being created, when the surface's plan is not the default one
    /// (see [`feedback::next_surface_feedback`]).
    pub next_surface_feedback: Option<DmabufFeedback>,
}

/// See [`Heapland::_globals`]: owned, never read, hence the allow.
#[allow(dead_code)]
pub struct PassiveGlobals {
    pub output_manager_state: OutputManagerState,
    pub presentation_state: PresentationState,
    pub viewporter_state: ViewporterState,
    pub fractional_scale_state: FractionalScaleManagerState,
    pub dmabuf_global: DmabufGlobal,
    pub security_context_state: SecurityContextState,
}

/// Why the compositor could not set up its globals.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot build the linux-dmabuf feedback (format table memfd): {0}")]
    Feedback(#[source] std::io::Error),
}

impl Heapland {
    /// Creates every global. `plan` is the default dmabuf feedback, built by
    /// the backend from the devices it really has.
    pub fn new(
        display_handle: DisplayHandle,
        loop_handle: LoopHandle<'static, Heapland>,
        loop_signal: LoopSignal,
        socket_name: String,
        plan: FeedbackPlan,
        heaps: HeapDirectory,
    ) -> Result<Self, StateError> {
        let dh = &display_handle;
        let compositor_state = CompositorState::new::<Self>(dh);
        let xdg_shell_state = XdgShellState::new::<Self>(dh);
        let shm_state = ShmState::new::<Self>(dh, vec![]);
        let output_manager_state = OutputManagerState::new_with_xdg_output::<Self>(dh);
        // CLOCK_MONOTONIC: the clock the frame timer and presentation times use.
        let presentation_state = PresentationState::new::<Self>(dh, 1);
        let viewporter_state = ViewporterState::new::<Self>(dh);
        let fractional_scale_state = FractionalScaleManagerState::new::<Self>(dh);

        let mut seat_state = SeatState::new();
        let mut seat = seat_state.new_wl_seat(dh, "seat0");
        // A keyboard needs xkb data; without it the seat still works for
        // everything else, so a missing keymap is not fatal.
        if let Err(err) = seat.add_keyboard(XkbConfig::default(), 200, 25) {
            warn!("no keyboard on seat0: cannot build an xkb keymap ({err:?}); is /usr/share/X11/xkb present?");
        }
        seat.add_pointer();

        let dmabuf_feedback = plan.to_dmabuf_feedback().map_err(StateError::Feedback)?;
        let mut dmabuf_state = DmabufState::new();
        let dmabuf_global =
            dmabuf_state.create_global_with_default_feedback::<Self>(dh, &dmabuf_feedback);
        let heap_protocol = HeapProtocolState::new(dh);
        let security_context_state = crate::security_context::create_global(dh);

        Ok(Heapland {
            display_handle,
            loop_handle,
            loop_signal,
            start_time: Instant::now(),
            socket_name,
            space: Space::default(),
            outputs: Vec::new(),
            compositor_state,
            xdg_shell_state,
            shm_state,
            seat_state,
            seat,
            _globals: PassiveGlobals {
                output_manager_state,
                presentation_state,
                viewporter_state,
                fractional_scale_state,
                dmabuf_global,
                security_context_state,
            },
            params: ParamsValidator::new(plan.all_formats()),
            default_plan: Arc::new(plan),
            dmabuf_state,
            heaps,
            heap_protocol,
            mapped_count: 0,
            screenshot_requested: false,
            scanout_device: None,
            next_surface_feedback: None,
        })
    }

    /// After a repaint of `output`: sends its windows their frame callbacks
    /// and collects their presentation feedback, which the backend marks
    /// presented once the frame is complete (headless, winit) or on screen
    /// (drm).
    pub fn frame_done(&self, output: &Output) -> OutputPresentationFeedback {
        let elapsed = self.start_time.elapsed();
        let mut presentation = OutputPresentationFeedback::new(output);
        for window in self.space.elements_for_output(output) {
            window.send_frame(output, elapsed, Some(Duration::ZERO), |_, _| {
                Some(output.clone())
            });
            window.take_presentation_feedback(
                &mut presentation,
                |_, _| Some(output.clone()),
                |_, _| Kind::empty(),
            );
        }
        presentation
    }

    /// The mapped window of a toplevel.
    fn window_of(&self, surface: &ToplevelSurface) -> Option<Window> {
        self.space
            .elements()
            .find(|w| w.toplevel().is_some_and(|t| t == surface))
            .cloned()
    }

    /// Maps a new toplevel in the simple stacking layout: each window
    /// cascades 48 px right and down from the previous one, on top.
    fn map_toplevel(&mut self, window: Window) {
        let origin = self
            .outputs
            .first()
            .and_then(|o| self.space.output_geometry(o))
            .map(|g| g.loc)
            .unwrap_or_default();
        let step = 48 * (self.mapped_count % 8) as i32;
        let loc: Point<i32, Logical> = origin + Point::from((step, step));
        self.mapped_count += 1;
        self.space.map_element(window, loc, true);
    }
}

impl BufferHandler for Heapland {
    fn buffer_destroyed(&mut self, _buffer: &WlBuffer) {}
}

impl CompositorHandler for Heapland {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        // Every client is inserted with ClientState by the listening socket.
        &client
            .get_data::<ClientState>()
            .expect("clients are always created with ClientState")
            .compositor_state
    }

    fn commit(&mut self, surface: &WlSurface) {
        on_commit_buffer_handler::<Self>(surface);
        if is_sync_subsurface(surface) {
            return;
        }
        let mut root = surface.clone();
        while let Some(parent) = get_parent(&root) {
            root = parent;
        }
        if let Some(window) = self
            .space
            .elements()
            .find(|w| w.toplevel().is_some_and(|t| t.wl_surface() == &root))
            .cloned()
        {
            window.on_commit();
            if let Some(toplevel) = window.toplevel() {
                if !toplevel.is_initial_configure_sent() {
                    toplevel.send_configure();
                }
            }
        }
        feedback::surface_committed(self, surface);
    }
}

impl XdgShellHandler for Heapland {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        // Clients pick their own size (no tiling); the initial configure goes
        // out on the first commit.
        let window = Window::new_wayland_window(surface);
        self.map_toplevel(window);
    }

    fn fullscreen_request(&mut self, surface: ToplevelSurface, wl_output: Option<WlOutput>) {
        let output = wl_output
            .as_ref()
            .and_then(Output::from_resource)
            .or_else(|| self.outputs.first().cloned());
        let Some(geometry) = output.as_ref().and_then(|o| self.space.output_geometry(o)) else {
            // No output to fill: answer with an unchanged configure.
            surface.send_configure();
            return;
        };
        surface.with_pending_state(|state| {
            state.states.set(xdg_toplevel::State::Fullscreen);
            state.size = Some(geometry.size);
            state.fullscreen_output = wl_output;
        });
        if let Some(window) = self.window_of(&surface) {
            self.space.map_element(window, geometry.loc, true);
        }
        surface.send_configure();
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        surface.with_pending_state(|state| {
            state.states.unset(xdg_toplevel::State::Fullscreen);
            state.size = None;
            state.fullscreen_output = None;
        });
        surface.send_pending_configure();
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        let window = self
            .space
            .elements()
            .find(|w| w.toplevel().is_some_and(|t| t == &surface))
            .cloned();
        if let Some(window) = window {
            self.space.unmap_elem(&window);
        }
    }

    fn new_popup(&mut self, surface: PopupSurface, _positioner: PositionerState) {
        // Popups are not placed by this simple layout; configure them so
        // clients do not wait forever.
        let _ = surface.send_configure();
    }

    fn grab(&mut self, _surface: PopupSurface, _seat: WlSeat, _serial: Serial) {}

    fn reposition_request(
        &mut self,
        surface: PopupSurface,
        positioner: PositionerState,
        token: u32,
    ) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        surface.send_repositioned(token);
    }
}

impl ShmHandler for Heapland {
    fn shm_state(&self) -> &ShmState {
        &self.shm_state
    }
}

impl SeatHandler for Heapland {
    type KeyboardFocus = WlSurface;
    type PointerFocus = WlSurface;
    type TouchFocus = WlSurface;

    fn seat_state(&mut self) -> &mut SeatState<Self> {
        &mut self.seat_state
    }
}

impl OutputHandler for Heapland {}

impl FractionalScaleHandler for Heapland {
    fn new_fractional_scale(&mut self, surface: WlSurface) {
        // Outputs are all scale 1: tell the client so at once.
        smithay::wayland::compositor::with_states(&surface, |states| {
            with_fractional_scale(states, |fs| fs.set_preferred_scale(1.0));
        });
    }
}

impl DmabufHandler for Heapland {
    fn dmabuf_state(&mut self) -> &mut DmabufState {
        &mut self.dmabuf_state
    }

    /// A surface's first linux-dmabuf feedback object starts from the plan
    /// the surface already has (e.g. with a scanout tranche), as its heap
    /// feedback objects do.
    fn new_surface_feedback(
        &mut self,
        _surface: &WlSurface,
        _global: &DmabufGlobal,
    ) -> Option<DmabufFeedback> {
        self.next_surface_feedback.take()
    }

    fn dmabuf_imported(
        &mut self,
        _global: &DmabufGlobal,
        dmabuf: Dmabuf,
        notifier: ImportNotifier,
    ) {
        // Smithay imports into the renderer at render time; here we only
        // refuse what can never be imported: fds that are not dma-bufs.
        match crate::dmabuf_params::check_is_dmabuf(&dmabuf) {
            Ok(()) => {
                if notifier.successful::<Self>().is_err() {
                    debug!("client went away before its dmabuf was created");
                }
            }
            Err(reason) => {
                info!("refusing linux-dmabuf buffer: {reason}");
                notifier.failed();
            }
        }
    }
}

delegate_compositor!(Heapland);
delegate_xdg_shell!(Heapland);
delegate_shm!(Heapland);
delegate_seat!(Heapland);
delegate_output!(Heapland);
delegate_presentation!(Heapland);
delegate_viewporter!(Heapland);
delegate_fractional_scale!(Heapland);
