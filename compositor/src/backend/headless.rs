//! Headless backend: virtual outputs rendered on the CPU with pixman when
//! something on them changes, at most at the refresh rate of their mode.
//!
//! Each output renders into one buffer of its own (nothing scans it out, so
//! no double buffering is needed). That buffer comes from a DMA-BUF heap when
//! the machine has one, else from ordinary memory, said once in the log.

use std::time::Duration;

use heapland_allocator::{buffer_name, explain_choice, Discovery};
use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, Allocator, Buffer, Format, Fourcc, Modifier},
        renderer::{
            damage::OutputDamageTracker,
            pixman::{PixmanError, PixmanRenderer, PixmanTarget},
            Bind, ExportMem, ImportDma, Offscreen, Renderer,
        },
    },
    output::{Mode as OutputMode, Output, PhysicalProperties, Scale, Subpixel},
    reexports::{
        pixman::Image,
        wayland_protocols::wp::presentation_time::server::wp_presentation_feedback::Kind,
    },
    utils::{Clock, Monotonic, Rectangle, Transform},
    wayland::presentation::Refresh,
};
use tracing::{debug, info, warn};

use crate::{
    backend::{DrawError, DrawnFrame},
    cli::{Cli, OutputMode as CliMode},
    frame_stats::{self, Shown},
    heaps::HeapDirectory,
    scene::{self, CursorMode, Scene},
    screenshot::{write_xrgb8888_png, ScreenshotRequest},
    state::Heapland,
};

/// Background colour of the outputs (dark slate), easy to tell from any
/// client's pixels in screenshots.
pub const CLEAR_COLOR: [f32; 4] = [0.10, 0.12, 0.16, 1.0];

/// Why the headless backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error("cannot create the pixman renderer: {0}")]
    Renderer(#[source] PixmanError),
    #[error("cannot allocate a {width}x{height} output buffer: {source}")]
    Buffer {
        width: u32,
        height: u32,
        #[source]
        source: PixmanError,
    },
}

/// Where an output's pixels live.
enum OutputBuffer {
    /// A dma-buf from a DMA-BUF heap (the normal case where heaps exist).
    Heap(Dmabuf),
    /// Ordinary memory, when the machine has no heap.
    Memory(Image<'static, 'static>),
}

impl OutputBuffer {
    fn bind<'a>(
        &'a mut self,
        renderer: &mut PixmanRenderer,
    ) -> Result<PixmanTarget<'a>, PixmanError> {
        match self {
            OutputBuffer::Heap(dmabuf) => renderer.bind(dmabuf),
            OutputBuffer::Memory(image) => renderer.bind(image),
        }
    }
}

/// Allocates an output buffer from a heap, else from memory.
///
/// The buffer is touched by the CPU only (pixman), so no device constrains
/// the heap: the choice is the most general heap that holds it.
fn allocate_output_buffer(
    heaps: Option<&Discovery>,
    renderer: &mut PixmanRenderer,
    name: &str,
    mode: &CliMode,
) -> Result<OutputBuffer, HeadlessError> {
    if let Some(discovery) = heaps {
        let (w, h) = (mode.width, mode.height);
        let allocated = || -> Result<(Dmabuf, String), Box<dyn std::error::Error>> {
            let choice = explain_choice(discovery, &[], &[], Fourcc::Xrgb8888, w, h)?;
            let mut allocator = choice.allocator()?;
            let dmabuf = allocator.create_buffer(w, h, Fourcc::Xrgb8888, &[Modifier::Linear])?;
            // Named for its output, so it can be told apart in
            // /sys/kernel/debug/dma_buf/bufinfo.
            if let Some(fd) = dmabuf.handles().next() {
                if let Err(err) = buffer_name::set_name(fd, &format!("heapland-{name}")) {
                    debug!("cannot name the output dma-buf: {err}");
                }
            }
            Ok((dmabuf, allocator.heap().name().to_owned()))
        };
        match allocated() {
            Ok((dmabuf, heap)) => {
                frame_stats::buffer_allocated();
                info!(
                    "output {name}: {}x{} XRGB8888 buffer from DMA-BUF heap {heap}",
                    dmabuf.width(),
                    dmabuf.height()
                );
                return Ok(OutputBuffer::Heap(dmabuf));
            }
            Err(err) => {
                warn!("output {name}: heap allocation failed ({err}); using ordinary memory")
            }
        }
    }
    let image = renderer
        .create_buffer(
            Fourcc::Xrgb8888,
            (mode.width as i32, mode.height as i32).into(),
        )
        .map_err(|source| HeadlessError::Buffer {
            width: mode.width,
            height: mode.height,
            source,
        })?;
    frame_stats::buffer_allocated();
    Ok(OutputBuffer::Memory(image))
}

