//! The compositor's state: every protocol's Smithay state, the stacking
//! layout, and the handlers that tie them together.
//!
//! The backend (renderer, outputs' buffers) is part of the state, so that
//! handlers can queue redraws and have client buffers checked by the
//! renderer that draws them; how pixels are produced is the backend's.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::{
    backend::renderer::utils::{on_commit_buffer_handler, with_renderer_surface_state},
    delegate_compositor, delegate_fractional_scale, delegate_output, delegate_presentation,
    delegate_seat, delegate_shm, delegate_single_pixel_buffer, delegate_viewporter,
    delegate_xdg_shell,
    desktop::{layer_map_for_output, PopupKind, PopupManager, Space, Window, WindowSurfaceType},
    input::{
        pointer::{CursorImageStatus, Focus, GrabStartData},
        Seat, SeatHandler, SeatState,
    },
    output::Output,
    reexports::{
        calloop::{LoopHandle, LoopSignal},
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_server::{
            backend::{ClientData, ClientId, DisconnectReason, GlobalId},
            protocol::{
                wl_buffer::WlBuffer, wl_output::WlOutput, wl_seat::WlSeat, wl_surface::WlSurface,
            },
            Client, DisplayHandle,
        },
    },
    utils::{Logical, Point, Rectangle, Serial, SERIAL_COUNTER},
    wayland::{
        buffer::BufferHandler,
        compositor::{
            get_parent, is_sync_subsurface, CompositorClientState, CompositorHandler,
            CompositorState,
        },
        cursor_shape::CursorShapeManagerState,
        fractional_scale::{
            with_fractional_scale, FractionalScaleHandler, FractionalScaleManagerState,
        },
        keyboard_shortcuts_inhibit::KeyboardShortcutsInhibitState,
        output::{OutputHandler, OutputManagerState},
        pointer_constraints::PointerConstraintsState,
        presentation::PresentationState,
        relative_pointer::RelativePointerManagerState,
        security_context::{SecurityContext, SecurityContextState},
        selection::{data_device::DataDeviceState, primary_selection::PrimarySelectionState},
        shell::{
            wlr_layer::WlrLayerShellState,
            xdg::{
                decoration::XdgDecorationState, PopupSurface, PositionerState, ToplevelSurface,
                XdgShellHandler, XdgShellState,
            },
        },
        shm::{ShmHandler, ShmState},
        single_pixel_buffer::SinglePixelBufferState,
        viewporter::ViewporterState,
        xdg_activation::XdgActivationState,
    },
};
use tracing::{debug, warn};

use crate::{
    backend::Backend,
    config::Config,
    decoration,
    dmabuf_params::ParamsValidator,
    feedback::FeedbackPlan,
    focus::KeyboardFocusTarget,
    frame_stats::FrameStats,
    heap_protocol::HeapProtocolState,
    heaps::HeapDirectory,
    linux_dmabuf::LinuxDmabuf,
    move_grab::MoveGrab,
    peer::Peer,
    redraw::RedrawState,
    scene::{DefaultCursor, Scene},
    screenshot::ScreenshotTarget,
    xwayland_surface::surface_of,
};

/// Per-client data Smithay needs, and what heapland knows of the client.
#[derive(Default)]
pub struct ClientState {
    pub compositor_state: CompositorClientState,
    /// The `wp_security_context_v1` context the client connected through;
    /// `None` for clients of the main socket (see `security_context`).
    pub security_context: Option<SecurityContext>,
    /// The credentials of the client's process when it connected; `None`
    /// where they could not be read (then it is handed only heaps that bound
    /// what one user pins, see `heaps`).
    pub peer: Option<Peer>,
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
    /// The configuration in use, and the file it comes from.
    pub config: Config,
    pub config_path: Option<PathBuf>,
    /// Keys whose press went to a binding or the backend, not to a client:
    /// their release does not go to a client either.
    pub intercepted_keys: std::collections::HashSet<smithay::input::keyboard::Keycode>,

    pub space: Space<Window>,
    pub outputs: Vec<Output>,
    /// The renderer and the outputs' buffers.
    pub backend: Backend,
    /// Where each output is in its frame cycle (see `redraw`).
    pub redraw_states: HashMap<Output, RedrawState>,
    /// The renderer is to drop what it holds of destroyed client buffers
    /// at the end of this turn of the event loop.
    pub cleanup_queued: bool,

