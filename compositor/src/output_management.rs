//! `zwlr_output_manager_v1` (version 4): output configuration for
//! wlr-randr, kanshi and display settings tools.
//!
//! Each output is a head with its modes (on drm, every mode of its
//! connector). A configuration sets a head's mode, position, scale and
//! transform; `test` checks it and `apply` carries it out, and every
//! manager then hears the new state with a new serial. A configuration
//! made from an older serial is cancelled, as the protocol asks.
//!
//! What heapland cannot do yet fails the configuration as a whole, before
//! anything changes: disabling an output (`heapland-power off` blanks one),
//! transforming the nested window's output (its orientation is the host
//! window's), adaptive sync, and custom modes on drm (a display takes the
//! modes its connector lists; headless outputs take any size).
//!
//! Rearranging the user's displays is not for sandboxed clients.

use std::sync::{Arc, Mutex};

use smithay::{
    desktop::layer_map_for_output,
    output::{Mode as OutputMode, Output, Scale},
    reexports::{
        wayland_protocols_wlr::output_management::v1::server::{
            zwlr_output_configuration_head_v1::{self, ZwlrOutputConfigurationHeadV1},
            zwlr_output_configuration_v1::{self, ZwlrOutputConfigurationV1},
            zwlr_output_head_v1::{self, ZwlrOutputHeadV1},
            zwlr_output_manager_v1::{self, ZwlrOutputManagerV1},
            zwlr_output_mode_v1::{self, ZwlrOutputModeV1},
        },
        wayland_server::{
            backend::ClientId, Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New,
            Resource, WEnum,
        },
    },
    utils::{Logical, Point, Transform},
};
use tracing::{info, warn};

use crate::{security_context::is_sandboxed, state::Heapland};

const VERSION: u32 = 4;

/// The managers clients hold, what each was told, and the serial of the
/// current state.
#[derive(Debug, Default)]
pub struct OutputManagement {
    serial: u32,
    managers: Vec<Manager>,
}

#[derive(Debug)]
struct Manager {
    manager: ZwlrOutputManagerV1,
    heads: Vec<Head>,
}

/// One output as told to one manager.
#[derive(Debug)]
struct Head {
    output: Output,
    head: ZwlrOutputHeadV1,
    modes: Vec<(OutputMode, ZwlrOutputModeV1)>,
    told: Option<HeadState>,
}

/// Mode objects carry their head's output: a configuration may only set a
/// head to one of its own modes.
type ModeData = (Output, OutputMode);

/// What a head event says, to send only what changed.
#[derive(Debug, Clone, PartialEq)]
struct HeadState {
    mode: Option<OutputMode>,
    position: Point<i32, Logical>,
    transform: Transform,
    scale: f64,
}

impl HeadState {
    fn of(output: &Output) -> Self {
        HeadState {
            mode: output.current_mode(),
            position: output.current_location(),
            transform: output.current_transform(),
            scale: output.current_scale().fractional_scale(),
        }
    }
}

/// What a configuration says of one head: `None` for disable_head.
type Settings = Arc<Mutex<HeadSettings>>;

/// A configuration head object: its head's output and what is set.
#[derive(Debug)]
pub struct ConfigurationHead {
    /// `None` when the head's output was gone already.
    output: Option<Output>,
    settings: Settings,
}

#[derive(Debug, Default, Clone)]
pub struct HeadSettings {
    mode: Option<RequestedMode>,
    position: Option<Point<i32, Logical>>,
    transform: Option<Transform>,
    scale: Option<f64>,
    adaptive_sync: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RequestedMode {
    Listed(OutputMode),
    Custom(OutputMode),
}

/// A configuration object's state.
#[derive(Debug)]
pub struct Configuration {
    serial: u32,
    heads: Mutex<ConfigurationHeads>,
}

#[derive(Debug, Default)]
struct ConfigurationHeads {
    heads: Vec<(Output, Option<Settings>)>,
    used: bool,
}

impl OutputManagement {
    pub fn new(dh: &DisplayHandle) -> Self {
        dh.create_global::<Heapland, ZwlrOutputManagerV1, ()>(VERSION, ());
        OutputManagement::default()
    }
}

impl Heapland {
    /// Tells every manager what changed of the outputs (added, gone, mode,
    /// position, scale, transform) under a new serial. Called after every
    /// change of the outputs.
    pub fn output_configuration_changed(&mut self) {
        self.output_management.serial = self.output_management.serial.wrapping_add(1);
        let serial = self.output_management.serial;
        let dh = self.display_handle.clone();
        let outputs = self.outputs.clone();
        self.output_management
            .managers
            .retain(|m| m.manager.is_alive());
        for manager in &mut self.output_management.managers {
            manager.update(&dh, &outputs);
            manager.manager.done(serial);
        }
    }

