//! Moving a window with the pointer: started by a client's
//! `xdg_toplevel.move` (client-side decorations) or by a press on a title
//! bar the compositor draws; ends when every button is released.

use smithay::{
    desktop::Window,
    input::{
        pointer::{
            AxisFrame, ButtonEvent, GestureHoldBeginEvent, GestureHoldEndEvent,
            GesturePinchBeginEvent, GesturePinchEndEvent, GesturePinchUpdateEvent,
            GestureSwipeBeginEvent, GestureSwipeEndEvent, GestureSwipeUpdateEvent, GrabStartData,
            MotionEvent, PointerGrab, PointerInnerHandle, RelativeMotionEvent,
        },
        SeatHandler,
    },
    utils::{Logical, Point},
};

use crate::state::Heapland;

/// The pointer events a grab that moves or resizes a window passes on
/// as they come (no client has pointer focus meanwhile): relative motion,
/// axis, frame and gestures. `motion`, `button`, `start_data` and `unset`
/// are each grab's own.
macro_rules! forward_other_pointer_events {
    () => {
        fn relative_motion(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            _focus: Focus,
            event: &RelativeMotionEvent,
        ) {
            handle.relative_motion(data, None, event);
        }

        fn axis(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            details: AxisFrame,
        ) {
            handle.axis(data, details);
        }

        fn frame(&mut self, data: &mut Heapland, handle: &mut PointerInnerHandle<'_, Heapland>) {
            handle.frame(data);
        }

        fn gesture_swipe_begin(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GestureSwipeBeginEvent,
        ) {
            handle.gesture_swipe_begin(data, event);
        }

        fn gesture_swipe_update(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GestureSwipeUpdateEvent,
        ) {
            handle.gesture_swipe_update(data, event);
        }

        fn gesture_swipe_end(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GestureSwipeEndEvent,
        ) {
            handle.gesture_swipe_end(data, event);
        }

        fn gesture_pinch_begin(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GesturePinchBeginEvent,
        ) {
            handle.gesture_pinch_begin(data, event);
        }

        fn gesture_pinch_update(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GesturePinchUpdateEvent,
        ) {
            handle.gesture_pinch_update(data, event);
        }

        fn gesture_pinch_end(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GesturePinchEndEvent,
        ) {
            handle.gesture_pinch_end(data, event);
        }

        fn gesture_hold_begin(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GestureHoldBeginEvent,
        ) {
            handle.gesture_hold_begin(data, event);
        }

        fn gesture_hold_end(
            &mut self,
            data: &mut Heapland,
            handle: &mut PointerInnerHandle<'_, Heapland>,
            event: &GestureHoldEndEvent,
        ) {
            handle.gesture_hold_end(data, event);
        }
    };
}
pub(crate) use forward_other_pointer_events;

pub struct MoveGrab {
    pub start_data: GrabStartData<Heapland>,
    pub window: Window,
    /// Where the window was when the grab started.
    pub initial_location: Point<i32, Logical>,
}

type Focus = Option<(<Heapland as SeatHandler>::PointerFocus, Point<f64, Logical>)>;

impl PointerGrab<Heapland> for MoveGrab {
    fn motion(
        &mut self,
        data: &mut Heapland,
        handle: &mut PointerInnerHandle<'_, Heapland>,
        _focus: Focus,
        event: &MotionEvent,
    ) {
        // No client gets pointer focus while a window moves.
        handle.motion(data, None, event);
        if data.space.element_location(&self.window).is_none() {
            // The window left the screen (an X11 window withdrew): the
            // drag does not bring it back.
            handle.unset_grab(self, data, event.serial, event.time, true);
            return;
        }
        let delta = event.location - self.start_data.location;
        let location = self.initial_location.to_f64() + delta;
        data.space
            .map_element(self.window.clone(), location.to_i32_round(), false);
        data.x11_moved(&self.window);
    }

    fn button(
        &mut self,
        data: &mut Heapland,
        handle: &mut PointerInnerHandle<'_, Heapland>,
        event: &ButtonEvent,
    ) {
        handle.button(data, event);
        if handle.current_pressed().is_empty() {
            handle.unset_grab(self, data, event.serial, event.time, true);
        }
    }

    forward_other_pointer_events!();

    fn start_data(&self) -> &GrabStartData<Heapland> {
        &self.start_data
    }

    fn unset(&mut self, _data: &mut Heapland) {}
}