    pub compositor_state: CompositorState,
    pub xdg_shell_state: XdgShellState,
    pub shm_state: ShmState,
    pub seat_state: SeatState<Self>,
    /// seat0: the keyboard and pointer input backends feed.
    pub seat: Seat<Self>,
    pub linux_dmabuf: LinuxDmabuf,
    pub data_device_state: DataDeviceState,
    pub primary_selection_state: PrimarySelectionState,
    pub data_control: crate::selection::DataControl,
    pub idle: crate::idle::Idle,
    pub session_lock: crate::session_lock::SessionLock,
    pub layer_shell_state: WlrLayerShellState,
    pub activation_state: XdgActivationState,
    pub keyboard_shortcuts_inhibit_state: KeyboardShortcutsInhibitState,
    /// xdg popups, tracked so they are drawn with their parent.
    pub popups: PopupManager,
    /// The cursor the focused client asked for.
    pub cursor_status: CursorImageStatus,
    pub default_cursor: DefaultCursor,
    /// How many surfaces clients have made.
    pub surfaces_made: u64,
    /// The icon of the drag in progress.
    pub dnd_icon: Option<crate::selection::DndIcon>,
    /// The configured xcursor theme.
    pub cursor_theme: crate::cursor_theme::CursorTheme,
    /// Whether the pointer has moved since start-up: the drm backend draws
    /// no cursor before (no pointing device, or nobody using it).
    pub pointer_seen: bool,
    /// Protocol states that own globals and are never read again: holding
    /// them keeps their globals and per-client bookkeeping alive.
    pub _globals: PassiveGlobals,
    pub params: ParamsValidator,
    /// The default feedback plan; surfaces start with it.
    pub default_plan: Arc<FeedbackPlan>,
    /// The default plan with a scanout tranche first, when the backend can
    /// put client buffers on a plane (drm); see `feedback::scanout_decided`.
    pub scanout_plan: Option<Arc<FeedbackPlan>>,
    pub heaps: HeapDirectory,
    /// When the heap rescan scheduled is due (`heap_watch`).
    pub heap_rescan_due: Option<std::time::Instant>,
    /// The heap protocol's feedback objects (both versions).
    pub heap_protocol: HeapProtocolState,

    /// Number of toplevels mapped so far, for the cascade of the stacking layout.
    pub mapped_count: u32,
    /// `--screenshot`: where the first output's picture goes.
    pub screenshot: Option<ScreenshotTarget>,
    /// Set by SIGUSR1; the backend writes the screenshot after its next frame.
    pub screenshot_requested: bool,
    /// Outputs turned off, and clients' power controls (`output_power`).
    pub output_power: crate::output_power::OutputPower,
    /// Task bars' view of the windows (`foreign_toplevel`).
    pub foreign_toplevels: crate::foreign_toplevel::ForeignToplevels,
    /// Output configuration clients (`output_management`).
    pub output_management: crate::output_management::OutputManagement,
    /// Screen captures waiting to be made (`screencopy`).
    pub screencopy: crate::screencopy::Screencopy,
    /// ext-image-copy-capture sessions and frames.
    pub image_copy_capture: crate::image_copy_capture::ImageCopyCapture,
    /// X11 apps: Xwayland and its window manager.
    pub xwayland: crate::xwayland::Xwayland,
    /// Frames shown, for `--stats`.
    pub frame_stats: FrameStats,
}

/// See [`Heapland::_globals`]: owned, never read, hence the allow.
#[allow(dead_code)]
pub struct PassiveGlobals {
    pub output_manager_state: OutputManagerState,
    pub presentation_state: PresentationState,
    pub viewporter_state: ViewporterState,
    pub fractional_scale_state: FractionalScaleManagerState,
    pub security_context_state: SecurityContextState,
    pub xdg_decoration_state: XdgDecorationState,
    pub cursor_shape_state: CursorShapeManagerState,
    pub relative_pointer_state: RelativePointerManagerState,
    pub pointer_constraints_state: PointerConstraintsState,
    pub single_pixel_buffer_state: SinglePixelBufferState,
}

