//! When an output draws: one state machine per output, the same on every
//! backend.
//!
//! An output draws only when something on it changed: a client committed,
//! the pointer moved over it, a window came or went. Nothing changed means
//! no timer, no vblank event and no frame callback, so an idle desktop does
//! not wake the CPU. Changes are coalesced: however many commits arrive
//! during one turn of the event loop, the output draws once at its end
//! ([`crate::state::Heapland::redraw_queued_outputs`]), and once per refresh
//! at most: a change that arrives while a frame is on its way to the screen
//! waits for it.
//!
//! ```text
//!          queue                   draw: frame queued to KMS
//!   Idle ─────────▶ Queued ─────────────────────────────────▶ WaitingForVBlank
//!    ▲                │  draw: nothing new, no display,               │ its vblank
//!    │                ▼  or drawing failed                            │
//!    └──── WaitingForEstimatedVBlank (a timer of one refresh)         │
//!             ends in Queued if queued meanwhile, else Idle ◀─────────┘
//! ```
//!
//! The estimated vblank stands in for a page flip that did not happen:
//! a client that commits without damage, or a headless or nested output,
//! still gets its frame callbacks paced at the refresh rate. Only the
//! session being paused leaves an output Idle without a frame; activation
//! queues it again.

use calloop::RegistrationToken;

/// Where an output is in its frame cycle.
#[derive(Debug, Default)]
pub enum RedrawState {
    /// Nothing to draw, nothing pending.
    #[default]
    Idle,
    /// To be drawn at the end of this turn of the event loop.
    Queued,
    /// A frame is queued to the display; `queued` says whether to draw
    /// again as soon as it is shown.
    WaitingForVBlank { queued: bool },
    /// Nothing went to the display (no damage, or a backend without page
    /// flips); a timer of one refresh ends the cycle.
    WaitingForEstimatedVBlank {
        timer: RegistrationToken,
        queued: bool,
    },
}

impl RedrawState {
    /// Something on the output changed.
    pub fn queue(&mut self) {
        match self {
            RedrawState::Idle => *self = RedrawState::Queued,
            RedrawState::Queued => {}
            RedrawState::WaitingForVBlank { queued }
            | RedrawState::WaitingForEstimatedVBlank { queued, .. } => *queued = true,
        }
    }

    /// Whether the output is to be drawn now.
    pub fn is_queued(&self) -> bool {
        matches!(self, RedrawState::Queued)
    }

    /// The page flip of the frame queued to the display completed: draws
    /// again if something changed meanwhile, else goes idle. Returns false
    /// (and changes nothing) when no frame was waiting for it.
    pub fn vblank(&mut self) -> bool {
        let RedrawState::WaitingForVBlank { queued } = *self else {
            return false;
        };
        *self = if queued {
            RedrawState::Queued
        } else {
            RedrawState::Idle
        };
        true
    }

    /// The estimated vblank timer `fired` ended its cycle, if it is still the
    /// one this state waits for.
    pub fn estimated_vblank(&mut self, fired: RegistrationToken) {
        if let RedrawState::WaitingForEstimatedVBlank { timer, queued } = *self {
            if timer == fired {
                *self = if queued {
                    RedrawState::Queued
                } else {
                    RedrawState::Idle
                };
            }
        }
    }

