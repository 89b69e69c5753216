//! Turning displays off and on: `zwlr_output_power_manager_v1`, the
//! protocol swayidle's commands use (through `heapland-power`, or any
//! other client of it).
//!
//! An output turned off is blanked by the backend (on drm, its CRTC is
//! disabled: DPMS off in the KMS state) and draws nothing, so its clients
//! get no frame callbacks, as on a display that is not there. Turning it
//! on draws it anew. Input turns every output back on, so that a user who
//! turned the display off without an idle daemon to turn it on again is
//! never left in the dark. Every power object of an output hears each
//! change, whoever made it.
//!
//! Blanking the user's display is not for sandboxed clients.

use smithay::{
    output::Output,
    reexports::{
        wayland_protocols_wlr::output_power_management::v1::server::{
            zwlr_output_power_manager_v1::{self, ZwlrOutputPowerManagerV1},
            zwlr_output_power_v1::{self, Mode, ZwlrOutputPowerV1},
        },
        wayland_server::{
            Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource, WEnum,
        },
    },
};
use tracing::{info, warn};

use crate::{redraw::RedrawState, security_context::is_sandboxed, state::Heapland};

/// The outputs turned off, and the power objects clients hold.
#[derive(Debug, Default)]
pub struct OutputPower {
    off: Vec<Output>,
    /// Turned off while a frame was on its way to the display: blanked
    /// once its page flip completed, so the frame's presentation feedback
    /// is answered and the flip does not complete a later frame.
    blank_after_flip: Vec<Output>,
    objects: Vec<(ZwlrOutputPowerV1, Output)>,
}

impl OutputPower {
    pub fn new(dh: &DisplayHandle) -> Self {
        dh.create_global::<Heapland, ZwlrOutputPowerManagerV1, ()>(1, ());
        OutputPower::default()
    }

    /// Whether `output` is turned off.
    pub fn is_off(&self, output: &Output) -> bool {
        self.off.contains(output)
    }

    /// `output` is gone: its power objects fail, as the protocol says.
    pub fn output_removed(&mut self, output: &Output) {
        self.off.retain(|o| o != output);
        self.blank_after_flip.retain(|o| o != output);
        self.objects.retain(|(object, o)| {
            if o == output {
                object.failed();
            }
            o != output
        });
    }

    fn mode_of(&self, output: &Output) -> Mode {
        if self.is_off(output) {
            Mode::Off
        } else {
            Mode::On
        }
    }
}

impl Heapland {
    /// Turns `output` off or on; tells every power object of it. An output
    /// the backend cannot blank or light fails its power objects, as the
    /// protocol says.
    pub fn set_output_power(&mut self, output: &Output, on: bool) {
        if self.output_power.is_off(output) != on {
            return;
        }
        let in_flight = matches!(
            self.redraw_states.get(output),
            Some(RedrawState::WaitingForVBlank { .. })
        );
        let deferred = !on && in_flight;
        let changed = if on && self.output_power.blank_after_flip.contains(output) {
            // Never blanked: the frame on its way is still the latest.
            self.output_power.blank_after_flip.retain(|o| o != output);
            Ok(())
        } else if deferred {
            self.output_power.blank_after_flip.push(output.clone());
            Ok(())
        } else {
            self.backend.set_power(output, on)
        };
        if let Err(err) = changed {
            warn!(output = %output.name(), "cannot turn the output {}: {err}", if on { "on" } else { "off" });
            self.output_power.objects.retain(|(object, o)| {
                if o == output {
                    object.failed();
                }
                o != output
            });
            return;
        }
        info!(output = %output.name(), "output turned {}", if on { "on" } else { "off" });
        if on {
            self.output_power.off.retain(|o| o != output);
            self.restart_frame_cycle(output);
        } else {
            self.output_power.off.push(output.clone());
            if !deferred {
                self.stop_frame_cycle(output);
            }
            // Its surfaces' frame callbacks go to the outputs still lit.
            crate::scene::release_primary_output(&self.space, output);
            // A blank output shows no client: a pending lock need not wait
            // for it.
            self.lock_if_nothing_shows_clients();
        }
        let mode = self.output_power.mode_of(output);
        self.output_power.objects.retain(|(o, _)| o.is_alive());
        for (object, _) in self
            .output_power
            .objects
            .iter()
            .filter(|(_, o)| o == output)
        {
            object.mode(mode);
        }
    }

    /// The page flip of `output`'s last frame completed: an output turned
    /// off meanwhile is blanked now.
    pub fn output_flip_done(&mut self, output: &Output) {
        if !self.output_power.blank_after_flip.contains(output) {
            return;
        }
        self.output_power.blank_after_flip.retain(|o| o != output);
        if let Err(err) = self.backend.set_power(output, false) {
            warn!(output = %output.name(), "cannot turn the output off: {err}");
        }
        self.stop_frame_cycle(output);
    }

    /// Input came: every output that is off turns on.
    pub fn wake_outputs(&mut self) {
        if !self.output_power.off.is_empty() {
            info!("input: turning the outputs on");
        }
        for output in self.output_power.off.clone() {
            self.set_output_power(&output, true);
        }
    }

    /// The outputs turned off, to blank again when the display comes back
    /// from another session (which may have lit it).
    pub fn outputs_off(&self) -> Vec<Output> {
        self.output_power
            .off
            .iter()
            .filter(|o| !self.output_power.blank_after_flip.contains(o))
            .cloned()
            .collect()
    }
}

impl GlobalDispatch<ZwlrOutputPowerManagerV1, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwlrOutputPowerManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

impl Dispatch<ZwlrOutputPowerManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        _manager: &ZwlrOutputPowerManagerV1,
        request: zwlr_output_power_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let zwlr_output_power_manager_v1::Request::GetOutputPower { id, output } = request {
            let target = Output::from_resource(&output).filter(|o| state.outputs.contains(o));
            let object = data_init.init(id, target.clone());
            match target {
                Some(output) => {
                    object.mode(state.output_power.mode_of(&output));
                    state.output_power.objects.push((object, output));
                }
                None => object.failed(),
            }
        }
    }
}

impl Dispatch<ZwlrOutputPowerV1, Option<Output>> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        object: &ZwlrOutputPowerV1,
        request: zwlr_output_power_v1::Request,
        output: &Option<Output>,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        match request {
            zwlr_output_power_v1::Request::SetMode { mode } => {
                let on = match mode {
                    WEnum::Value(Mode::On) => true,
                    WEnum::Value(Mode::Off) => false,
                    _ => {
                        object.post_error(
                            zwlr_output_power_v1::Error::InvalidMode,
                            format!("{mode:?} is not a power mode (0 off, 1 on)"),
                        );
                        return;
                    }
                };
                // A failed object's output is gone: nothing to change.
                if let Some(output) = output.as_ref().filter(|o| state.outputs.contains(o)) {
                    state.set_output_power(output, on);
                }
            }
            zwlr_output_power_v1::Request::Destroy => {
                state.output_power.objects.retain(|(o, _)| o != object);
            }
            _ => {}
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: smithay::reexports::wayland_server::backend::ClientId,
        object: &ZwlrOutputPowerV1,
        _data: &Option<Output>,
    ) {
        state.output_power.objects.retain(|(o, _)| o != object);
    }
}