/// One virtual output and its render target.
struct HeadlessOutput {
    output: Output,
    mode: CliMode,
    buffer: OutputBuffer,
    damage_tracker: OutputDamageTracker,
    frames: u64,
}

/// Virtual outputs and the pixman renderer that draws them.
pub struct HeadlessBackend {
    renderer: PixmanRenderer,
    /// The heaps output buffers come from (`None`: ordinary memory).
    heaps: Option<Discovery>,
    outputs: Vec<HeadlessOutput>,
    clock: Clock<Monotonic>,
}

impl HeadlessBackend {
    /// Creates the outputs (published by [`start`]) and their buffers.
    pub fn new(cli: &Cli, heaps: &HeapDirectory) -> Result<Self, HeadlessError> {
        let mut renderer = PixmanRenderer::new().map_err(HeadlessError::Renderer)?;
        let modes = if cli.outputs.is_empty() {
            vec![CliMode::default()]
        } else {
            cli.outputs.clone()
        };

        let heaps = match heaps.discovery().empty_reason() {
            None => Some(heaps.discovery().clone()),
            Some(reason) => {
                info!("output buffers: no DMA-BUF heap ({reason}); rendering into ordinary memory");
                None
            }
        };

        let mut outputs = Vec::new();
        for (i, mode) in modes.iter().enumerate() {
            let (w, h) = (mode.width as i32, mode.height as i32);
            let output = Output::new(
                format!("HEADLESS-{}", i + 1),
                PhysicalProperties {
                    size: (0, 0).into(),
                    subpixel: Subpixel::Unknown,
                    make: "heapland".into(),
                    model: "headless".into(),
                },
            );
            let wl_mode = OutputMode {
                size: (w, h).into(),
                refresh: (mode.refresh_hz * 1000) as i32,
            };
            output.add_mode(wl_mode);
            output.set_preferred(wl_mode);
            output.change_current_state(
                Some(wl_mode),
                Some(Transform::Normal),
                Some(Scale::Integer(1)),
                None,
            );
            let buffer =
                allocate_output_buffer(heaps.as_ref(), &mut renderer, &output.name(), mode)?;
            outputs.push(HeadlessOutput {
                damage_tracker: OutputDamageTracker::from_output(&output),
                output,
                mode: *mode,
                buffer,
                frames: 0,
            });
        }
        Ok(HeadlessBackend {
            renderer,
            heaps,
            outputs,
            clock: Clock::new(),
        })
    }

    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        self.renderer
            .import_dmabuf(dmabuf, None)
            .map(drop)
            .map_err(|e| format!("the renderer cannot import it: {e}"))
    }

    /// A virtual output takes any mode: a new buffer of its size, drawn
    /// whole at its first frame.
    pub fn set_mode(&mut self, output: &Output, mode: OutputMode) -> Result<(), String> {
        let Some(out) = self.outputs.iter_mut().find(|o| &o.output == output) else {
            return Err("not a headless output".into());
        };
        let cli_mode = CliMode {
            width: mode.size.w as u32,
            height: mode.size.h as u32,
            refresh_hz: (mode.refresh as u32).div_ceil(1000).max(1),
        };
        let buffer = allocate_output_buffer(
            self.heaps.as_ref(),
            &mut self.renderer,
            &output.name(),
            &cli_mode,
        )
        .map_err(|e| e.to_string())?;
        out.buffer = buffer;
        out.mode = cli_mode;
        out.frames = 0;
        Ok(())
    }

    pub fn renderer(&mut self) -> &mut PixmanRenderer {
        &mut self.renderer
    }

    pub fn cleanup_texture_cache(&mut self) {
        if let Err(err) = self.renderer.cleanup_texture_cache() {
            debug!("renderer cleanup: {err}");
        }
    }

    pub fn dmabuf_formats(&self) -> Vec<Format> {
        crate::feedback::cpu_formats()
            .into_iter()
            .filter(|f| self.renderer.dmabuf_formats().contains(f))
            .collect()
    }

    /// Renders one frame of `output`, writes the screenshot when asked,
    /// then sends frame callbacks and presentation feedback: nothing scans
    /// the buffer out, so the frame is presented once it is complete.
    pub fn draw(
        &mut self,
        output: &Output,
        scene: &Scene<'_>,
        screenshot: Option<&ScreenshotRequest<'_>>,
    ) -> Result<DrawnFrame, DrawError> {
        let renderer = &mut self.renderer;
        let Some(out) = self.outputs.iter_mut().find(|o| &o.output == output) else {
            return Err(DrawError::Failed {
                refresh: Duration::from_secs(1),
            });
        };
        let refresh = Duration::from_nanos(1_000_000_000 / u64::from(out.mode.refresh_hz));
        let age = usize::from(out.frames > 0);
        let elements = scene::output_elements(scene, renderer, &out.output, CursorMode::Hidden);
        let mut fb = match out.buffer.bind(renderer) {
            Ok(fb) => fb,
            Err(err) => {
                warn!("cannot bind the output buffer: {err}");
                return Err(DrawError::Failed { refresh });
            }
        };
        let (damaged, states) =
            match out
                .damage_tracker
                .render_output(renderer, &mut fb, age, &elements, CLEAR_COLOR)
            {
                Ok(result) => (result.damage.is_some_and(|d| !d.is_empty()), result.states),
                Err(err) => {
                    warn!("rendering {} failed: {err:?}", out.output.name());
                    return Err(DrawError::Failed { refresh });
                }
            };

        let mut screenshot_written = false;
        if let Some(request) = screenshot.filter(|r| r.wanted(damaged, out.frames == 0)) {
            let (w, h) = (out.mode.width as i32, out.mode.height as i32);
            let region = Rectangle::from_size((w, h).into());
            match renderer
                .copy_framebuffer(&fb, region, Fourcc::Xrgb8888)
                .and_then(|mapping| {
                    let data = renderer.map_texture(&mapping)?;
                    Ok(write_xrgb8888_png(
                        request.path,
                        w as u32,
                        h as u32,
                        w as usize * 4,
                        data,
                    ))
                }) {
                Ok(Ok(())) => debug!("screenshot written to {}", request.path.display()),
                Ok(Err(err)) => warn!("screenshot: {err}"),
                Err(err) => warn!("screenshot: cannot read the output back: {err}"),
            }
            screenshot_written = true;
        }
        drop(fb);
        out.frames += 1;

        scene.update_primary_scanout_output(output, &states);
        let mut presentation = scene.frame_done(output, Some(&states));
        presentation.presented(
            self.clock.now(),
            Refresh::Fixed(refresh),
            out.frames,
            Kind::empty(),
        );
        if damaged {
            debug!(output = %output.name(), frame = out.frames, "rendered");
        }
        Ok(DrawnFrame {
            damaged,
            shown: Shown::Composited,
            awaits_vblank: false,
            refresh,
            states,
            screenshot_written,
            retry: false,
        })
    }
}

/// Announces the outputs side by side, each to be drawn once.
pub fn start(state: &mut Heapland) {
    let crate::backend::Backend::Headless(backend) = &state.backend else {
        return;
    };
    let outputs: Vec<(Output, CliMode)> = backend
        .outputs
        .iter()
        .map(|o| (o.output.clone(), o.mode))
        .collect();
    let mut x = 0i32;
    for (output, mode) in outputs {
        output.change_current_state(None, None, None, Some((x, 0).into()));
        state.add_output(&output, (x, 0).into());
        info!(
            "output {}: {}x{}@{}Hz at x={x}",
            output.name(),
            mode.width,
            mode.height,
            mode.refresh_hz,
        );
        x += mode.width as i32;
    }
}