impl Heapland {
    /// Creates every global. `formats` are the dma-buf formats the renderer
    /// imports; `plan` is the default dmabuf feedback, built from the
    /// devices there really are (no tranche: linux-dmabuf version 3).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        display_handle: DisplayHandle,
        loop_handle: LoopHandle<'static, Heapland>,
        loop_signal: LoopSignal,
        socket_name: String,
        formats: Vec<smithay::backend::allocator::Format>,
        plan: FeedbackPlan,
        heaps: HeapDirectory,
        backend: Backend,
    ) -> Self {
        let dh = &display_handle;
        let xwayland = crate::xwayland::Xwayland::new(dh);
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
        // The defaults until backend::run takes the user's file into use.
        let config = Config::default();
        if let Err(err) = seat.add_keyboard(
            config.keyboard.xkb(),
            config.keyboard.repeat_delay,
            config.keyboard.repeat_rate,
        ) {
            warn!("no keyboard on seat0: cannot build an xkb keymap ({err:?}); is /usr/share/X11/xkb present?");
        }
        seat.add_pointer();

        let linux_dmabuf = LinuxDmabuf::new(dh, &plan, &formats);
        let heap_protocol = HeapProtocolState::new(dh);
        let security_context_state = crate::security_context::create_global(dh);
        let data_device_state = DataDeviceState::new::<Self>(dh);
        let primary_selection_state = PrimarySelectionState::new::<Self>(dh);
        let data_control = crate::selection::DataControl::new(dh, &primary_selection_state);
        let idle = crate::idle::Idle::new(dh, loop_handle.clone());
        let session_lock = crate::session_lock::SessionLock::new(dh);
        let screencopy = crate::screencopy::Screencopy::new(dh);
        let image_copy_capture = crate::image_copy_capture::ImageCopyCapture::new(dh);
        let output_power = crate::output_power::OutputPower::new(dh);
        let output_management = crate::output_management::OutputManagement::new(dh);
        let foreign_toplevels = crate::foreign_toplevel::ForeignToplevels::new(dh);
        // A sandboxed client could cover the screen with an overlay that
        // takes the keyboard (a fake lock screen): layer shell is for the
        // user's own panels and launchers.
        let layer_shell_state = WlrLayerShellState::new_with_filter::<Self, _>(dh, |client| {
            !crate::security_context::is_sandboxed(client)
        });
        let activation_state = XdgActivationState::new::<Self>(dh);
        let keyboard_shortcuts_inhibit_state = KeyboardShortcutsInhibitState::new::<Self>(dh);
        let xdg_decoration_state = XdgDecorationState::new::<Self>(dh);
        let cursor_shape_state = CursorShapeManagerState::new::<Self>(dh);
        let relative_pointer_state = RelativePointerManagerState::new::<Self>(dh);
        let pointer_constraints_state = PointerConstraintsState::new::<Self>(dh);
        let single_pixel_buffer_state = SinglePixelBufferState::new::<Self>(dh);

        Heapland {
            display_handle,
            loop_handle,
            loop_signal,
            start_time: Instant::now(),
            socket_name,
            config,
            config_path: None,
            intercepted_keys: Default::default(),
            space: Space::default(),
            outputs: Vec::new(),
            backend,
            redraw_states: HashMap::new(),
            cleanup_queued: false,
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
                security_context_state,
                xdg_decoration_state,
                cursor_shape_state,
                relative_pointer_state,
                pointer_constraints_state,
                single_pixel_buffer_state,
            },
            params: ParamsValidator::new(formats),
            default_plan: Arc::new(plan),
            scanout_plan: None,
            linux_dmabuf,
            data_device_state,
            primary_selection_state,
            data_control,
            idle,
            session_lock,
            layer_shell_state,
            activation_state,
            keyboard_shortcuts_inhibit_state,
            popups: PopupManager::default(),
            cursor_status: CursorImageStatus::default_named(),
            default_cursor: DefaultCursor::default(),
            dnd_icon: None,
            surfaces_made: 0,
            cursor_theme: crate::cursor_theme::CursorTheme::load("", 0),
            pointer_seen: false,
            heaps,
            heap_rescan_due: None,
            heap_protocol,
            mapped_count: 0,
            screenshot: None,
            screenshot_requested: false,
            screencopy,
            image_copy_capture,
            output_power,
            output_management,
            foreign_toplevels,
            xwayland,
            frame_stats: FrameStats::default(),
        }
    }

    /// The backend, and the scene it draws borrowed from the rest of the
    /// state.
    pub fn split_for_frame(&mut self) -> (&mut Backend, Scene<'_>) {
        (
            &mut self.backend,
            Scene {
                space: &self.space,
                seat: &self.seat,
                cursor_status: &self.cursor_status,
                default_cursor: &self.default_cursor,
                cursor_theme: &self.cursor_theme,
                dnd_icon: self.dnd_icon.as_ref(),
                pointer_seen: self.pointer_seen,
                start_time: self.start_time,
                lock: &self.session_lock,
            },
        )
    }

    /// Announces `output` to clients at `location` of the global space, and
    /// has heaps chosen for full frames of the largest output.
    pub fn add_output(&mut self, output: &Output, location: Point<i32, Logical>) -> GlobalId {
        let global = output.create_global::<Heapland>(&self.display_handle);
        self.space.map_output(output, location);
        self.outputs.push(output.clone());
        self.redraw_states
            .insert(output.clone(), RedrawState::Queued);
        self.outputs_resized();
        self.output_configuration_changed();
        // A display plugged in later takes its configured settings.
        self.apply_settings_of(output);
        global
    }

    /// An output came, went or changed its mode: heaps are chosen for full
    /// frames of the largest output.
    pub fn outputs_resized(&mut self) {
        let sizes: Vec<(i32, i32)> = self
            .outputs
            .iter()
            .filter_map(|o| o.current_mode())
            .map(|m| (m.size.w, m.size.h))
            .collect();
        if self.heaps.size_for_outputs(sizes) {
            crate::heap_protocol::resend_all(self);
        }
    }

    /// `output`'s scale changed: the surfaces on it hear their new
    /// preferred fractional scale.
    pub fn output_scale_changed(&mut self, output: &Output) {
        let scale = output.current_scale().fractional_scale();
        for window in self.space.elements_for_output(output) {
            window.with_surfaces(|_, states| {
                with_fractional_scale(states, |fs| fs.set_preferred_scale(scale));
            });
        }
    }

    /// Withdraws `output` (its connector was unplugged): clients see its
    /// global go, and windows left on no output move to the first one.
    ///
    /// The global is disabled at once and removed a few seconds later, so a
    /// client whose bind is already on its way is not killed for binding a
    /// global that no longer exists. Its layer surfaces are closed, as the
    /// layer-shell protocol requires.
    pub fn remove_output(&mut self, output: &Output, global: GlobalId) {
        self.output_power.output_removed(output);
        self.display_handle
            .disable_global::<Heapland>(global.clone());
        let dh = self.display_handle.clone();
        let timer = Timer::from_duration(Duration::from_secs(5));
        if let Err(err) = self.loop_handle.insert_source(timer, move |_, _, _| {
            dh.remove_global::<Heapland>(global.clone());
            TimeoutAction::Drop
        }) {
            warn!("cannot schedule the removal of a wl_output global: {err}");
        }

        let focus = self.seat.get_keyboard().and_then(|k| k.current_focus());
        let mut closed_focus = false;
        {
            let mut map = layer_map_for_output(output);
            let layers: Vec<_> = map.layers().cloned().collect();
            for layer in layers {
                closed_focus |=
                    focus.as_ref().map(KeyboardFocusTarget::surface) == Some(layer.wl_surface());
                layer.layer_surface().send_close();
                map.unmap_layer(&layer);
            }
        }

        self.image_copy_capture.output_removed(output);
        crate::scene::release_primary_output(&self.space, output);
        let old = self.space.output_geometry(output);
        self.space.unmap_output(output);
        self.outputs.retain(|o| o != output);
        if let Some(timer) = self.redraw_states.remove(output).and_then(|s| s.timer()) {
            self.loop_handle.remove(timer);
        }
        // Windows move, and the others show what was under them.
        self.queue_redraw_all();
        let remaining: Vec<Rectangle<i32, Logical>> = self
            .outputs
            .iter()
            .filter_map(|o| self.space.output_geometry(o))
            .collect();
        let origin = self.usable_area().map(|a| a.loc).unwrap_or_default();
        if let Some(old) = old {
            // Windows that were on the withdrawn output and are on no other
            // keep their place relative to it, on the first output.
            let stranded: Vec<(Window, Point<i32, Logical>)> = self
                .space
                .elements()
                .filter_map(|w| {
                    let loc = self.space.element_location(w)?;
                    let bbox = self.space.element_bbox(w)?;
                    let was_there = old.contains(loc) || old.overlaps(bbox);
                    let elsewhere = remaining.iter().any(|r| r.overlaps(bbox));
                    (was_there && !elsewhere).then(|| (w.clone(), loc - old.loc))
                })
                .collect();
            for (window, offset) in stranded {
                self.space
                    .map_element(window.clone(), origin + offset, false);
                self.x11_moved(&window);
            }
        }
        self.space.refresh();
        self.outputs_resized();
        self.output_configuration_changed();
        if closed_focus {
            self.focus_topmost();
        }
    }

    /// The mapped window of a toplevel.
    fn window_of(&self, surface: &ToplevelSurface) -> Option<Window> {
        self.window_of_surface(surface.wl_surface()).cloned()
    }

    /// The first output's area not reserved by layer surfaces (panels), in
    /// global coordinates.
    fn usable_area(&self) -> Option<Rectangle<i32, Logical>> {
        self.usable_area_of(self.outputs.first()?)
    }

    /// The output `window` overlaps most, if it is on any.
    pub fn output_of_window(&self, window: &Window) -> Option<Output> {
        let bbox = self.space.element_bbox(window)?;
        self.outputs
            .iter()
            .filter_map(|o| {
                let overlap = self.space.output_geometry(o)?.intersection(bbox)?;
                Some((o, overlap.size.w * overlap.size.h))
            })
            .max_by_key(|(_, area)| *area)
            .map(|(o, _)| o.clone())
    }

    /// `output`'s area not reserved by layer surfaces, in global coordinates.
    pub fn usable_area_of(&self, output: &Output) -> Option<Rectangle<i32, Logical>> {
        let geo = self.space.output_geometry(output)?;
        let mut zone = layer_map_for_output(output).non_exclusive_zone();
        zone.loc += geo.loc;
        Some(zone)
    }

    /// Maps a new toplevel in the stacking layout, on top: it
    /// cascades from the top left of the usable area in 48 px steps, in the
    /// first step no other window's corner occupies, so windows opened one
    /// after another never hide each other completely.
    pub fn map_toplevel(&mut self, window: Window) {
        let origin = self.usable_area().map(|a| a.loc).unwrap_or_default();
        let occupied: Vec<Point<i32, Logical>> = self
            .space
            .elements()
            .filter_map(|w| self.space.element_location(w))
            .collect();
        let slot = |k: i32| origin + Point::from((CASCADE_STEP * k, CASCADE_STEP * k));
        let free = (0..CASCADE_SLOTS).map(slot).find(|p| !occupied.contains(p));
        let location =
            free.unwrap_or_else(|| slot((self.mapped_count % CASCADE_SLOTS as u32) as i32));
        self.mapped_count += 1;
        self.space.map_element(window, location, false);
    }

    /// A new window gets keyboard focus with its first buffer: earlier, it
    /// has not been configured, and some clients (foot 1.13) crash on a
    /// keyboard enter before their first configure.
    pub fn focus_on_first_buffer(&mut self, window: &Window, surface: &WlSurface) {
        // X11 menus, tooltips, notifications and splash screens never take
        // the keyboard.
        if window.x11_surface().is_some_and(|x| {
            use smithay::xwayland::xwm::WmWindowType;
            x.is_override_redirect()
                || matches!(
                    x.window_type(),
                    Some(WmWindowType::Notification | WmWindowType::Splash | WmWindowType::Tooltip)
                )
        }) {
            return;
        }
        let has_buffer =
            with_renderer_surface_state(surface, |s| s.buffer().is_some()).unwrap_or(false);
        if has_buffer && window.user_data().insert_if_missing(|| FocusedOnMap) {
            self.focus_surface(surface);
        }
    }

    /// The mapped window (an xdg toplevel or an X11 window) whose surface
    /// is `surface`.
    pub fn window_of_surface(&self, surface: &WlSurface) -> Option<&Window> {
        self.space
            .elements()
            .find(|w| surface_of(w).is_some_and(|s| s == *surface))
    }

    /// Asks a window to close: `xdg_toplevel.close`, or X11's
    /// `WM_DELETE_WINDOW`.
    pub fn close_window(window: &Window) {
        if let Some(toplevel) = window.toplevel() {
            toplevel.send_close();
        } else if let Some(x11) = window.x11_surface() {
            Heapland::close_x11(x11);
        }
    }

    /// What the keyboard focuses to reach `surface`: the X11 window it
    /// shows, or the surface itself.
    pub fn keyboard_target(&self, surface: &WlSurface) -> KeyboardFocusTarget {
        self.window_of_surface(surface)
            .and_then(KeyboardFocusTarget::of_window)
            .unwrap_or_else(|| KeyboardFocusTarget::Surface(surface.clone()))
    }

    /// The surface that has keyboard focus.
    pub fn keyboard_focus_surface(&self) -> Option<WlSurface> {
        let focus = self.seat.get_keyboard()?.current_focus()?;
        Some(focus.surface().clone())
    }

    /// Raises the window of `surface` and gives it keyboard focus, unless a
    /// layer surface holds the keyboard exclusively (a lock screen, a
    /// launcher): the window is raised but waits.
    pub fn focus_surface(&mut self, surface: &WlSurface) {
        // While locked, only lock surfaces take the keyboard.
        if self.session_lock.is_locked() && !self.session_lock.is_lock_surface(surface) {
            return;
        }
        if let Some(window) = self.window_of_surface(surface).cloned() {
            // Activation follows keyboard focus (`focus_changed`).
            self.space.raise_element(&window, false);
            self.raise_x11(&window);
        }
        if self.exclusive_layer().is_some_and(|l| &l != surface) {
            return;
        }
        let target = self.keyboard_target(surface);
        if let Some(keyboard) = self.seat.get_keyboard() {
            keyboard.set_focus(self, Some(target), SERIAL_COUNTER.next_serial());
        }
    }

    /// The top or overlay layer surface that asked for the keyboard
    /// exclusively, if one is mapped: the topmost such, overlay first.
    pub fn exclusive_layer(&self) -> Option<WlSurface> {
        use smithay::wayland::shell::wlr_layer::{KeyboardInteractivity, Layer};
        self.outputs.iter().find_map(|output| {
            let map = layer_map_for_output(output);
            [Layer::Overlay, Layer::Top].into_iter().find_map(|layer| {
                map.layers_on(layer)
                    .rev()
                    .find(|l| {
                        l.cached_state().keyboard_interactivity == KeyboardInteractivity::Exclusive
                    })
                    .map(|l| l.wl_surface().clone())
            })
        })
    }

    /// Whether `surface` is a toplevel's surface that has shown something.
    pub fn is_mapped_toplevel(&self, surface: &WlSurface) -> bool {
        self.window_of_surface(surface)
            .is_some_and(|w| w.user_data().get::<FocusedOnMap>().is_some())
    }

    /// Where `surface`'s origin is in global coordinates, for toplevels and
    /// layer surfaces.
    pub fn surface_origin(&self, surface: &WlSurface) -> Option<Point<f64, Logical>> {
        if let Some(window) = self.window_of_surface(surface) {
            let loc = self.space.element_location(window)? - window.geometry().loc;
            return Some(loc.to_f64());
        }
        self.outputs.iter().find_map(|o| {
            let map = layer_map_for_output(o);
            let layer = map.layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)?;
            let geo = map.layer_geometry(layer)?;
            Some((geo.loc + self.space.output_geometry(o)?.loc).to_f64())
        })
    }

    /// heapland paired an (old) Xwayland's surface with its X11 window
    /// (see `xwayland_surface`): what its commits would have done had the
    /// window been known.
    pub fn x11_surface_paired(&mut self, window: &Window, surface: &WlSurface) {
        self.keep_title_bar_visible(window);
        self.focus_on_first_buffer(window, surface);
        self.queue_redraw_all();
    }

    /// Keeps a decorated window's title bar inside the usable area, once the
    /// client has acknowledged server-side decorations.
    fn keep_title_bar_visible(&mut self, window: &Window) {
        let margin = decoration::top_margin(window);
        let (Some(area), Some(loc)) = (self.usable_area(), self.space.element_location(window))
        else {
            return;
        };
        if loc.y - margin < area.loc.y {
            let loc = Point::from((loc.x, area.loc.y + margin));
            self.space.map_element(window.clone(), loc, false);
            self.x11_moved(window);
            self.queue_redraw_all();
        }
    }

    /// Gives linux-dmabuf a main device where it had none (version 3): the
    /// drm backend on a display engine without a render node (ARM boards)
    /// names the display's primary node, which clients can open, so that
    /// feedback and heap batches come. Called before any client connects;
    /// the version 3 global is replaced by one with feedback.
    pub fn set_main_device(&mut self, dev: u64) {
        let formats = self.backend.dmabuf_formats();
        let plan = FeedbackPlan::composited(dev, formats.clone());
        let dh = self.display_handle.clone();
        self.linux_dmabuf.replace(&dh, &plan, &formats);
        self.default_plan = Arc::new(plan);
    }

    /// After `surface` went away: if it had keyboard focus, the topmost
    /// window takes it.
    pub fn refocus_if_focused(&mut self, surface: &WlSurface) {
        let had_focus = self.keyboard_focus_surface().is_some_and(|f| &f == surface);
        if had_focus {
            self.focus_topmost();
        }
    }

    /// Gives keyboard focus to a layer surface that holds it exclusively,
    /// else to the topmost window that has shown something, or to nobody.
    pub fn focus_topmost(&mut self) {
        if self.session_lock.is_locked() {
            return;
        }
        let top = self
            .exclusive_layer()
            .map(KeyboardFocusTarget::Surface)
            .or_else(|| {
                self.space
                    .elements()
                    .rev()
                    .filter(|w| w.user_data().get::<FocusedOnMap>().is_some())
                    .find_map(KeyboardFocusTarget::of_window)
            });
        if let Some(keyboard) = self.seat.get_keyboard() {
            keyboard.set_focus(self, top, SERIAL_COUNTER.next_serial());
        }
    }

    /// Starts moving `window` with the pointer, if the button press with
    /// `serial` is still held (the condition `xdg_toplevel.move` sets).
    pub fn start_move(&mut self, window: Window, serial: Serial) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        if !pointer.has_grab(serial) {
            return;
        }
        let Some(start_data) = pointer.grab_start_data() else {
            return;
        };
        self.set_move_grab(window, start_data, serial);
    }

    /// Starts moving `window` from a press of `button` on its title bar at
    /// `location`.
    pub fn start_move_from_bar(
        &mut self,
        window: Window,
        location: Point<f64, Logical>,
        button: u32,
        serial: Serial,
    ) {
        let start_data = GrabStartData {
            focus: None,
            button,
            location,
        };
        self.set_move_grab(window, start_data, serial);
    }

    /// Starts resizing `window` on `edges` from a press of `button` at
    /// `location` on the border heapland leaves around it.
    pub fn start_resize_from_edge(
        &mut self,
        window: Window,
        edges: crate::resize_grab::Edges,
        location: Point<f64, Logical>,
        button: u32,
        serial: Serial,
    ) {
        let start_data = GrabStartData {
            focus: None,
            button,
            location,
        };
        self.set_resize_grab(window, edges, start_data, serial);
    }

    fn set_resize_grab(
        &mut self,
        window: Window,
        edges: crate::resize_grab::Edges,
        start_data: GrabStartData<Heapland>,
        serial: Serial,
    ) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        if let Some(grab) = crate::resize_grab::ResizeGrab::new(self, start_data, window, edges) {
            pointer.set_grab(self, grab, serial, Focus::Clear);
        }
    }

    pub fn set_move_grab(
        &mut self,
        window: Window,
        start_data: GrabStartData<Heapland>,
        serial: Serial,
    ) {
        let (Some(pointer), Some(initial_location)) = (
            self.seat.get_pointer(),
            self.space.element_location(&window),
        ) else {
            return;
        };
        let grab = MoveGrab {
            start_data,
            window,
            initial_location,
        };
        pointer.set_grab(self, grab, serial, Focus::Clear);
    }
}

