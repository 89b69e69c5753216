//! What an output shows, as render elements front to back: the cursor (on
//! backends that draw one), overlay and top layer surfaces, the windows
//! from the top of the stack down each followed by its title bar, then the
//! bottom and background layers.
//!
//! Every backend renders the same list, so the headless screenshots the
//! tests check are what a display shows.

use smithay::{
    backend::renderer::{
        element::{
            memory::MemoryRenderBufferRenderElement,
            solid::{SolidColorBuffer, SolidColorRenderElement},
            surface::{render_elements_from_surface_tree, WaylandSurfaceRenderElement},
            AsRenderElements, Kind,
        },
        ImportAll, ImportMem, Renderer,
    },
    desktop::layer_map_for_output,
    input::pointer::CursorImageStatus,
    output::Output,
    render_elements,
    utils::{Logical, Point, Scale},
    wayland::shell::wlr_layer::Layer,
};

use std::time::{Duration, Instant};

use smithay::{
    backend::renderer::element::RenderElementStates,
    desktop::{
        utils::{
            surface_presentation_feedback_flags_from_states, surface_primary_scanout_output,
            OutputPresentationFeedback,
        },
        Space, Window,
    },
    input::Seat,
};

use crate::{
    decoration::title_bar_for_frame,
    state::Heapland,
    xwayland_surface::{drawn_by_heapland, surface_of},
};

/// What an output's frame is made of, borrowed from the compositor's state
/// while the backend (another part of that state) draws it.
pub struct Scene<'a> {
    pub space: &'a Space<Window>,
    pub seat: &'a Seat<Heapland>,
    pub cursor_status: &'a CursorImageStatus,
    pub default_cursor: &'a DefaultCursor,
    pub cursor_theme: &'a crate::cursor_theme::CursorTheme,
    pub dnd_icon: Option<&'a crate::selection::DndIcon>,
    pub pointer_seen: bool,
    pub start_time: Instant,
    pub lock: &'a crate::session_lock::SessionLock,
}

impl Scene<'_> {
    /// After a repaint of `output`: sends the surfaces mainly shown on it
    /// their frame callbacks and collects their presentation feedback, which
    /// the backend marks presented once the frame is complete (headless,
    /// winit) or on screen (drm). A surface shown on several outputs follows
    /// its primary one (see [`Scene::update_primary_scanout_output`]); one
    /// shown nowhere yet gets a callback at most once a second. `states`
    /// (where each element went) give the feedback its zero-copy flag.
    pub fn frame_done(
        &self,
        output: &Output,
        states: Option<&RenderElementStates>,
    ) -> OutputPresentationFeedback {
        let elapsed = self.start_time.elapsed();
        let throttle = Some(Duration::from_secs(1));
        let no_states = RenderElementStates::default();
        let states = states.unwrap_or(&no_states);
        let flags =
            |surface: &_, _: &_| surface_presentation_feedback_flags_from_states(surface, states);
        let mut presentation = OutputPresentationFeedback::new(output);
        if self.lock.is_locked() {
            // Only the lock surface is shown, and only it draws.
            if let Some(lock) = self.lock.surface_on(output) {
                smithay::desktop::utils::send_frames_surface_tree(
                    lock.wl_surface(),
                    output,
                    elapsed,
                    None,
                    |_, _| Some(output.clone()),
                );
            }
            return presentation;
        }
        for window in self.space.elements_for_output(output) {
            if let Some(surface) = drawn_by_heapland(window) {
                smithay::desktop::utils::send_frames_surface_tree(
                    &surface,
                    output,
                    elapsed,
                    throttle,
                    surface_primary_scanout_output,
                );
                smithay::desktop::utils::take_presentation_feedback_surface_tree(
                    &surface,
                    &mut presentation,
                    surface_primary_scanout_output,
                    flags,
                );
                continue;
            }
            window.send_frame(output, elapsed, throttle, surface_primary_scanout_output);
            window.take_presentation_feedback(
                &mut presentation,
                surface_primary_scanout_output,
                flags,
            );
        }
        // Panels and launchers redraw on frame callbacks too.
        for layer in layer_map_for_output(output).layers() {
            layer.send_frame(output, elapsed, throttle, surface_primary_scanout_output);
            layer.take_presentation_feedback(
                &mut presentation,
                surface_primary_scanout_output,
                flags,
            );
        }
        if let Some(icon) = self.dnd_icon {
            // The drag icon follows the pointer on every output.
            smithay::desktop::utils::send_frames_surface_tree(
                &icon.surface,
                output,
                elapsed,
                None,
                |_, _| Some(output.clone()),
            );
        }
        if let CursorImageStatus::Surface(surface) = self.cursor_status {
            // The cursor is on the output that draws it.
            smithay::desktop::utils::send_frames_surface_tree(
                surface,
                output,
                elapsed,
                None,
                |_, _| Some(output.clone()),
            );
        }
        presentation
    }

    /// Records which output each surface of `output` is mainly shown on,
    /// from the states of the frame just drawn: frame callbacks of a surface
    /// on two outputs follow that one ([`Scene::frame_done`]).
    pub fn update_primary_scanout_output(&self, output: &Output, states: &RenderElementStates) {
        let update = |surface: &_, surface_data: &_| {
            smithay::desktop::utils::update_surface_primary_scanout_output(
                surface,
                output,
                surface_data,
                states,
                smithay::backend::renderer::element::default_primary_scanout_output_compare,
            );
        };
        for_each_surface(self.space, output, update);
    }
}

