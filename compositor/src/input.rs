//! Input from a backend (libinput on drm) delivered to seat0: keys to the
//! focused window, the pointer to the surface under it (layer surfaces
//! above and below the windows), a click focuses and raises, a press on a
//! title bar moves the window or closes it. Pointer locks and confinements
//! are honoured and relative motion is sent alongside. The compositor's own
//! keys are Ctrl+Alt+Backspace (quit) and Ctrl+Alt+F1..F12 (switch VT),
//! which the backend carries out, then the configuration's bindings
//! (`config`); a client holding a keyboard-shortcuts inhibitor gets every
//! key but the VT switch.

use smithay::{
    backend::input::{
        AbsolutePositionEvent, Axis, AxisSource, ButtonState, Device, Event, InputBackend,
        InputEvent, KeyboardKeyEvent, PointerAxisEvent, PointerButtonEvent, PointerMotionEvent,
    },
    desktop::{layer_map_for_output, WindowSurfaceType},
    input::{
        keyboard::{FilterResult, Keysym},
        pointer::{AxisFrame, ButtonEvent, CursorImageStatus, MotionEvent, RelativeMotionEvent},
    },
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Point, Rectangle, SERIAL_COUNTER},
    wayland::{
        compositor::{get_parent, with_states},
        pointer_constraints::{with_pointer_constraint, PointerConstraint},
        shell::wlr_layer::{KeyboardInteractivity, Layer},
    },
};

use smithay::wayland::keyboard_shortcuts_inhibit::KeyboardShortcutsInhibitorSeat;

use crate::{
    config::{lowercase, Action, Combo, Mods},
    decoration::{self, BarPart},
    state::Heapland,
    xwayland_surface::surface_of,
};

/// What a point of the screen is on.
enum Hit {
    /// A client surface, with its origin in global coordinates.
    Surface(WlSurface, Point<f64, Logical>),
    /// A title bar heapland draws.
    Bar(smithay::desktop::Window, BarPart),
    /// The border around a window heapland decorates: these edges resize it.
    Edge(smithay::desktop::Window, crate::resize_grab::Edges),
    Nothing,
}

/// BTN_LEFT of linux/input-event-codes.h.
const BTN_LEFT: u32 = 0x110;

/// A key the compositor kept from clients.
enum Intercepted {
    Backend(InputAction),
    Binding(Action),
    /// The release of a key kept when pressed.
    Release,
}

/// What the compositor itself must do after an input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputAction {
    None,
    Quit,
    SwitchVt(i32),
}

impl Heapland {
    /// Handles one event; returns what only the backend can do.
    pub fn process_input_event<B: InputBackend>(&mut self, event: InputEvent<B>) -> InputAction {
        if !matches!(
            event,
            InputEvent::DeviceAdded { .. } | InputEvent::DeviceRemoved { .. }
        ) {
            self.input_activity();
            // A lid closing is no reason to light the panel.
            if !matches!(event, InputEvent::SwitchToggle { .. }) {
                self.wake_outputs();
            }
        }
        match event {
            InputEvent::Keyboard { event } => return self.on_key::<B>(event),
            InputEvent::PointerMotion { event } => {
                self.on_relative_motion::<B>(&event);
            }
            InputEvent::PointerMotionAbsolute { event } => {
                if let Some(area) = self.output_area() {
                    let location = event.position_transformed(area.size) + area.loc.to_f64();
                    self.pointer_moved(location, event.time_msec());
                }
            }
            InputEvent::PointerButton { event } => {
                self.on_button::<B>(event);
                // A click raises, a title bar button closes.
                self.queue_redraw_all();
            }
            InputEvent::PointerAxis { event } => self.on_axis::<B>(event),
            InputEvent::DeviceAdded { device } => {
                tracing::info!("input device: {}", device.name());
            }
            InputEvent::DeviceRemoved { device } => {
                tracing::info!("input device gone: {}", device.name());
            }
            _ => {}
        }
        InputAction::None
    }