/// Marks a window that got keyboard focus when it first showed.
struct FocusedOnMap;

/// Cascade of new windows: step and number of steps before it wraps.
const CASCADE_STEP: i32 = 48;
const CASCADE_SLOTS: i32 = 8;

impl BufferHandler for Heapland {
    /// The renderer may hold an import of the buffer (a mapping, an EGL
    /// image): it lets go at the end of this turn of the event loop, once
    /// the buffer object is gone, so the memory is freed when the client
    /// frees it.
    fn buffer_destroyed(&mut self, _buffer: &WlBuffer) {
        self.cleanup_queued = true;
    }
}

impl CompositorHandler for Heapland {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        // Every client is inserted with ClientState by the listening socket,
        // except Xwayland, which Smithay inserts with its own.
        if let Some(xwayland) = client.get_data::<smithay::xwayland::XWaylandClientData>() {
            return &xwayland.compositor_state;
        }
        &client
            .get_data::<ClientState>()
            .expect("clients are always created with ClientState or XWaylandClientData")
            .compositor_state
    }

    /// Numbers every surface in order of creation (`xwayland_surface`
    /// pairs an X11 window only with a surface made after it was mapped).
    fn new_surface(&mut self, surface: &WlSurface) {
        self.surfaces_made += 1;
        crate::xwayland_surface::stamp(surface, self.surfaces_made);
    }

    /// Its textures go with it (see `BufferHandler`).
    fn destroyed(&mut self, _surface: &WlSurface) {
        self.cleanup_queued = true;
    }

    fn commit(&mut self, surface: &WlSurface) {
        self.apply_commit(surface);
        // Once applied: the window's new size is what it covers now.
        self.queue_redraw_for_surface(surface);
    }
}

