//! Headless backend: virtual outputs rendered on the CPU with pixman, at the
//! refresh rate of their mode, driven by calloop timers.
//!
//! Each output renders into one buffer of its own (nothing scans it out, so
//! no double buffering is needed). That buffer comes from a DMA-BUF heap when
//! the machine has one, else from ordinary memory, said once in the log.

use std::{cell::RefCell, path::PathBuf, rc::Rc, time::Duration};

use calloop::{
    timer::{TimeoutAction, Timer},
    LoopHandle,
};
use heapland_allocator::{DmaBuf, HeapAllocator};
use smithay::{
    backend::{
        allocator::{dmabuf::Dmabuf, Buffer, Fourcc, Modifier},
        renderer::{
            damage::OutputDamageTracker,
            pixman::{PixmanError, PixmanRenderer, PixmanTarget},
            Bind, ExportMem, Offscreen,
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
    cli::{Cli, OutputMode as CliMode},
    frame_stats::{self, Shown},
    scene::{self, CursorMode},
    screenshot::write_xrgb8888_png,
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
    #[error("cannot add the frame timer: {0}")]
    Timer(String),
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

/// Allocates an output buffer from the heap allocator, else from memory.
fn allocate_output_buffer(
    allocator: &mut Option<HeapAllocator>,
    renderer: &mut PixmanRenderer,
    name: &str,
    mode: &CliMode,
) -> Result<OutputBuffer, HeadlessError> {
    if let Some(allocator) = allocator.as_mut() {
        match allocator.allocate(
            mode.width,
            mode.height,
            Fourcc::Xrgb8888,
            &[Modifier::Linear],
        ) {
            Ok((dmabuf, heap)) => {
                frame_stats::buffer_allocated();
                // Name the dma-buf so it can be told apart in
                // /sys/kernel/debug/dma_buf/bufinfo.
                if let Some(fd) = dmabuf
                    .handles()
                    .next()
                    .and_then(|fd| fd.try_clone_to_owned().ok())
                {
                    let label = DmaBuf::from_fd(fd, 0, heap.clone());
                    if let Err(err) = label.set_name(&format!("heapland-{name}")) {
                        debug!("cannot name the output dma-buf: {err}");
                    }
                }
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
    /// Only the first output is written to the screenshot file.
    screenshot: Option<PathBuf>,
    every_frame: bool,
}

/// Creates the outputs and starts their frame timers.
pub fn init(
    cli: &Cli,
    state: &mut Heapland,
    handle: &LoopHandle<'static, Heapland>,
) -> Result<(), HeadlessError> {
    let renderer = Rc::new(RefCell::new(
        PixmanRenderer::new().map_err(HeadlessError::Renderer)?,
    ));
    let clock = Rc::new(Clock::<Monotonic>::new());

    let modes = if cli.outputs.is_empty() {
        vec![CliMode::default()]
    } else {
        cli.outputs.clone()
    };

    // The output buffers are touched by the CPU only (pixman), so no device
    // constrains the heap: the allocator picks the most general one.
    let mut allocator = match HeapAllocator::new(state.heaps.discovery().clone(), &[]) {
        Ok(a) => Some(a),
        Err(err) => {
            info!("output buffers: no DMA-BUF heap ({err}); rendering into ordinary memory");
            None
        }
    };

    let mut x = 0i32;
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
            Some((x, 0).into()),
        );
        state.add_output(&output, (x, 0).into());
        x += w;

        let buffer = allocate_output_buffer(
            &mut allocator,
            &mut renderer.borrow_mut(),
            &output.name(),
            mode,
        )?;
        let mut out = HeadlessOutput {
            damage_tracker: OutputDamageTracker::from_output(&output),
            output,
            mode: *mode,
            buffer,
            frames: 0,
            screenshot: if i == 0 { cli.screenshot.clone() } else { None },
            every_frame: cli.screenshot_every_frame,
        };
        info!(
            "output {}: {}x{}@{}Hz at x={}",
            out.output.name(),
            mode.width,
            mode.height,
            mode.refresh_hz,
            x - w
        );

        let interval = Duration::from_nanos(1_000_000_000 / u64::from(mode.refresh_hz));
        let renderer = renderer.clone();
        let clock = clock.clone();
        handle
            .insert_source(Timer::from_duration(interval), move |_, _, state| {
                render_frame(
                    &mut renderer.borrow_mut(),
                    &mut out,
                    state,
                    &clock,
                    interval,
                );
                TimeoutAction::ToDuration(interval)
            })
            .map_err(|e| HeadlessError::Timer(e.to_string()))?;
    }
    Ok(())
}

/// Renders one frame of one output, then sends frame callbacks and
/// presentation feedback, and writes the screenshot when asked.
fn render_frame(
    renderer: &mut PixmanRenderer,
    out: &mut HeadlessOutput,
    state: &mut Heapland,
    clock: &Clock<Monotonic>,
    interval: Duration,
) {
    let age = usize::from(out.frames > 0);
    let elements = scene::output_elements(state, renderer, &out.output, CursorMode::Hidden);
    let damaged = {
        let mut fb = match out.buffer.bind(renderer) {
            Ok(fb) => fb,
            Err(err) => {
                warn!("cannot bind the output buffer: {err}");
                return;
            }
        };
        let damaged =
            match out
                .damage_tracker
                .render_output(renderer, &mut fb, age, &elements, CLEAR_COLOR)
            {
                Ok(result) => result.damage.is_some_and(|d| !d.is_empty()),
                Err(err) => {
                    warn!("rendering {} failed: {err:?}", out.output.name());
                    return;
                }
            };

        let requested = out.screenshot.is_some() && state.screenshot_requested;
        let wanted = requested || (out.every_frame && (damaged || out.frames == 0));
        if let (true, Some(path)) = (wanted, out.screenshot.as_ref()) {
            if requested {
                state.screenshot_requested = false;
            }
            let (w, h) = (out.mode.width as i32, out.mode.height as i32);
            let region = Rectangle::from_size((w, h).into());
            match renderer
                .copy_framebuffer(&fb, region, Fourcc::Xrgb8888)
                .and_then(|mapping| {
                    let data = renderer.map_texture(&mapping)?;
                    Ok(write_xrgb8888_png(
                        path,
                        w as u32,
                        h as u32,
                        w as usize * 4,
                        data,
                    ))
                }) {
                Ok(Ok(())) => debug!("screenshot written to {}", path.display()),
                Ok(Err(err)) => warn!("screenshot: {err}"),
                Err(err) => warn!("screenshot: cannot read the output back: {err}"),
            }
        }
        damaged
    };
    out.frames += 1;

    let output = out.output.clone();
    let now = clock.now();
    let mut presentation = state.frame_done(&output);
    // Nothing scans the buffer out; "presented" means the frame is complete
    // in the output buffer, at a fixed rate.
    presentation.presented(now, Refresh::Fixed(interval), out.frames, Kind::empty());
    if damaged {
        state.frame_stats.frame(Shown::Composited);
        debug!(output = %output.name(), frame = out.frames, "rendered");
    }
}