    fn on_key<B: InputBackend>(&mut self, event: B::KeyboardKeyEvent) -> InputAction {
        let Some(keyboard) = self.seat.get_keyboard() else {
            return InputAction::None;
        };
        let serial = SERIAL_COUNTER.next_serial();
        let pressed = event.state() == smithay::backend::input::KeyState::Pressed;
        let code = event.key_code();
        let intercepted = keyboard.input::<Intercepted, _>(
            self,
            code,
            event.state(),
            serial,
            event.time_msec(),
            |state, modifiers, handle| {
                if !pressed {
                    // The release of a key whose press the compositor kept
                    // is kept too: the client never saw it go down.
                    return if state.intercepted_keys.remove(&code) {
                        FilterResult::Intercept(Intercepted::Release)
                    } else {
                        FilterResult::Forward
                    };
                }
                if modifiers.ctrl && modifiers.alt {
                    let sym = handle.modified_sym();
                    if sym == Keysym::BackSpace
                        && !state.shortcuts_inhibited()
                        && !state.session_lock.is_locked()
                    {
                        return FilterResult::Intercept(Intercepted::Backend(InputAction::Quit));
                    }
                    let first = Keysym::XF86_Switch_VT_1.raw();
                    if let Some(n) = sym.raw().checked_sub(first).filter(|n| *n < 12) {
                        return FilterResult::Intercept(Intercepted::Backend(
                            InputAction::SwitchVt(n as i32 + 1),
                        ));
                    }
                }
                // A client holding a shortcuts inhibitor, and the locker
                // while the session is locked, get every other key.
                if state.shortcuts_inhibited() || state.session_lock.is_locked() {
                    return FilterResult::Forward;
                }
                let Some(sym) = handle.raw_latin_sym_or_raw_current_sym() else {
                    return FilterResult::Forward;
                };
                let combo = Combo {
                    mods: Mods::from(modifiers),
                    key: lowercase(sym).raw(),
                };
                match state.config.action(&combo) {
                    Some(action) => FilterResult::Intercept(Intercepted::Binding(action.clone())),
                    None => FilterResult::Forward,
                }
            },
        );
        if pressed && intercepted.is_some() {
            self.intercepted_keys.insert(code);
        }
        match intercepted {
            Some(Intercepted::Backend(action)) => action,
            Some(Intercepted::Binding(action)) => self.run_binding(&action),
            Some(Intercepted::Release) | None => InputAction::None,
        }
    }

    /// The bounding box of all outputs, where the pointer may go.
    fn output_area(&self) -> Option<Rectangle<i32, Logical>> {
        self.outputs
            .iter()
            .filter_map(|o| self.space.output_geometry(o))
            .reduce(|a, b| a.merge(b))
    }

    /// Whether the focused surface holds an active keyboard-shortcuts inhibitor.
    fn shortcuts_inhibited(&self) -> bool {
        let Some(focus) = self.keyboard_focus_surface() else {
            return false;
        };
        self.seat
            .keyboard_shortcuts_inhibitor_for_surface(&focus)
            .is_some_and(|i| i.is_active())
    }

    /// The layer surface of `layer` under `location`, on any output.
    fn layer_surface_under(
        &self,
        layer: Layer,
        location: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        self.outputs.iter().find_map(|output| {
            let output_loc = self.space.output_geometry(output)?.loc;
            let map = layer_map_for_output(output);
            let local = location - output_loc.to_f64();
            let surface = map.layer_under(layer, local)?;
            let geo = map.layer_geometry(surface)?;
            let (s, loc) =
                surface.surface_under(local - geo.loc.to_f64(), WindowSurfaceType::ALL)?;
            Some((s, (loc + geo.loc + output_loc).to_f64()))
        })
    }

    /// What is under `location`, top to bottom: overlay and top layer
    /// surfaces, then each window from the top of the stack (its title bar,
    /// then its surfaces and popups), then bottom and background layers.
    fn hit(&self, location: Point<f64, Logical>) -> Hit {
        if self.session_lock.is_locked() {
            // Only the lock surface of the output under the pointer.
            return self
                .outputs
                .iter()
                .find_map(|o| {
                    let geo = self.space.output_geometry(o)?;
                    if !geo.to_f64().contains(location) {
                        return None;
                    }
                    let lock = self.session_lock.surface_on(o)?;
                    let (s, loc) = smithay::desktop::utils::under_from_surface_tree(
                        lock.wl_surface(),
                        location - geo.loc.to_f64(),
                        (0, 0),
                        WindowSurfaceType::ALL,
                    )?;
                    Some(Hit::Surface(s, (loc + geo.loc).to_f64()))
                })
                .unwrap_or(Hit::Nothing);
        }
        for layer in [Layer::Overlay, Layer::Top] {
            if let Some((s, loc)) = self.layer_surface_under(layer, location) {
                return Hit::Surface(s, loc);
            }
        }
        for window in self.space.elements().rev() {
            let Some(geo_loc) = self.space.element_location(window) else {
                continue;
            };
            if let Some(part) = decoration::bar_part_at(window, geo_loc, location) {
                return Hit::Bar(window.clone(), part);
            }
            let render_loc = geo_loc - window.geometry().loc;
            let under = match crate::xwayland_surface::drawn_by_heapland(window) {
                Some(surface) => smithay::desktop::utils::under_from_surface_tree(
                    &surface,
                    location - render_loc.to_f64(),
                    (0, 0),
                    WindowSurfaceType::ALL,
                ),
                None => {
                    window.surface_under(location - render_loc.to_f64(), WindowSurfaceType::ALL)
                }
            };
            if let Some((s, loc)) = under {
                return Hit::Surface(s, (loc + render_loc).to_f64());
            }
            if let Some(edges) = decoration::resize_edges_at(window, geo_loc, location) {
                return Hit::Edge(window.clone(), edges);
            }
        }
        for layer in [Layer::Bottom, Layer::Background] {
            if let Some((s, loc)) = self.layer_surface_under(layer, location) {
                return Hit::Surface(s, loc);
            }
        }
        Hit::Nothing
    }