render_elements! {
    /// One element of an output's picture.
    pub SceneElement<R> where R: ImportAll + ImportMem;
    Surface = WaylandSurfaceRenderElement<R>,
    Solid = SolidColorRenderElement,
    Memory = MemoryRenderBufferRenderElement<R>,
}

/// The cursor drawn when the cursor theme lacks the shape asked for (or
/// is not installed): a small black-edged white square.
pub struct DefaultCursor {
    edge: SolidColorBuffer,
    fill: SolidColorBuffer,
}

impl Default for DefaultCursor {
    fn default() -> Self {
        DefaultCursor {
            edge: SolidColorBuffer::new((10, 10), [0.0, 0.0, 0.0, 1.0]),
            fill: SolidColorBuffer::new((8, 8), [1.0, 1.0, 1.0, 1.0]),
        }
    }
}

/// Whether the scene includes the pointer's cursor (the drm backend, once
/// the pointer has moved; a nested window has the host's cursor and
/// headless has no one to see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorMode {
    Draw,
    Hidden,
}

/// The elements of `output`, front to back.
pub fn output_elements<R>(
    state: &Scene<'_>,
    renderer: &mut R,
    output: &Output,
    cursor: CursorMode,
) -> Vec<SceneElement<R>>
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Send + Clone + 'static,
{
    let Some(output_geo) = state.space.output_geometry(output) else {
        return Vec::new();
    };
    let scale = Scale::from(output.current_scale().fractional_scale());
    let to_physical =
        |p: Point<i32, Logical>| (p - output_geo.loc).to_physical_precise_round(scale);
    let mut elements: Vec<SceneElement<R>> = Vec::new();

    if cursor == CursorMode::Draw && state.pointer_seen {
        cursor_elements(state, renderer, &mut elements, output_geo.loc, scale);
    }
    // A drag's icon is drawn by heapland on every backend (a nested
    // window's host draws only the cursor), under the cursor.
    let icon = state.dnd_icon.filter(|_| !state.lock.is_locked());
    if let (Some(icon), Some(pointer)) = (icon, state.seat.get_pointer()) {
        let at = pointer.current_location().to_i32_round() + icon.offset;
        elements.extend(
            render_elements_from_surface_tree::<R, WaylandSurfaceRenderElement<R>>(
                renderer,
                &icon.surface,
                to_physical(at),
                scale,
                1.0,
                Kind::Unspecified,
            )
            .into_iter()
            .map(SceneElement::Surface),
        );
    }

    if state.lock.is_locked() {
        // The lock surface fills the output; until there is one, the
        // background does.
        if let Some(lock) = state.lock.surface_on(output) {
            elements.extend(
                render_elements_from_surface_tree::<R, WaylandSurfaceRenderElement<R>>(
                    renderer,
                    lock.wl_surface(),
                    (0, 0),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )
                .into_iter()
                .map(SceneElement::Surface),
            );
        }
        return elements;
    }

    let layers = layer_map_for_output(output);
    let push_layer = |elements: &mut Vec<SceneElement<R>>, renderer: &mut R, layer: Layer| {
        for surface in layers.layers_on(layer).rev() {
            if let Some(geo) = layers.layer_geometry(surface) {
                let loc = geo.loc.to_physical_precise_round(scale);
                elements.extend(
                    AsRenderElements::<R>::render_elements::<WaylandSurfaceRenderElement<R>>(
                        surface, renderer, loc, scale, 1.0,
                    )
                    .into_iter()
                    .map(SceneElement::Surface),
                );
            }
        }
    };
    push_layer(&mut elements, renderer, Layer::Overlay);
    push_layer(&mut elements, renderer, Layer::Top);

    let focused = state.seat.get_keyboard().and_then(|k| k.current_focus());
    for window in state.space.elements_for_output(output).rev() {
        let Some(location) = state.space.element_location(window) else {
            continue;
        };
        let render_loc = to_physical(location - window.geometry().loc);
        let surface_elements = match drawn_by_heapland(window) {
            Some(surface) => {
                render_elements_from_surface_tree::<R, WaylandSurfaceRenderElement<R>>(
                    renderer,
                    &surface,
                    render_loc,
                    scale,
                    1.0,
                    Kind::Unspecified,
                )
            }
            None => window.render_elements::<WaylandSurfaceRenderElement<R>>(
                renderer, render_loc, scale, 1.0,
            ),
        };
        elements.extend(surface_elements.into_iter().map(SceneElement::Surface));
        let is_focused =
            surface_of(window).is_some_and(|s| focused.as_ref().map(|f| f.surface()) == Some(&s));
        if let Some(title) = title_bar_for_frame(window, location, is_focused) {
            let parts = [
                (&title.buffers.close, title.close),
                (&title.buffers.bar, title.bar),
            ];
            for (buffer, rect) in parts {
                elements.push(SceneElement::Solid(SolidColorRenderElement::from_buffer(
                    buffer,
                    to_physical(rect.loc),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )));
            }
        }
    }

    push_layer(&mut elements, renderer, Layer::Bottom);
    push_layer(&mut elements, renderer, Layer::Background);
    elements
}