    /// Checks `heads` (and with `apply`, carries them out). Everything
    /// the backend can refuse is checked before anything changes.
    fn configure_outputs(
        &mut self,
        heads: &[(Output, Option<HeadSettings>)],
        apply: bool,
    ) -> Result<(), String> {
        let mut plan = Vec::new();
        for (output, settings) in heads {
            let name = output.name();
            let Some(settings) = settings else {
                return Err(format!(
                    "{name}: heapland cannot disable outputs (heapland-power off blanks one)"
                ));
            };
            if settings.adaptive_sync == Some(true) {
                return Err(format!("{name}: no adaptive sync"));
            }
            if settings
                .transform
                .is_some_and(|t| matches!(t, Transform::Flipped90 | Transform::Flipped270))
            {
                // Smithay 0.7 inverts these two into each other, where
                // wl_output keeps each its own inverse: the picture and what
                // clients are told would disagree.
                return Err(format!(
                    "{name}: flipped-90 and flipped-270 are not drawn right yet"
                ));
            }
            if settings
                .transform
                .is_some_and(|t| t != output.current_transform())
                && !self.backend.takes_transforms()
            {
                return Err(format!(
                    "{name}: a nested output is not rotated or flipped (its host window's orientation is the host's)"
                ));
            }
            let mode = match settings.mode {
                None => output.current_mode(),
                Some(RequestedMode::Listed(mode)) | Some(RequestedMode::Custom(mode)) => {
                    let custom = matches!(settings.mode, Some(RequestedMode::Custom(_)));
                    self.backend.can_take_mode(output, mode, custom)?;
                    Some(mode)
                }
            };
            plan.push((output.clone(), mode, settings.clone()));
        }
        if !apply {
            return Ok(());
        }
        let mut result = Ok(());
        for (output, mode, settings) in plan {
            if let Some(mode) = mode.filter(|m| Some(*m) != output.current_mode()) {
                if let Err(err) = self.backend.set_mode(&output, mode) {
                    // What was applied stays, and clients hear of it below.
                    result = Err(err);
                    break;
                }
                let old = output.current_mode();
                output.add_mode(mode);
                // A custom mode replaced is no mode of the output any more.
                if let Some(old) = old.filter(|o| Some(*o) != output.preferred_mode()) {
                    if self.backend.takes_custom_modes() {
                        output.delete_mode(old);
                    }
                }
                info!(
                    output = %output.name(),
                    "mode {}x{}@{:.2}Hz",
                    mode.size.w,
                    mode.size.h,
                    f64::from(mode.refresh) / 1000.0
                );
            }
            let scale = settings.scale.map(|s| {
                if s.fract() == 0.0 {
                    Scale::Integer(s as i32)
                } else {
                    Scale::Fractional(s)
                }
            });
            let position = settings.position.unwrap_or(output.current_location());
            let transform = settings
                .transform
                .filter(|t| *t != output.current_transform());
            output.change_current_state(mode, transform, scale, Some(position));
            if let Some(transform) = transform {
                info!(output = %output.name(), "transform {transform:?}");
            }
            self.space.map_output(&output, position);
            layer_map_for_output(&output).arrange();
            if scale.is_some() {
                self.output_scale_changed(&output);
            }
        }
        self.outputs_resized();
        self.queue_redraw_all();
        self.output_configuration_changed();
        result
    }
}

impl Heapland {
    /// Takes the configuration's `[outputs."NAME"]` settings into use for
    /// every output it names; what cannot be done is logged, and the
    /// output keeps what it had.
    pub fn apply_output_settings(&mut self) {
        for output in self.outputs.clone() {
            self.apply_settings_of(&output);
        }
    }

