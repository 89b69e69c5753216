//! Input from a backend (libinput on drm) delivered to seat0: keys to the
//! focused window, the pointer to the window under it, a click focuses and
//! raises. The compositor's own bindings are Ctrl+Alt+Backspace (quit) and
//! Ctrl+Alt+F1..F12 (switch VT), which the backend carries out.

use smithay::{
    backend::input::{
        AbsolutePositionEvent, Axis, AxisSource, ButtonState, Event, InputBackend, InputEvent,
        KeyboardKeyEvent, PointerAxisEvent, PointerButtonEvent, PointerMotionEvent,
    },
    desktop::WindowSurfaceType,
    input::{
        keyboard::{FilterResult, Keysym},
        pointer::{AxisFrame, ButtonEvent, MotionEvent},
    },
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Point, Rectangle, SERIAL_COUNTER},
};

use crate::state::Heapland;

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
        match event {
            InputEvent::Keyboard { event } => return self.on_key::<B>(event),
            InputEvent::PointerMotion { event } => {
                let location = self.pointer_location() + event.delta();
                self.pointer_moved(location, event.time_msec());
            }
            InputEvent::PointerMotionAbsolute { event } => {
                if let Some(area) = self.output_area() {
                    let location = event.position_transformed(area.size) + area.loc.to_f64();
                    self.pointer_moved(location, event.time_msec());
                }
            }
            InputEvent::PointerButton { event } => self.on_button::<B>(event),
            InputEvent::PointerAxis { event } => self.on_axis::<B>(event),
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
        keyboard
            .input::<InputAction, _>(
                self,
                event.key_code(),
                event.state(),
                serial,
                event.time_msec(),
                |_, modifiers, handle| {
                    if !(pressed && modifiers.ctrl && modifiers.alt) {
                        return FilterResult::Forward;
                    }
                    let sym = handle.modified_sym();
                    if sym == Keysym::BackSpace {
                        return FilterResult::Intercept(InputAction::Quit);
                    }
                    let first = Keysym::XF86_Switch_VT_1.raw();
                    match sym.raw().checked_sub(first) {
                        Some(n) if n < 12 => {
                            FilterResult::Intercept(InputAction::SwitchVt(n as i32 + 1))
                        }
                        _ => FilterResult::Forward,
                    }
                },
            )
            .unwrap_or(InputAction::None)
    }

    fn pointer_location(&self) -> Point<f64, Logical> {
        self.seat
            .get_pointer()
            .map(|p| p.current_location())
            .unwrap_or_default()
    }

    /// The bounding box of all outputs, where the pointer may go.
    fn output_area(&self) -> Option<Rectangle<i32, Logical>> {
        self.outputs
            .iter()
            .filter_map(|o| self.space.output_geometry(o))
            .reduce(|a, b| a.merge(b))
    }

    fn surface_under(
        &self,
        location: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        let (window, window_loc) = self.space.element_under(location)?;
        let (surface, surface_loc) =
            window.surface_under(location - window_loc.to_f64(), WindowSurfaceType::ALL)?;
        Some((surface, (surface_loc + window_loc).to_f64()))
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
        let under = self.surface_under(location);
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
        if event.state() == ButtonState::Pressed {
            let location = pointer.current_location();
            let window = self.space.element_under(location).map(|(w, _)| w.clone());
            if let Some(window) = &window {
                self.space.raise_element(window, true);
            }
            let focus = window.and_then(|w| w.toplevel().map(|t| t.wl_surface().clone()));
            if let Some(keyboard) = self.seat.get_keyboard() {
                keyboard.set_focus(self, focus, serial);
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