impl Heapland {
    /// What a commit changes: buffers, popups, layer arrangement, the
    /// window's first configure and focus.
    fn apply_commit(&mut self, surface: &WlSurface) {
        on_commit_buffer_handler::<Self>(surface);
        crate::selection::dnd_icon_committed(self, surface);
        self.popups.commit(surface);
        if let Some(PopupKind::Xdg(popup)) = self.popups.find_popup(surface) {
            if !popup.is_initial_configure_sent() {
                // The positioner's geometry was set at creation; nothing
                // about the popup changes before its first configure.
                let _ = popup.send_configure();
            }
        }
        if is_sync_subsurface(surface) {
            return;
        }
        if crate::layer_shell::layer_committed(self, surface) {
            return;
        }
        let mut root = surface.clone();
        while let Some(parent) = get_parent(&root) {
            root = parent;
        }
        let window = self.window_of_surface(&root).cloned();
        if let Some(window) = window {
            window.on_commit();
            crate::resize_grab::window_committed(self, &window);
            if let Some(toplevel) = window.toplevel() {
                if !toplevel.is_initial_configure_sent() {
                    toplevel.send_configure();
                }
            }
            self.keep_title_bar_visible(&window);
            self.focus_on_first_buffer(&window, &root);
        }
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

    /// On the output the client names, else the one the window is on, else
    /// the first.
    fn fullscreen_request(&mut self, surface: ToplevelSurface, wl_output: Option<WlOutput>) {
        let output = wl_output
            .as_ref()
            .and_then(Output::from_resource)
            .or_else(|| {
                self.window_of(&surface)
                    .and_then(|w| self.output_of_window(&w))
            })
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
            self.space.map_element(window, geometry.loc, false);
            // It leaves where it was, whether or not it commits again.
            self.queue_redraw_all();
        }
        // Before the first commit the initial configure carries it.
        if surface.is_initial_configure_sent() {
            surface.send_configure();
        }
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        surface.with_pending_state(|state| {
            state.states.unset(xdg_toplevel::State::Fullscreen);
            state.size = None;
            state.fullscreen_output = None;
        });
        if surface.is_initial_configure_sent() {
            surface.send_pending_configure();
        }
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        if let Some(window) = self.window_of(&surface) {
            for output in self.space.outputs_for_element(&window) {
                self.queue_redraw(&output);
            }
            self.space.unmap_elem(&window);
        }
        self.refocus_if_focused(surface.wl_surface());
    }