    /// The configuration's settings of `output`, if it names it.
    pub fn apply_settings_of(&mut self, output: &Output) {
        let Some(configured) = self.config.outputs.get(&output.name()).cloned() else {
            return;
        };
        let mode = configured.parsed_mode().map(|(w, h, hz)| {
            let same_size = output
                .modes()
                .into_iter()
                .filter(|m| m.size == (w, h).into());
            let listed = match hz {
                // The listed mode of that size nearest to the rate asked for.
                Some(hz) => same_size
                    .min_by_key(|m| (m.refresh - hz as i32 * 1000).abs())
                    .filter(|m| (m.refresh - hz as i32 * 1000).abs() < 1000),
                None => same_size.max_by_key(|m| m.refresh),
            };
            match listed {
                Some(mode) => RequestedMode::Listed(mode),
                None => RequestedMode::Custom(OutputMode {
                    size: (w, h).into(),
                    refresh: hz.map_or(60_000, |hz| hz as i32 * 1000),
                }),
            }
        });
        let settings = HeadSettings {
            mode,
            position: configured.position.map(|[x, y]| (x, y).into()),
            transform: configured.parsed_transform(),
            scale: configured.scale,
            adaptive_sync: None,
        };
        match self.configure_outputs(&[(output.clone(), Some(settings))], true) {
            Ok(()) => {
                info!(output = %output.name(), "output settings from the configuration taken")
            }
            Err(err) => warn!(
                "the configuration's settings of output {}: {err}",
                output.name()
            ),
        }
    }
}

impl Manager {
    /// Sends `outputs` as they are now: new heads with their modes, gone
    /// heads finished, changed properties.
    fn update(&mut self, dh: &DisplayHandle, outputs: &[Output]) {
        self.heads.retain(|h| {
            let gone = !outputs.contains(&h.output);
            if gone && h.head.is_alive() {
                for (_, mode) in h.modes.iter().filter(|(_, m)| m.is_alive()) {
                    mode.finished();
                }
                h.head.finished();
            }
            !gone
        });
        let Some(client) = self.manager.client() else {
            return;
        };
        for output in outputs {
            if !self.heads.iter().any(|h| &h.output == output) {
                match client.create_resource::<ZwlrOutputHeadV1, Output, Heapland>(
                    dh,
                    self.manager.version(),
                    output.clone(),
                ) {
                    Ok(head) => {
                        self.manager.head(&head);
                        head.name(output.name());
                        head.description(output.description());
                        let physical = output.physical_properties();
                        head.physical_size(physical.size.w, physical.size.h);
                        if head.version() >= 2 {
                            head.make(physical.make);
                            head.model(physical.model);
                        }
                        head.enabled(1);
                        self.heads.push(Head {
                            output: output.clone(),
                            head,
                            modes: Vec::new(),
                            told: None,
                        });
                    }
                    Err(err) => warn!("cannot create an output head: {err}"),
                }
            }
        }
        for head in &mut self.heads {
            head.update(dh, &client);
        }
    }
}

impl Head {
    fn update(&mut self, dh: &DisplayHandle, client: &Client) {
        if !self.head.is_alive() {
            // Released: the client wants to hear nothing more of it.
            return;
        }
        let preferred = self.output.preferred_mode();
        let modes = self.output.modes();
        self.modes.retain(|(m, object)| {
            let gone = !modes.contains(m);
            if gone && object.is_alive() {
                object.finished();
            }
            !gone
        });
        for mode in modes {
            if self.modes.iter().any(|(m, _)| *m == mode) {
                continue;
            }
            let Ok(object) = client.create_resource::<ZwlrOutputModeV1, ModeData, Heapland>(
                dh,
                self.head.version(),
                (self.output.clone(), mode),
            ) else {
                continue;
            };
            self.head.mode(&object);
            object.size(mode.size.w, mode.size.h);
            object.refresh(mode.refresh);
            if Some(mode) == preferred {
                object.preferred();
            }
            self.modes.push((mode, object));
        }
        let now = HeadState::of(&self.output);
        let told = self.told.take();
        if told.as_ref().map(|t| t.mode) != Some(now.mode) {
            if let Some((_, object)) = self
                .modes
                .iter()
                .find(|(m, o)| Some(*m) == now.mode && o.is_alive())
            {
                self.head.current_mode(object);
            }
        }
        if told.as_ref().map(|t| t.position) != Some(now.position) {
            self.head.position(now.position.x, now.position.y);
        }
        if told.as_ref().map(|t| t.transform) != Some(now.transform) {
            self.head.transform(now.transform.into());
        }
        if told.as_ref().map(|t| t.scale) != Some(now.scale) {
            self.head.scale(now.scale);
        }
        if told.is_none() && self.head.version() >= 4 {
            self.head
                .adaptive_sync(zwlr_output_head_v1::AdaptiveSyncState::Disabled);
        }
        self.told = Some(now);
    }
}

impl GlobalDispatch<ZwlrOutputManagerV1, ()> for Heapland {
    fn bind(
        state: &mut Self,
        dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwlrOutputManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        let manager = data_init.init(resource, ());
        let mut entry = Manager {
            manager,
            heads: Vec::new(),
        };
        entry.update(dh, &state.outputs);
        entry.manager.done(state.output_management.serial);
        state.output_management.managers.push(entry);
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

impl Dispatch<ZwlrOutputManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        manager: &ZwlrOutputManagerV1,
        request: zwlr_output_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        match request {
            zwlr_output_manager_v1::Request::CreateConfiguration { id, serial } => {
                data_init.init(
                    id,
                    Configuration {
                        serial,
                        heads: Mutex::default(),
                    },
                );
            }
            zwlr_output_manager_v1::Request::Stop => {
                manager.finished();
                state
                    .output_management
                    .managers
                    .retain(|m| &m.manager != manager);
            }
            _ => {}
        }
    }

