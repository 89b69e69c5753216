//! Rendering an output's picture into memory, for screen capture clients.
//!
//! A capture renders the scene again, into a buffer of its own, rather than
//! reading the buffer the display shows: that one may be a client's buffer
//! on the primary plane (direct scanout), may still be drawn into by the
//! GPU, and holds the cursor whether or not the client asked for it. The
//! renderer is the backend's own, so a capture shows exactly what the
//! output composes.

use smithay::{
    backend::{
        allocator::Fourcc,
        renderer::{
            damage::OutputDamageTracker, Bind, ExportMem, ImportAll, ImportMem, Offscreen,
            Renderer, Texture,
        },
    },
    output::Output,
    utils::{Buffer, Physical, Rectangle, Size},
};

use crate::{
    backend::headless::CLEAR_COLOR,
    scene::{self, CursorMode, Scene},
};

/// Rows of XRGB8888 pixels (B, G, R, X bytes), top row first, `width * 4`
/// bytes apart.
#[derive(Debug)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Why an output could not be captured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("the output has no mode")]
    NoMode,
    #[error("the region {0:?} is not inside the output")]
    Region(Rectangle<i32, Physical>),
    #[error("the renderer failed: {0}")]
    Render(String),
}

/// What an offered capture's size depends on: the output's mode, scale
/// and transform.
pub type OutputState = (
    Option<smithay::output::Mode>,
    f64,
    smithay::utils::Transform,
);

/// `output`'s state now.
pub fn output_state(output: &Output) -> OutputState {
    (
        output.current_mode(),
        output.current_scale().fractional_scale(),
        output.current_transform(),
    )
}

impl crate::state::Heapland {
    /// Why `output`, offered to a client in `offered` state, cannot be
    /// captured now, if it cannot.
    pub fn capture_refusal(&self, output: &Output, offered: &OutputState) -> Option<&'static str> {
        if !self.outputs.contains(output) {
            Some("the output is gone")
        } else if self.output_power.is_off(output) {
            Some("the output is off")
        } else if output_state(output) != *offered {
            Some("the output's mode, scale or transform changed since the frame was offered")
        } else {
            None
        }
    }
}

/// The size of `output`'s picture in pixels, as a capture gives it: the
/// picture the display shows, as its mode lays it out. A rotated output's
/// capture is rotated as the display's pixels are, and the client turns
/// it upright with the output's transform (`wl_output.geometry`, the
/// capture's own `transform` event), as wlroots' captures are.
pub fn output_size(output: &Output) -> Option<Size<i32, Physical>> {
    Some(output.current_mode()?.size)
}

/// Renders `output` with `renderer` into an offscreen buffer of type `T`
/// and pixel format `format`, and reads `region` of it back.
pub fn render_to_memory<R, T>(
    renderer: &mut R,
    format: Fourcc,
    scene: &Scene<'_>,
    output: &Output,
    cursor: CursorMode,
    region: Rectangle<i32, Physical>,
) -> Result<Pixels, CaptureError>
where
    R: Renderer + ImportAll + ImportMem + Offscreen<T> + Bind<T> + ExportMem,
    R::TextureId: Texture + Send + Clone + 'static,
{
    let size = output_size(output).ok_or(CaptureError::NoMode)?;
    if region.is_empty() || !Rectangle::from_size(size).contains_rect(region) {
        return Err(CaptureError::Region(region));
    }
    let failed = |e: &dyn std::fmt::Display| CaptureError::Render(e.to_string());
    let elements = scene::output_elements(scene, renderer, output, cursor);
    let buffer_size = Size::<i32, Buffer>::from((size.w, size.h));
    let mut target: T = renderer
        .create_buffer(format, buffer_size)
        .map_err(|e| failed(&e))?;
    let mut framebuffer = renderer.bind(&mut target).map_err(|e| failed(&e))?;
    let mut damage = OutputDamageTracker::from_output(output);
    damage
        .render_output(renderer, &mut framebuffer, 0, &elements, CLEAR_COLOR)
        .map_err(|e| failed(&format!("{e:?}")))?;
    let read = Rectangle::<i32, Buffer>::new(
        (region.loc.x, region.loc.y).into(),
        (region.size.w, region.size.h).into(),
    );
    let mapping = renderer
        .copy_framebuffer(&framebuffer, read, Fourcc::Xrgb8888)
        .map_err(|e| failed(&e))?;
    let data = renderer.map_texture(&mapping).map_err(|e| failed(&e))?;
    let (width, height) = (region.size.w as u32, region.size.h as u32);
    let row = width as usize * 4;
    if data.len() < row * height as usize {
        return Err(CaptureError::Render(format!(
            "read back {} bytes for {width}x{height} pixels",
            data.len()
        )));
    }
    Ok(Pixels {
        width,
        height,
        data: data[..row * height as usize].to_vec(),
    })
}
