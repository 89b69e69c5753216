//! `heapland-power off|on|toggle [--output NAME]`: turns displays off and
//! on through `zwlr_output_power_manager_v1`, for idle daemons:
//!
//! ```sh
//! swayidle -w timeout 600 'heapland-power off' resume 'heapland-power on'
//! ```
//!
//! Any compositor with that protocol will do. It waits until the
//! compositor has handled the change, and fails (exit status 1, with the
//! reason) when an output's power control failed or the compositor has no
//! such global.

use std::{collections::HashMap, process::ExitCode};

use clap::{Parser, ValueEnum};
use wayland_client::{
    globals::{registry_queue_init, GlobalListContents},
    protocol::{wl_output, wl_registry},
    Connection, Dispatch, Proxy, QueueHandle, WEnum,
};
use wayland_protocols_wlr::output_power_management::v1::client::{
    zwlr_output_power_manager_v1::ZwlrOutputPowerManagerV1,
    zwlr_output_power_v1::{self, Mode, ZwlrOutputPowerV1},
};

/// Turns the compositor's outputs off or on (wlr-output-power-management).
#[derive(Debug, Parser)]
#[command(name = "heapland-power", version, about)]
struct Args {
    /// What to do with each output.
    action: Action,
    /// Only the output of this name (as `wl_output.name` gives it, e.g.
    /// `Virtual-1`); default: every output.
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Action {
    Off,
    On,
    Toggle,
}

#[derive(Debug, thiserror::Error)]
enum PowerError {
    #[error("cannot connect to the compositor (is WAYLAND_DISPLAY set?): {0}")]
    Connect(#[from] wayland_client::ConnectError),
    #[error("cannot read the compositor's globals: {0}")]
    Globals(#[from] wayland_client::globals::GlobalError),
    #[error("the compositor has no zwlr_output_power_manager_v1 (or hides it from this client)")]
    NoManager,
    #[error("the connection failed: {0}")]
    Dispatch(#[from] wayland_client::DispatchError),
    #[error("no output named {0:?} (outputs: {1})")]
    NoSuchOutput(String, String),
    #[error("the compositor has no outputs")]
    NoOutputs,
    #[error("output {0}: the compositor cannot change its power mode")]
    Failed(String),
}

/// One output and its power control.
#[derive(Debug, Default)]
struct Target {
    name: Option<String>,
    mode: Option<Mode>,
    failed: bool,
}

#[derive(Debug, Default)]
struct State {
    /// By wl_output protocol id.
    outputs: HashMap<u32, Target>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("heapland-power: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), PowerError> {
    let conn = Connection::connect_to_env()?;
    let (globals, mut queue) = registry_queue_init::<State>(&conn)?;
    let qh = queue.handle();
    let manager: ZwlrOutputPowerManagerV1 = globals
        .bind(&qh, 1..=1, ())
        .map_err(|_| PowerError::NoManager)?;
    let mut state = State::default();
    let outputs: Vec<wl_output::WlOutput> = globals.contents().with_list(|list| {
        list.iter()
            .filter(|g| g.interface == wl_output::WlOutput::interface().name)
            .map(|g| {
                globals
                    .registry()
                    .bind(g.name, g.version.clamp(1, 4), &qh, ())
            })
            .collect()
    });
    if outputs.is_empty() {
        return Err(PowerError::NoOutputs);
    }
    // Names (wl_output 4) and current modes.
    let mut controls = Vec::new();
    for output in &outputs {
        state
            .outputs
            .insert(output.id().protocol_id(), Target::default());
        controls.push((
            output.id().protocol_id(),
            manager.get_output_power(output, &qh, output.id().protocol_id()),
        ));
    }
    queue.roundtrip(&mut state)?;

    let chosen: Vec<&(u32, ZwlrOutputPowerV1)> = match &args.output {
        None => controls.iter().collect(),
        Some(name) => {
            let found: Vec<_> = controls
                .iter()
                .filter(|(id, _)| state.outputs[id].name.as_deref() == Some(name.as_str()))
                .collect();
            if found.is_empty() {
                let names: Vec<String> = state
                    .outputs
                    .values()
                    .map(|t| t.name.clone().unwrap_or_else(|| "(unnamed)".into()))
                    .collect();
                return Err(PowerError::NoSuchOutput(name.clone(), names.join(", ")));
            }
            found
        }
    };
    let mut wanted = Vec::new();
    for (id, control) in chosen {
        let target = &state.outputs[id];
        let label = target.name.clone().unwrap_or_else(|| format!("#{id}"));
        if target.failed {
            return Err(PowerError::Failed(label));
        }
        let mode = match (args.action, target.mode) {
            (Action::Off, _) => Mode::Off,
            (Action::On, _) => Mode::On,
            (Action::Toggle, Some(Mode::Off)) => Mode::On,
            (Action::Toggle, _) => Mode::Off,
        };
        control.set_mode(mode);
        wanted.push((*id, label, mode));
    }
    // A compositor that cannot change an output's mode says `failed` before
    // it answers the roundtrip's sync. Its `mode` events may already tell
    // of a later change by someone else (an idle daemon's next command,
    // input lighting the outputs): not a failure of this one.
    queue.roundtrip(&mut state)?;
    for (id, label, _) in wanted {
        if state.outputs[&id].failed {
            return Err(PowerError::Failed(label));
        }
    }
    Ok(())
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for State {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<ZwlrOutputPowerManagerV1, ()> for State {
    fn event(
        _: &mut Self,
        _: &ZwlrOutputPowerManagerV1,
        _: <ZwlrOutputPowerManagerV1 as Proxy>::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<wl_output::WlOutput, ()> for State {
    fn event(
        state: &mut Self,
        output: &wl_output::WlOutput,
        event: wl_output::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_output::Event::Name { name } = event {
            state
                .outputs
                .entry(output.id().protocol_id())
                .or_default()
                .name = Some(name);
        }
    }
}

impl Dispatch<ZwlrOutputPowerV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &ZwlrOutputPowerV1,
        event: zwlr_output_power_v1::Event,
        output: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let target = state.outputs.entry(*output).or_default();
        match event {
            zwlr_output_power_v1::Event::Mode {
                mode: WEnum::Value(mode),
            } => target.mode = Some(mode),
            zwlr_output_power_v1::Event::Failed => target.failed = true,
            _ => {}
        }
    }
}
