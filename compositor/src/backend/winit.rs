//! Nested backend (feature `winit`): one output shown in a window of the
//! host's Wayland or X11 session, rendered with GLES.
//!
//! For a person to watch and use the compositor during development: the
//! window's keyboard and pointer input go to seat0. `--screenshot` applies to
//! the headless and drm backends; the nested test reads the X server's own
//! picture of the window instead.

use std::time::Duration;

use calloop::LoopHandle;
use smithay::{
    backend::{
        renderer::{damage::OutputDamageTracker, gles::GlesRenderer},
        winit::{self, WinitEvent},
    },
    output::{Mode as OutputMode, Output, PhysicalProperties, Scale, Subpixel},
    reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback::Kind,
    utils::{Clock, Monotonic, Transform},
    wayland::presentation::Refresh,
};
use tracing::{info, warn};

use crate::{
    backend::headless::CLEAR_COLOR,
    input::InputAction,
    scene::{self, CursorMode},
    state::Heapland,
};

/// Why the nested backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WinitError {
    #[error("cannot open a window on the host display (WAYLAND_DISPLAY/DISPLAY): {0}")]
    Init(String),
    #[error("cannot add the window's event source: {0}")]
    Loop(String),
}

const REFRESH_MHZ: i32 = 60_000;

/// Opens the window and drives rendering from its redraw events.
pub fn init(
    state: &mut Heapland,
    handle: &LoopHandle<'static, Heapland>,
) -> Result<(), WinitError> {
    let (mut backend, winit) =
        winit::init::<GlesRenderer>().map_err(|e| WinitError::Init(e.to_string()))?;
    let size = backend.window_size();
    let output = Output::new(
        "WINIT-1".into(),
        PhysicalProperties {
            size: (0, 0).into(),
            subpixel: Subpixel::Unknown,
            make: "heapland".into(),
            model: "winit".into(),
        },
    );
    let mode = OutputMode {
        size,
        refresh: REFRESH_MHZ,
    };
    output.add_mode(mode);
    output.set_preferred(mode);
    output.change_current_state(
        Some(mode),
        Some(Transform::Flipped180),
        Some(Scale::Integer(1)),
        Some((0, 0).into()),
    );
    state.add_output(&output, (0, 0).into());
    info!(
        "output {}: {}x{} in a window (winit, GLES)",
        output.name(),
        size.w,
        size.h
    );

    let mut damage_tracker = OutputDamageTracker::from_output(&output);
    let clock = Clock::<Monotonic>::new();
    let mut frames = 0u64;
    let interval = Duration::from_micros(1_000_000_000 / REFRESH_MHZ as u64);
    handle
        .insert_source(winit, move |event, _, state| match event {
            WinitEvent::Resized { size, .. } => {
                let mode = OutputMode {
                    size,
                    refresh: REFRESH_MHZ,
                };
                output.change_current_state(Some(mode), None, None, None);
                output.set_preferred(mode);
            }
            WinitEvent::Redraw => {
                let age = backend.buffer_age().unwrap_or(0);
                let damage = match backend.bind() {
                    Ok((renderer, mut fb)) => {
                        // The host draws the cursor over the window.
                        let elements =
                            scene::output_elements(state, renderer, &output, CursorMode::Hidden);
                        match damage_tracker.render_output(
                            renderer,
                            &mut fb,
                            age,
                            &elements,
                            CLEAR_COLOR,
                        ) {
                            Ok(result) => result.damage.cloned(),
                            Err(err) => {
                                warn!("rendering failed: {err:?}");
                                None
                            }
                        }
                    }
                    Err(err) => {
                        warn!("cannot bind the window: {err}");
                        None
                    }
                };
                if let Err(err) = backend.submit(damage.as_deref()) {
                    warn!("cannot present the window: {err}");
                }
                frames += 1;
                state.frame_done(&output).presented(
                    clock.now(),
                    Refresh::Fixed(interval),
                    frames,
                    Kind::empty(),
                );
                backend.window().request_redraw();
            }
            WinitEvent::CloseRequested => {
                info!("window closed: shutting down");
                state.loop_signal.stop();
            }
            WinitEvent::Input(event) => {
                let action = state.process_input_event(event);
                if action == InputAction::Quit {
                    info!("Ctrl+Alt+Backspace: shutting down");
                    state.loop_signal.stop();
                }
            }
            _ => {}
        })
        .map_err(|e| WinitError::Loop(e.to_string()))?;
    Ok(())
}
