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
        allocator::{dmabuf::Dmabuf, Format},
        renderer::{damage::OutputDamageTracker, gles::GlesRenderer, ImportDma, Renderer},
        winit::{self, WinitEvent, WinitGraphicsBackend},
    },
    output::{Mode as OutputMode, Output, PhysicalProperties, Scale, Subpixel},
    reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback::Kind,
    utils::{Clock, Monotonic, Transform},
    wayland::presentation::Refresh,
};
use tracing::{debug, info, warn};

use crate::{
    backend::{headless::CLEAR_COLOR, Backend, DrawError, DrawnFrame},
    cpu_upload::{CpuUploads, UploadingGles},
    frame_stats::Shown,
    input::InputAction,
    scene::{self, CursorMode, Scene},
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

/// The window, its GLES renderer and the one output it shows.
pub struct WinitBackend {
    backend: WinitGraphicsBackend<GlesRenderer>,
    output: Output,
    damage_tracker: OutputDamageTracker,
    clock: Clock<Monotonic>,
    frames: u64,
    /// What the window's EGL display imports.
    formats: Vec<Format>,
    /// Client dma-bufs drawn through a copy.
    uploads: CpuUploads,
}

impl WinitBackend {
    /// Opens the window; its events queue redraws and feed seat0.
    pub fn new(handle: &LoopHandle<'static, Heapland>) -> Result<Self, WinitError> {
        let (mut backend, winit) =
            winit::init::<GlesRenderer>().map_err(|e| WinitError::Init(e.to_string()))?;
        let formats = backend.renderer().dmabuf_formats().into_iter().collect();
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
        handle
            .insert_source(winit, |event, _, state| on_event(state, event))
            .map_err(|e| WinitError::Loop(e.to_string()))?;
        Ok(WinitBackend {
            damage_tracker: OutputDamageTracker::from_output(&output),
            backend,
            output,
            clock: Clock::new(),
            frames: 0,
            formats,
            uploads: CpuUploads::default(),
        })
    }

    /// The window's renderer, drawing read-only client dma-bufs through a
    /// copy where its GL cannot sample them.
    pub fn renderer(&mut self) -> UploadingGles<'_> {
        UploadingGles::new(self.backend.renderer(), &self.uploads)
    }

    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        crate::renderer::import_for_gles(self.backend.renderer(), &mut self.uploads, dmabuf, None)
    }

    pub fn cleanup_texture_cache(&mut self) {
        self.uploads.cleanup();
        if let Err(err) = self.backend.renderer().cleanup_texture_cache() {
            debug!("renderer cleanup: {err}");
        }
    }

    pub fn dmabuf_formats(&self) -> Vec<Format> {
        self.formats.clone()
    }

    /// Renders the window's output and presents it.
    pub fn draw(&mut self, output: &Output, scene: &Scene<'_>) -> Result<DrawnFrame, DrawError> {
        let refresh = Duration::from_micros(1_000_000_000 / REFRESH_MHZ as u64);
        if output != &self.output {
            return Err(DrawError::Failed { refresh });
        }
        let age = self.backend.buffer_age().unwrap_or(0);
        let (damage, states) = match self.backend.bind() {
            Ok((renderer, mut fb)) => {
                let renderer = &mut UploadingGles::new(renderer, &self.uploads);
                // The host draws the cursor over the window.
                let elements = scene::output_elements(scene, renderer, output, CursorMode::Hidden);
                match self.damage_tracker.render_output(
                    renderer,
                    &mut fb,
                    age,
                    &elements,
                    CLEAR_COLOR,
                ) {
                    Ok(result) => (result.damage.cloned(), result.states),
                    Err(err) => {
                        warn!("rendering failed: {err:?}");
                        return Err(DrawError::Failed { refresh });
                    }
                }
            }
            Err(err) => {
                warn!("cannot bind the window: {err}");
                return Err(DrawError::Failed { refresh });
            }
        };
        let damaged = damage.as_ref().is_some_and(|d| !d.is_empty());
        if damaged {
            if let Err(err) = self.backend.submit(damage.as_deref()) {
                warn!("cannot present the window: {err}");
            }
        }
        self.frames += 1;
        scene.update_primary_scanout_output(output, &states);
        scene.frame_done(output, Some(&states)).presented(
            self.clock.now(),
            Refresh::Fixed(refresh),
            self.frames,
            Kind::empty(),
        );
        Ok(DrawnFrame {
            damaged,
            shown: Shown::Composited,
            awaits_vblank: false,
            refresh,
            states,
            screenshot_written: false,
            retry: false,
        })
    }
}

/// Announces the window's output.
pub fn start(state: &mut Heapland) {
    let Backend::Winit(backend) = &state.backend else {
        return;
    };
    let output = backend.output.clone();
    let size = backend.backend.window_size();
    state.add_output(&output, (0, 0).into());
    info!(
        "output {}: {}x{} in a window (winit, GLES)",
        output.name(),
        size.w,
        size.h
    );
}

fn on_event(state: &mut Heapland, event: WinitEvent) {
    match event {
        WinitEvent::Resized { size, .. } => {
            let Backend::Winit(backend) = &state.backend else {
                return;
            };
            let output = backend.output.clone();
            let mode = OutputMode {
                size,
                refresh: REFRESH_MHZ,
            };
            // The window's size is the output's only mode.
            let old = output.current_mode();
            output.change_current_state(Some(mode), None, None, None);
            output.set_preferred(mode);
            if let Some(old) = old.filter(|o| *o != mode) {
                output.delete_mode(old);
            }
            state.queue_redraw(&output);
            state.outputs_resized();
            state.output_configuration_changed();
        }
        // The host asks for the window's content (exposed, or shown again).
        WinitEvent::Redraw => state.queue_redraw_all(),
        WinitEvent::CloseRequested => {
            info!("window closed: shutting down");
            state.loop_signal.stop();
        }
        WinitEvent::Input(event) => {
            let action = state.process_input_event(event);
            if action == InputAction::Quit {
                info!("quit key: shutting down");
                state.loop_signal.stop();
            }
        }
        _ => {}
    }
}