    /// The timer this state holds, to be removed from the event loop when
    /// the output goes away or the cycle is cut short.
    pub fn timer(&self) -> Option<RegistrationToken> {
        match self {
            RedrawState::WaitingForEstimatedVBlank { timer, .. } => Some(*timer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_during_a_frame_are_drawn_once_after_it() {
        let mut s = RedrawState::Idle;
        s.queue();
        assert!(s.is_queued());
        s = RedrawState::WaitingForVBlank { queued: false };
        s.queue();
        s.queue();
        assert!(!s.is_queued(), "nothing is drawn before the vblank");
        assert!(s.vblank());
        assert!(s.is_queued());
    }

    #[test]
    fn a_frame_with_nothing_new_after_it_ends_idle() {
        let mut s = RedrawState::WaitingForVBlank { queued: false };
        assert!(s.vblank());
        assert!(matches!(s, RedrawState::Idle));
        assert!(s.timer().is_none());
    }

    #[test]
    fn a_vblank_nobody_waits_for_changes_nothing() {
        let mut s = RedrawState::Queued;
        assert!(!s.vblank());
        assert!(s.is_queued());
    }
}

mod queue {
    use std::{cell::Cell, rc::Rc, time::Duration};

    use calloop::{
        timer::{TimeoutAction, Timer},
        RegistrationToken,
    };
    use smithay::{
        desktop::{find_popup_root_surface, layer_map_for_output, WindowSurfaceType},
        output::Output,
        reexports::wayland_server::protocol::wl_surface::WlSurface,
        utils::{Logical, Point},
        wayland::compositor::get_parent,
    };
    use tracing::{debug, warn};

    use super::RedrawState;
    use crate::{backend::DrawError, feedback, screenshot::ScreenshotRequest, state::Heapland};

    impl Heapland {
        /// Something on `output` changed.
        pub fn queue_redraw(&mut self, output: &Output) {
            if let Some(state) = self.redraw_states.get_mut(output) {
                state.queue();
            }
        }

        /// Something on every output changed (focus, the drawn cursor, an
        /// output gone).
        pub fn queue_redraw_all(&mut self) {
            for state in self.redraw_states.values_mut() {
                state.queue();
            }
        }

        /// The outputs showing the point `location` of the global space.
        pub fn queue_redraw_at(&mut self, location: Point<f64, Logical>) {
            let at: Vec<Output> = self
                .outputs
                .iter()
                .filter(|o| {
                    self.space
                        .output_geometry(o)
                        .is_some_and(|g| g.to_f64().contains(location))
                })
                .cloned()
                .collect();
            for output in at {
                self.queue_redraw(&output);
            }
        }

        /// `surface` committed (called once the commit is applied): redraws
        /// the outputs its window or layer surface is on, where it was at
        /// the last redraw and where it is now. A surface shown nowhere
        /// redraws nothing.
        pub fn queue_redraw_for_surface(&mut self, surface: &WlSurface) {
            let mut root = surface.clone();
            while let Some(parent) = get_parent(&root) {
                root = parent;
            }
            if let Some(popup) = self.popups.find_popup(&root) {
                if let Ok(parent) = find_popup_root_surface(&popup) {
                    root = parent;
                }
            }
            let mut touched: Vec<Output> = Vec::new();
            let window = self.window_of_surface(&root).cloned();
            if let Some(window) = window {
                touched.extend(self.space.outputs_for_element(&window));
                if let Some(bbox) = self.space.element_bbox(&window) {
                    touched.extend(
                        self.outputs
                            .iter()
                            .filter(|o| {
                                self.space
                                    .output_geometry(o)
                                    .is_some_and(|g| g.overlaps(bbox))
                            })
                            .cloned(),
                    );
                }
            } else if let Some(output) = self.outputs.iter().find(|o| {
                layer_map_for_output(o)
                    .layer_for_surface(&root, WindowSurfaceType::TOPLEVEL)
                    .is_some()
            }) {
                touched.push(output.clone());
            } else if let Some(output) = self.session_lock.output_of(&root) {
                touched.push(output);
            } else if matches!(
                &self.cursor_status,
                smithay::input::pointer::CursorImageStatus::Surface(s) if s == &root
            ) && self.backend.draws_cursor()
            {
                touched.extend(self.outputs.iter().cloned());
            }
            for output in touched {
                self.queue_redraw(&output);
            }
        }

        /// Draws every output whose redraw is queued; called once at the
        /// end of each turn of the event loop. Then lets the renderer drop
        /// what it holds of client buffers and surfaces destroyed during the
        /// turn.
        pub fn redraw_queued_outputs(&mut self) {
            let cleanup = std::mem::take(&mut self.cleanup_queued);
            let queued: Vec<Output> = self
                .outputs
                .iter()
                .filter(|o| {
                    !self.output_power.is_off(o)
                        && self
                            .redraw_states
                            .get(o)
                            .is_some_and(RedrawState::is_queued)
                })
                .cloned()
                .collect();
            for output in queued {
                self.redraw(&output);
            }
            // After drawing: GLES destroys the textures dropped meanwhile only
            // when cleaning up, and an idle output draws no frame that would.
            if cleanup {
                self.backend.cleanup_texture_cache();
            }
            self.finish_screencopies();
            self.finish_image_copies();
        }

        /// The one frame function of every backend: the backend draws the
        /// scene (elements, damage, render, screenshot, frame callbacks,
        /// presentation feedback); then the frame is counted, scanout
        /// decisions reach the surfaces' feedback, and the frame cycle
        /// goes on.
        fn redraw(&mut self, output: &Output) {
            let target = self
                .screenshot
                .clone()
                .filter(|_| self.outputs.first() == Some(output));
            let request = target.as_ref().map(|t| ScreenshotRequest {
                path: &t.path,
                requested: self.screenshot_requested,
                every_frame: t.every_frame,
            });
            let (backend, scene) = self.split_for_frame();
            let drawn = backend.draw(output, &scene, request.as_ref());
            let frame = match drawn {
                Ok(frame) => frame,
                Err(DrawError::Inactive) => {
                    // Another session has the display: activation queues
                    // every output again.
                    if let Some(state) = self.redraw_states.get_mut(output) {
                        *state = RedrawState::Idle;
                    }
                    return;
                }
                Err(DrawError::Failed { refresh }) => {
                    // Clients waiting for a frame callback go on; the next
                    // change tries again.
                    drop(scene.frame_done(output, None));
                    self.start_estimated_vblank(output, refresh, false);
                    return;
                }
            };
            self.lock_frame_drawn(output);
            if frame.screenshot_written {
                self.screenshot_requested = false;
            }
            if frame.damaged {
                self.frame_stats.frame(frame.shown);
                self.screencopy.output_damaged(output);
                self.image_copy_capture.output_damaged(output);
            }
            if self.scanout_plan.is_some() {
                let decisions = feedback::scanout_decisions(self, output, &frame.states);
                for (surface, scanout) in decisions {
                    feedback::scanout_decided(self, &surface, scanout);
                }
            }
            if frame.awaits_vblank {
                if let Some(state) = self.redraw_states.get_mut(output) {
                    *state = RedrawState::WaitingForVBlank { queued: false };
                }
            } else {
                self.start_estimated_vblank(output, frame.refresh, frame.retry);
            }
        }

        /// Ends the frame cycle of `output` one `refresh` from now; with
        /// `queued`, it draws again then.
        fn start_estimated_vblank(&mut self, output: &Output, refresh: Duration, queued: bool) {
            let o = output.clone();
            // The timer learns its own token once inserted, to end only the
            // cycle it was started for.
            let own: Rc<Cell<Option<RegistrationToken>>> = Rc::default();
            let own_in_timer = own.clone();
            let timer = self.loop_handle.insert_source(
                Timer::from_duration(refresh),
                move |_, _, state| {
                    if let (Some(s), Some(token)) =
                        (state.redraw_states.get_mut(&o), own_in_timer.get())
                    {
                        s.estimated_vblank(token);
                    }
                    TimeoutAction::Drop
                },
            );
            if let Ok(token) = &timer {
                own.set(Some(*token));
            }
            let next = match timer {
                Ok(timer) => RedrawState::WaitingForEstimatedVBlank { timer, queued },
                Err(err) => {
                    warn!("cannot start the frame timer of {}: {err}", output.name());
                    RedrawState::Idle
                }
            };
            if let Some(state) = self.redraw_states.get_mut(output) {
                if let Some(old) = state.timer() {
                    self.loop_handle.remove(old);
                }
                *state = next;
            }
        }

        /// The page flip of `output`'s frame completed: the frame is on
        /// screen.
        pub fn vblank(&mut self, output: &Output) {
            if let Some(state) = self.redraw_states.get_mut(output) {
                if !state.vblank() {
                    debug!(output = %output.name(), "a page flip nothing waited for");
                }
            }
            self.output_flip_done(output);
        }

        /// `output` was turned off: its frame cycle ends where it is, and
        /// nothing draws it until it is turned on (`restart_frame_cycle`).
        pub fn stop_frame_cycle(&mut self, output: &Output) {
            if let Some(state) = self.redraw_states.get_mut(output) {
                if let Some(timer) = state.timer() {
                    self.loop_handle.remove(timer);
                }
                *state = RedrawState::Idle;
            }
        }

        /// The display is ours again after another session had it: draws
        /// `output` anew, after the page flip still on its way if any.
        pub fn restart_frame_cycle(&mut self, output: &Output) {
            if let Some(state) = self.redraw_states.get_mut(output) {
                if let RedrawState::WaitingForVBlank { .. } = state {
                    state.queue();
                    return;
                }
                if let Some(timer) = state.timer() {
                    self.loop_handle.remove(timer);
                }
                *state = RedrawState::Queued;
            }
        }
    }
}
