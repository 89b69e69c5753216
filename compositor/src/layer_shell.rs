//! `zwlr_layer_shell_v1`: panels, docks, wallpapers, launchers and lock
//! screens drawn by clients in layers above and below the windows.
//!
//! Layer surfaces live in the layer map of their output (Smithay's
//! `LayerMap`), which places them by anchor and margins and keeps the
//! windows' usable area clear of exclusive zones.

use smithay::{
    delegate_layer_shell,
    desktop::{layer_map_for_output, LayerSurface, PopupKind, WindowSurfaceType},
    output::Output,
    reexports::wayland_server::protocol::{wl_output::WlOutput, wl_surface::WlSurface},
    utils::SERIAL_COUNTER,
    wayland::{
        compositor::with_states,
        shell::{
            wlr_layer::{
                KeyboardInteractivity, Layer, LayerSurface as WlrLayerSurface, LayerSurfaceData,
                WlrLayerShellHandler, WlrLayerShellState,
            },
            xdg::PopupSurface,
        },
    },
};
use tracing::{debug, warn};

use crate::state::Heapland;

impl WlrLayerShellHandler for Heapland {
    fn shell_state(&mut self) -> &mut WlrLayerShellState {
        &mut self.layer_shell_state
    }

    fn new_layer_surface(
        &mut self,
        surface: WlrLayerSurface,
        wl_output: Option<WlOutput>,
        layer: Layer,
        namespace: String,
    ) {
        // An output unplugged a moment ago still has live wl_output
        // resources: a surface asked for there is closed, not left waiting.
        let Some(output) = wl_output
            .as_ref()
            .map_or_else(|| self.outputs.first().cloned(), Output::from_resource)
            .filter(|o| self.outputs.contains(o))
        else {
            // Nothing to show it on: the client gets closed, as the
            // protocol prescribes when the output goes away.
            warn!("layer surface {namespace:?} on no output (gone, or none yet): closed");
            surface.send_close();
            return;
        };
        debug!(?layer, %namespace, output = %output.name(), "new layer surface");
        let mut map = layer_map_for_output(&output);
        if let Err(err) = map.map_layer(&LayerSurface::new(surface, namespace)) {
            warn!("cannot map layer surface: {err}");
        }
    }

    /// Tracked so it is drawn with its parent and configured on its first
    /// commit (see `CompositorHandler::commit`).
    fn new_popup(&mut self, _parent: WlrLayerSurface, popup: PopupSurface) {
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(popup)) {
            warn!("cannot track layer popup: {err}");
        }
    }

    fn layer_destroyed(&mut self, surface: WlrLayerSurface) {
        let mut shown_on = Vec::new();
        for output in &self.outputs {
            let mut map = layer_map_for_output(output);
            let layer = map
                .layers()
                .find(|l| l.layer_surface() == &surface)
                .cloned();
            if let Some(layer) = layer {
                map.unmap_layer(&layer);
                shown_on.push(output.clone());
            }
        }
        for output in shown_on {
            self.queue_redraw(&output);
        }
        self.refocus_if_focused(surface.wl_surface());
    }
}

/// After a commit of a layer surface: re-arranges its output (size, anchor
/// or exclusive zone may have changed), sends the first configure, and
/// gives the keyboard to a top or overlay surface that asks for it
/// exclusively (a launcher, a lock screen). Returns whether `surface` was a
/// layer surface.
pub fn layer_committed(state: &mut Heapland, surface: &WlSurface) -> bool {
    let Some(output) = state
        .outputs
        .iter()
        .find(|o| {
            layer_map_for_output(o)
                .layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)
                .is_some()
        })
        .cloned()
    else {
        return false;
    };
    let initial_sent = with_states(surface, |states| {
        states
            .data_map
            .get::<LayerSurfaceData>()
            .and_then(|d| d.lock().ok().map(|d| d.initial_configure_sent))
            .unwrap_or(true)
    });
    let mut map = layer_map_for_output(&output);
    map.arrange();
    let layer = map
        .layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)
        .cloned();
    drop(map);
    let Some(layer) = layer else {
        return true;
    };
    if !initial_sent {
        layer.layer_surface().send_configure();
        return true;
    }
    let cached = layer.cached_state();
    let wants_keyboard = cached.keyboard_interactivity == KeyboardInteractivity::Exclusive
        && matches!(cached.layer, Layer::Top | Layer::Overlay)
        && !state.session_lock.is_locked();
    if wants_keyboard {
        if let Some(keyboard) = state.seat.get_keyboard() {
            if keyboard.current_focus().as_ref().map(|f| f.surface()) != Some(surface) {
                keyboard.set_focus(
                    state,
                    Some(surface.clone().into()),
                    SERIAL_COUNTER.next_serial(),
                );
            }
        }
    }
    true
}

delegate_layer_shell!(Heapland);