    /// The client surface under `location` (none on a title bar or a
    /// window's border).
    fn surface_under(
        &self,
        location: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        match self.hit(location) {
            Hit::Surface(s, loc) => Some((s, loc)),
            Hit::Bar(..) | Hit::Edge(..) | Hit::Nothing => None,
        }
    }

    /// Relative motion: a locked pointer stays put and only reports the
    /// motion; otherwise the pointer moves (confined if so constrained).
    fn on_relative_motion<B: InputBackend>(&mut self, event: &B::PointerMotionEvent) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let current = pointer.current_location();
        let under = self.surface_under(current);
        let mut locked = false;
        let mut confine: Option<Rectangle<i32, Logical>> = None;
        if let Some((surface, surface_loc)) = &under {
            // The constraint is read under the surface's state lock; the
            // surface's size is read after, outside it.
            let mut confined = false;
            with_pointer_constraint(surface, &pointer, |constraint| match constraint {
                Some(c) if c.is_active() => match &*c {
                    PointerConstraint::Locked(_) => locked = true,
                    PointerConstraint::Confined(_) => confined = true,
                },
                _ => {}
            });
            if confined {
                confine = self
                    .surface_bounds(surface)
                    .map(|b| Rectangle::new(surface_loc.to_i32_round(), b));
            }
        }
        pointer.relative_motion(
            self,
            under.clone(),
            &RelativeMotionEvent {
                delta: event.delta(),
                delta_unaccel: event.delta_unaccel(),
                utime: event.time(),
            },
        );
        if locked {
            pointer.frame(self);
            return;
        }
        let mut location = current + event.delta();
        if let Some(area) = confine {
            let max = (area.loc + area.size).to_f64();
            let min = area.loc.to_f64();
            location = (
                location.x.clamp(min.x, max.x - 1.0),
                location.y.clamp(min.y, max.y - 1.0),
            )
                .into();
        }
        self.pointer_moved(location, event.time_msec());
    }

    /// The size of `surface`'s committed buffer, in logical pixels.
    fn surface_bounds(&self, surface: &WlSurface) -> Option<smithay::utils::Size<i32, Logical>> {
        with_states(surface, |states| {
            states
                .data_map
                .get::<smithay::backend::renderer::utils::RendererSurfaceStateUserData>()
                .and_then(|d| d.lock().ok().and_then(|d| d.surface_size()))
        })
    }

    fn pointer_moved(&mut self, location: Point<f64, Logical>, time: u32) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let location = match self.output_area() {
            Some(area) => {
                let max = (area.loc + area.size).to_f64();
                let min = area.loc.to_f64();
                (
                    location.x.clamp(min.x, max.x - 1.0),
                    location.y.clamp(min.y, max.y - 1.0),
                )
                    .into()
            }
            None => location,
        };
        self.pointer_seen = true;
        if pointer.is_grabbed() {
            // A window may be dragged along.
            self.queue_redraw_all();
        } else if self.backend.draws_cursor() {
            // The cursor leaves one place and shows at another.
            self.queue_redraw_at(pointer.current_location());
            self.queue_redraw_at(location);
        }
        let hit = self.hit(location);
        if !pointer.is_grabbed() {
            // Over heapland's own parts the cursor is heapland's: the
            // arrow, or the resize shape on a window's border. Over a
            // client, the client sets it when the pointer enters.
            match &hit {
                Hit::Edge(_, edges) => {
                    self.cursor_status = CursorImageStatus::Named(edges.cursor_icon());
                }
                Hit::Bar(..) | Hit::Nothing => {
                    self.cursor_status = CursorImageStatus::default_named();
                }
                Hit::Surface(..) => {}
            }
        }
        let under = match hit {
            Hit::Surface(s, loc) => Some((s, loc)),
            Hit::Bar(..) | Hit::Edge(..) | Hit::Nothing => None,
        };
        if let Some((surface, _)) = &under {
            self.activate_pointer_constraint(surface);
        }
        pointer.motion(
            self,
            under,
            &MotionEvent {
                location,
                serial: SERIAL_COUNTER.next_serial(),
                time,
            },
        );
        pointer.frame(self);
    }

    fn on_button<B: InputBackend>(&mut self, event: B::PointerButtonEvent) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        if event.state() == ButtonState::Pressed && !pointer.is_grabbed() {
            let location = pointer.current_location();
            match self.hit(location) {
                Hit::Bar(window, part) => {
                    if let Some(surface) = surface_of(&window) {
                        self.focus_surface(&surface);
                    }
                    match part {
                        BarPart::Close => Heapland::close_window(&window),
                        BarPart::Bar if event.button_code() == BTN_LEFT => {
                            // The press goes to no client: the grab takes it.
                            self.start_move_from_bar(window, location, BTN_LEFT, serial);
                        }
                        BarPart::Bar => {}
                    }
                }
                Hit::Edge(window, edges) if event.button_code() == BTN_LEFT => {
                    if let Some(surface) = surface_of(&window) {
                        self.focus_surface(&surface);
                    }
                    // The press goes to no client: the grab takes it.
                    self.start_resize_from_edge(window, edges, location, BTN_LEFT, serial);
                }
                Hit::Edge(..) => {}
                Hit::Surface(surface, _) => self.focus_clicked(&surface, serial),
                // The lock surface keeps the keyboard however one clicks.
                Hit::Nothing if self.session_lock.is_locked() => {}
                Hit::Nothing => {
                    if let Some(keyboard) = self.seat.get_keyboard() {
                        keyboard.set_focus(self, None, serial);
                    }
                }
            }
        }
        pointer.button(
            self,
            &ButtonEvent {
                button: event.button_code(),
                state: event.state(),
                serial,
                time: event.time_msec(),
            },
        );
        pointer.frame(self);
    }

    /// A click on `surface` focuses its window (raised), or its layer
    /// surface if that takes keyboard input; a click on a popup or on a
    /// layer surface without keyboard input leaves the focus where it is.
    fn focus_clicked(&mut self, surface: &WlSurface, serial: smithay::utils::Serial) {
        let mut root = surface.clone();
        while let Some(parent) = get_parent(&root) {
            root = parent;
        }
        if self.session_lock.is_locked() {
            if self.session_lock.is_lock_surface(&root) {
                if let Some(keyboard) = self.seat.get_keyboard() {
                    keyboard.set_focus(self, Some(root.into()), serial);
                }
            }
            return;
        }
        let window = self.window_of_surface(&root).cloned();
        if let Some(window) = window {
            // X11 menus and tooltips leave the focus where it is.
            if window
                .x11_surface()
                .is_some_and(|x| x.is_override_redirect())
            {
                return;
            }
            self.space.raise_element(&window, false);
            self.raise_x11(&window);
            // A layer surface holding the keyboard exclusively keeps it.
            if self.exclusive_layer().is_some() {
                return;
            }
            let target = self.keyboard_target(&root);
            if let Some(keyboard) = self.seat.get_keyboard() {
                keyboard.set_focus(self, Some(target), serial);
            }
            return;
        }
        let layer_focus = self.outputs.iter().find_map(|output| {
            let map = layer_map_for_output(output);
            let layer = map.layer_for_surface(&root, WindowSurfaceType::ALL)?;
            let interactive =
                layer.cached_state().keyboard_interactivity != KeyboardInteractivity::None;
            interactive.then(|| layer.wl_surface().clone())
        });
        let exclusive = self.exclusive_layer();
        if let (Some(focus), Some(keyboard)) = (layer_focus, self.seat.get_keyboard()) {
            if exclusive.as_ref().is_none_or(|e| e == &focus) {
                keyboard.set_focus(self, Some(focus.into()), serial);
            }
        }
    }

    fn on_axis<B: InputBackend>(&mut self, event: B::PointerAxisEvent) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let mut frame = AxisFrame::new(event.time_msec()).source(event.source());
        for axis in [Axis::Horizontal, Axis::Vertical] {
            let amount = event
                .amount(axis)
                .or_else(|| event.amount_v120(axis).map(|v| v * 15.0 / 120.0))
                .unwrap_or(0.0);
            if amount != 0.0 {
                frame = frame.value(axis, amount);
                if let Some(v120) = event.amount_v120(axis) {
                    frame = frame.v120(axis, v120 as i32);
                }
            } else if event.source() == AxisSource::Finger {
                frame = frame.stop(axis);
            }
        }
        pointer.axis(self, frame);
        pointer.frame(self);
    }
}