    /// Popups (menus, tooltips) are placed where the positioner says,
    /// relative to their parent, drawn with it, and configured on their
    /// first commit.
    fn new_popup(&mut self, surface: PopupSurface, positioner: PositionerState) {
        let geometry = self.popup_geometry(&surface, &positioner);
        surface.with_pending_state(|state| {
            state.geometry = geometry;
        });
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(surface)) {
            warn!("cannot track popup: {err}");
        }
    }

    /// A menu that goes leaves its picture behind unless its outputs
    /// redraw.
    fn popup_destroyed(&mut self, surface: PopupSurface) {
        if let Ok(root) = smithay::desktop::find_popup_root_surface(&PopupKind::Xdg(surface)) {
            self.queue_redraw_for_surface(&root);
        }
    }

    fn grab(&mut self, surface: PopupSurface, seat: WlSeat, serial: Serial) {
        self.grab_popup(surface, &seat, serial);
    }

    /// A client-decorated window's own border was pressed: resize it while
    /// that press lasts.
    fn resize_request(
        &mut self,
        surface: ToplevelSurface,
        _seat: WlSeat,
        serial: Serial,
        edges: xdg_toplevel::ResizeEdge,
    ) {
        let (Some(window), Some(pointer), Some(edges)) = (
            self.window_of(&surface),
            self.seat.get_pointer(),
            crate::resize_grab::Edges::from_xdg(edges),
        ) else {
            return;
        };
        if !pointer.has_grab(serial) {
            return;
        }
        let Some(start_data) = pointer.grab_start_data() else {
            return;
        };
        self.set_resize_grab(window, edges, start_data, serial);
    }

    fn move_request(&mut self, surface: ToplevelSurface, _seat: WlSeat, serial: Serial) {
        if let Some(window) = self.window_of(&surface) {
            self.start_move(window, serial);
        }
    }

    /// A maximized window fills the usable area of the output it is on, or
    /// of the first (below its title bar when decorated).
    fn maximize_request(&mut self, surface: ToplevelSurface) {
        let window = self.window_of(&surface);
        let area = match window.as_ref().and_then(|w| self.output_of_window(w)) {
            Some(output) => self.usable_area_of(&output),
            None => self.usable_area(),
        };
        let (Some(area), Some(window)) = (area, window) else {
            if surface.is_initial_configure_sent() {
                surface.send_configure();
            }
            return;
        };
        let margin = decoration::top_margin(&window);
        // Panels may leave less than a title bar: never a size below 1.
        let size = (area.size.w.max(1), (area.size.h - margin).max(1)).into();
        surface.with_pending_state(|state| {
            state.states.set(xdg_toplevel::State::Maximized);
            state.size = Some(size);
        });
        self.space
            .map_element(window, area.loc + Point::from((0, margin)), false);
        self.queue_redraw_all();
        if surface.is_initial_configure_sent() {
            surface.send_configure();
        }
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        surface.with_pending_state(|state| {
            state.states.unset(xdg_toplevel::State::Maximized);
            state.size = None;
        });
        if surface.is_initial_configure_sent() {
            surface.send_pending_configure();
        }
    }

    fn reposition_request(
        &mut self,
        surface: PopupSurface,
        positioner: PositionerState,
        token: u32,
    ) {
        let geometry = self.popup_geometry(&surface, &positioner);
        surface.with_pending_state(|state| {
            state.geometry = geometry;
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
    type KeyboardFocus = KeyboardFocusTarget;
    type PointerFocus = WlSurface;
    type TouchFocus = WlSurface;

    fn seat_state(&mut self) -> &mut SeatState<Self> {
        &mut self.seat_state
    }

    /// Keyboard focus moves the selections and the windows' activated state.
    fn focus_changed(&mut self, seat: &Seat<Self>, focused: Option<&KeyboardFocusTarget>) {
        let focused = focused.map(KeyboardFocusTarget::surface);
        crate::selection::focus_changed(self, seat, focused);
        // Title bars show which window has focus.
        self.queue_redraw_all();
        for window in self.space.elements() {
            let is_focused = surface_of(window).is_some_and(|s| Some(&s) == focused);
            window.set_activated(is_focused);
            if let Some(x11) = window.x11_surface() {
                if let Err(err) = x11.set_activated(is_focused) {
                    warn!(
                        "cannot tell X11 window {} it is active: {err}",
                        x11.window_id()
                    );
                }
            }
            if let Some(toplevel) = window.toplevel() {
                // Sends nothing when the pending state did not change.
                if toplevel.is_initial_configure_sent() {
                    toplevel.send_pending_configure();
                }
            }
        }
    }

    fn cursor_image(&mut self, _seat: &Seat<Self>, image: CursorImageStatus) {
        self.cursor_status = image;
        if self.backend.draws_cursor() {
            self.queue_redraw_all();
        }
    }
}

impl OutputHandler for Heapland {}

impl FractionalScaleHandler for Heapland {
    fn new_fractional_scale(&mut self, surface: WlSurface) {
        // The scale of the output its window is on, else of the first one
        // (where new windows open).
        let mut root = surface.clone();
        while let Some(parent) = smithay::wayland::compositor::get_parent(&root) {
            root = parent;
        }
        let output = self
            .space
            .elements()
            .find(|w| w.toplevel().is_some_and(|t| t.wl_surface() == &root))
            .and_then(|w| self.space.outputs_for_element(w).into_iter().next())
            .or_else(|| self.outputs.first().cloned());
        let scale = output.map_or(1.0, |o| o.current_scale().fractional_scale());
        smithay::wayland::compositor::with_states(&surface, |states| {
            with_fractional_scale(states, |fs| fs.set_preferred_scale(scale));
        });
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
delegate_single_pixel_buffer!(Heapland);