    fn destroyed(state: &mut Self, _client: ClientId, manager: &ZwlrOutputManagerV1, _data: &()) {
        state
            .output_management
            .managers
            .retain(|m| &m.manager != manager);
    }
}

impl Dispatch<ZwlrOutputHeadV1, Output> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _head: &ZwlrOutputHeadV1,
        _request: zwlr_output_head_v1::Request,
        _data: &Output,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        // release: the object goes; nothing to undo. A released head keeps
        // its entry (its object dead), so that it is not announced again;
        // the entry goes with its output or its manager.
    }
}

impl Dispatch<ZwlrOutputModeV1, ModeData> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _mode: &ZwlrOutputModeV1,
        _request: zwlr_output_mode_v1::Request,
        _data: &ModeData,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
    }
}

impl Dispatch<ZwlrOutputConfigurationV1, Configuration> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        configuration: &ZwlrOutputConfigurationV1,
        request: zwlr_output_configuration_v1::Request,
        data: &Configuration,
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use zwlr_output_configuration_v1::{Error, Request};
        let Ok(mut heads) = data.heads.lock() else {
            return;
        };
        let used = heads.used;
        let (head, settings) = match request {
            Request::EnableHead { id, head } => {
                let settings = Settings::default();
                data_init.init(
                    id,
                    ConfigurationHead {
                        output: head.data::<Output>().cloned(),
                        settings: settings.clone(),
                    },
                );
                (head, Some(settings))
            }
            Request::DisableHead { head } => (head, None),
            Request::Apply | Request::Test => {
                let apply = matches!(request, Request::Apply);
                if used {
                    configuration.post_error(
                        Error::AlreadyUsed,
                        "the configuration was applied or tested already",
                    );
                    return;
                }
                heads.used = true;
                let chosen: Vec<(Output, Option<HeadSettings>)> = heads
                    .heads
                    .iter()
                    .map(|(o, s)| {
                        (
                            o.clone(),
                            s.as_ref().and_then(|s| s.lock().ok().map(|s| s.clone())),
                        )
                    })
                    .collect();
                drop(heads);
                if data.serial != state.output_management.serial {
                    configuration.cancelled();
                    return;
                }
                let unconfigured: Vec<String> = state
                    .outputs
                    .iter()
                    .filter(|o| !chosen.iter().any(|(c, _)| c == *o))
                    .map(|o| o.name())
                    .collect();
                if !unconfigured.is_empty() {
                    configuration.post_error(
                        Error::UnconfiguredHead,
                        format!(
                            "heads neither enabled nor disabled: {}",
                            unconfigured.join(", ")
                        ),
                    );
                    return;
                }
                match state.configure_outputs(&chosen, apply) {
                    Ok(()) => configuration.succeeded(),
                    Err(err) => {
                        info!("output configuration refused: {err}");
                        configuration.failed();
                    }
                }
                return;
            }
            Request::Destroy => return,
            _ => return,
        };
        if used {
            configuration.post_error(
                Error::AlreadyUsed,
                "the configuration was applied or tested already",
            );
            return;
        }
        let Some(output) = head.data::<Output>().cloned() else {
            return;
        };
        if heads.heads.iter().any(|(o, _)| *o == output) {
            configuration.post_error(
                Error::AlreadyConfiguredHead,
                format!("{} is already in this configuration", output.name()),
            );
            return;
        }
        heads.heads.push((output, settings));
    }
}