fn cursor_elements<R>(
    state: &Scene<'_>,
    renderer: &mut R,
    elements: &mut Vec<SceneElement<R>>,
    output_origin: Point<i32, Logical>,
    scale: Scale<f64>,
) where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Send + Clone + 'static,
{
    let Some(pointer) = state.seat.get_pointer() else {
        return;
    };
    let position = pointer.current_location().to_i32_round() - output_origin;
    match state.cursor_status {
        CursorImageStatus::Hidden => {}
        CursorImageStatus::Surface(surface) => {
            let hotspot = smithay::wayland::compositor::with_states(surface, |states| {
                states
                    .data_map
                    .get::<smithay::input::pointer::CursorImageSurfaceData>()
                    .and_then(|d| d.lock().ok().map(|d| d.hotspot))
                    .unwrap_or_default()
            });
            let loc = (position - hotspot).to_physical_precise_round(scale);
            elements.extend(
                render_elements_from_surface_tree::<R, WaylandSurfaceRenderElement<R>>(
                    renderer,
                    surface,
                    loc,
                    scale,
                    1.0,
                    Kind::Cursor,
                )
                .into_iter()
                .map(SceneElement::Surface),
            );
        }
        CursorImageStatus::Named(icon) => {
            let int_scale = scale.x.ceil() as i32;
            let image = std::iter::once(icon.name())
                .chain(icon.alt_names().iter().copied())
                .chain(["default"])
                .find_map(|name| state.cursor_theme.image(name, int_scale));
            if let Some(image) = image {
                let loc: Point<i32, smithay::utils::Physical> =
                    (position - image.hotspot).to_physical_precise_round(scale);
                match MemoryRenderBufferRenderElement::from_buffer(
                    renderer,
                    loc.to_f64(),
                    &image.buffer,
                    None,
                    None,
                    None,
                    Kind::Cursor,
                ) {
                    Ok(element) => {
                        elements.push(SceneElement::Memory(element));
                        return;
                    }
                    Err(err) => tracing::warn!("cannot draw the cursor: {err:?}"),
                }
            }
            let cursor = state.default_cursor;
            let fill_at = (position + Point::from((1, 1))).to_physical_precise_round(scale);
            let edge_at = position.to_physical_precise_round(scale);
            elements.push(SceneElement::Solid(SolidColorRenderElement::from_buffer(
                &cursor.fill,
                fill_at,
                scale,
                1.0,
                Kind::Cursor,
            )));
            elements.push(SceneElement::Solid(SolidColorRenderElement::from_buffer(
                &cursor.edge,
                edge_at,
                scale,
                1.0,
                Kind::Cursor,
            )));
        }
    }
}

/// Calls `f` on every surface that may be drawn on `output`: windows with
/// their subsurfaces and popups (an X11 window heapland pairs itself through
/// its paired surface's tree, which Smithay's `Window` does not know) and
/// layer surfaces.
pub fn for_each_surface(
    space: &Space<Window>,
    output: &Output,
    mut f: impl FnMut(
        &smithay::reexports::wayland_server::protocol::wl_surface::WlSurface,
        &smithay::wayland::compositor::SurfaceData,
    ),
) {
    for window in space.elements_for_output(output) {
        match drawn_by_heapland(window) {
            Some(surface) => {
                smithay::wayland::compositor::with_surface_tree_downward(
                    &surface,
                    (),
                    |_, _, _| smithay::wayland::compositor::TraversalAction::DoChildren(()),
                    |surface, states, _| f(surface, states),
                    |_, _, _| true,
                );
            }
            None => window.with_surfaces(&mut f),
        }
    }
    for layer in layer_map_for_output(output).layers() {
        layer.with_surfaces(&mut f);
    }
}

/// Forgets `output` as the primary scanout output of every surface on it,
/// because it stops being drawn (unplugged, or turned off): the outputs
/// still showing those surfaces take over their frame callbacks with their
/// next frame. Smithay keeps a primary output for as long as the `Output`
/// lives and only gives it up for one that shows twice the area, so a
/// window moved off an unplugged display, or spanning a display turned off,
/// would otherwise get only throttled frame callbacks.
pub fn release_primary_output(space: &Space<Window>, output: &Output) {
    let drawn_nowhere = RenderElementStates::default();
    for_each_surface(space, output, |surface, data| {
        smithay::desktop::utils::update_surface_primary_scanout_output(
            surface,
            output,
            data,
            &drawn_nowhere,
            smithay::backend::renderer::element::default_primary_scanout_output_compare,
        );
    });
}