impl Dispatch<ZwlrOutputConfigurationHeadV1, ConfigurationHead> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        object: &ZwlrOutputConfigurationHeadV1,
        request: zwlr_output_configuration_head_v1::Request,
        data: &ConfigurationHead,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use zwlr_output_configuration_head_v1::{Error, Request};
        let Ok(mut settings) = data.settings.lock() else {
            return;
        };
        let already = |what: &str| {
            object.post_error(Error::AlreadySet, format!("{what} was set already"));
        };
        match request {
            Request::SetMode { mode } => {
                if settings.mode.is_some() {
                    return already("the mode");
                }
                match mode.data::<ModeData>() {
                    Some((output, m)) if Some(output) == data.output.as_ref() => {
                        settings.mode = Some(RequestedMode::Listed(*m))
                    }
                    _ => object.post_error(Error::InvalidMode, "not a mode of this head"),
                }
            }
            Request::SetCustomMode {
                width,
                height,
                refresh,
            } => {
                if settings.mode.is_some() {
                    return already("the mode");
                }
                if width <= 0 || height <= 0 || refresh < 0 {
                    object.post_error(
                        Error::InvalidCustomMode,
                        format!("{width}x{height}@{refresh} mHz is not a mode"),
                    );
                    return;
                }
                let refresh = if refresh == 0 { 60_000 } else { refresh };
                settings.mode = Some(RequestedMode::Custom(OutputMode {
                    size: (width, height).into(),
                    refresh,
                }));
            }
            Request::SetPosition { x, y } => {
                if settings.position.is_some() {
                    return already("the position");
                }
                settings.position = Some((x, y).into());
            }
            Request::SetTransform { transform } => {
                if settings.transform.is_some() {
                    return already("the transform");
                }
                match transform {
                    WEnum::Value(t) => settings.transform = Some(Transform::from(t)),
                    WEnum::Unknown(v) => object.post_error(
                        Error::InvalidTransform,
                        format!("{v} is not a wl_output transform"),
                    ),
                }
            }
            Request::SetScale { scale } => {
                if settings.scale.is_some() {
                    return already("the scale");
                }
                if !(scale.is_finite() && scale > 0.0) {
                    object.post_error(Error::InvalidScale, format!("{scale} is not a scale"));
                    return;
                }
                settings.scale = Some(scale);
            }
            Request::SetAdaptiveSync { state } => {
                if settings.adaptive_sync.is_some() {
                    return already("adaptive sync");
                }
                match state {
                    WEnum::Value(s) => {
                        settings.adaptive_sync =
                            Some(s == zwlr_output_head_v1::AdaptiveSyncState::Enabled)
                    }
                    WEnum::Unknown(v) => object.post_error(
                        Error::InvalidAdaptiveSyncState,
                        format!("{v} is not an adaptive sync state"),
                    ),
                }
            }
            _ => {}
        }
    }
}
