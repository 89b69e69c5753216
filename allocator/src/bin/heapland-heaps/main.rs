//! `heapland-heaps`: which DMA-BUF heaps this system has, and which one
//! heapland-allocator would choose for a set of devices, for people (text)
//! and for scripts (`--json`).
//!
//! Everything it says comes from the library: discovery lists the heaps,
//! `explain_choice` makes the very choice `choose` (and so `Explained::allocator`)
//! makes, with the verdict on every other heap. This file only turns command
//! lines into calls and answers into exit statuses (`cli::status`).

mod cli;
mod report;
mod text;

use std::{
    io::{self, Write},
    os::unix::fs::FileTypeExt,
    process::ExitCode,
};

use clap::Parser;
use heapland_allocator::{
    explain_choice, negotiation::device_constraints, pick_modifier, resolve_devices, DeviceNumber,
    Discovery, Error, SysRoots,
};

use crate::{
    cli::{status, Cli, Command, DeviceArg, For},
    report::{DeviceReport, ErrorReport, ForReport, ListReport, VERSION},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let roots = SysRoots {
        sysfs: cli.global.sysfs_root.clone(),
        dev: cli.global.dev_root.clone(),
    };
    let json = cli.global.json;
    let discovery = Discovery::scan_roots(&roots);
    let (code, output) = match &cli.command {
        None | Some(Command::List) => list(&discovery, json),
        Some(Command::For(args)) => match choose(&discovery, args, json) {
            Ok(done) => done,
            Err(usage) => {
                eprintln!("heapland-heaps: {usage}");
                return ExitCode::from(status::USAGE);
            }
        },
    };
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("heapland-heaps: cannot write the output: {err}");
        return ExitCode::from(status::FAILURE);
    }
    ExitCode::from(code)
}

/// Serializes a report, or says why not (never expected: the reports hold
/// only strings, numbers and lists).
fn to_json(report: &impl serde::Serialize) -> (u8, String) {
    match serde_json::to_string_pretty(report) {
        Ok(mut s) => {
            s.push('\n');
            (status::OK, s)
        }
        Err(err) => {
            eprintln!("heapland-heaps: cannot write JSON: {err}");
            (status::FAILURE, String::new())
        }
    }
}

/// Says on stderr why the command fails, and keeps it for the JSON (on one
/// line: a message's continuation lines start with a newline and two
/// spaces).
fn fail(status: u8, message: String) -> ErrorReport {
    eprintln!("heapland-heaps: {message}");
    ErrorReport::new(status, message.replace("\n  ", " "))
}

/// The message for a system without heaps, with what to do about it.
fn no_heaps_message(discovery: &Discovery, reason: &str) -> String {
    let module = if discovery.roots().sysfs.join("module/device_heap").exists() {
        "device_heap is loaded but serves no device: add one with\n  \
         `echo platform/vivid.0 > /sys/class/device_heap/add`."
    } else {
        "device_heap (heapland's module) is not loaded: load it with\n  \
         `modprobe device_heap devices=<bus>/<device>[:contig|:sg],...`\n  \
         (e.g. devices=platform/vivid.0,pci/0000:00:02.0)."
    };
    format!(
        "this system has no DMA-BUF heaps: {reason}.\n  {module}\n  \
         The kernel's own system heap needs CONFIG_DMABUF_HEAPS_SYSTEM, \
         /dev/udmabuf CONFIG_UDMABUF."
    )
}

/// `heapland-heaps list`.
fn list(discovery: &Discovery, json: bool) -> (u8, String) {
    let mut report = ListReport::new(discovery);
    let mut code = status::OK;
    if let Some(reason) = discovery.empty_reason() {
        code = status::NO_HEAPS;
        report.error = Some(fail(code, no_heaps_message(discovery, &reason)));
    }
    if json {
        let (json_code, out) = to_json(&report);
        (code.max(json_code), out)
    } else if code == status::NO_HEAPS {
        // stderr has said it all.
        (code, String::new())
    } else {
        (code, text::list(&report))
    }
}

/// The device number behind a command-line device: MAJ:MIN as given, or a
/// character device node's. A path that is not one is a usage error.
fn device_number(arg: &DeviceArg) -> Result<DeviceNumber, String> {
    match arg {
        DeviceArg::Number(n) => Ok(*n),
        DeviceArg::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !meta.file_type().is_char_device() {
                return Err(format!(
                    "{}: not a character device (give a device node such as /dev/video0, or MAJ:MIN)",
                    path.display()
                ));
            }
            DeviceNumber::of_path(path).map_err(|e| e.to_string())
        }
    }
}

/// The exit status of a library error met while choosing.
fn status_of(err: &Error) -> u8 {
    match err {
        Error::NoHeaps { .. } => status::NO_HEAPS,
        Error::NoHeap { .. } | Error::TooLarge { .. } | Error::UnsupportedModifiers { .. } => {
            status::NO_FIT
        }
        Error::Layout(_) => status::USAGE,
        _ => status::FAILURE,
    }
}

/// `heapland-heaps for`: `Err` is a usage error in a DEVICE argument,
/// printed as text only.
fn choose(discovery: &Discovery, args: &For, json: bool) -> Result<(u8, String), String> {
    let numbered: Vec<(String, DeviceNumber)> = args
        .devices
        .iter()
        .map(|a| device_number(a).map(|n| (a.to_string(), n)))
        .collect::<Result<_, _>>()?;
    let mut report = ForReport {
        version: VERSION,
        ..Default::default()
    };
    let code = fill_choice(discovery, args, &numbered, &mut report);
    if json {
        let (json_code, out) = to_json(&report);
        Ok((code.max(json_code), out))
    } else if report.buffer.is_none() {
        // Failed before any heap was judged: stderr has said it all.
        Ok((code, String::new()))
    } else {
        Ok((code, text::choice(&report)))
    }
}

/// Fills `report` with the choice for `numbered` devices and returns the
/// exit status.
fn fill_choice(
    discovery: &Discovery,
    args: &For,
    numbered: &[(String, DeviceNumber)],
    report: &mut ForReport,
) -> u8 {
    if let Some(reason) = discovery.empty_reason() {
        report.error = Some(fail(status::NO_HEAPS, no_heaps_message(discovery, &reason)));
        return status::NO_HEAPS;
    }
    let numbers: Vec<DeviceNumber> = numbered.iter().map(|(_, n)| *n).collect();
    let devices = match resolve_devices(discovery, &numbers) {
        Ok(d) => d,
        Err(err) => {
            let code = status_of(&err);
            report.error = Some(fail(code, err.to_string()));
            return code;
        }
    };
    let needs = device_constraints(discovery, &devices);
    report.devices = devices
        .iter()
        .zip(&needs)
        .map(|(d, c)| {
            let arg = numbered
                .iter()
                .find(|(_, n)| *n == d.number)
                .map(|(a, _)| a.clone())
                .unwrap_or_else(|| d.number.to_string());
            DeviceReport::new(arg, d, Some(c))
        })
        .collect();
    let modifiers: Vec<_> = args.modifiers.iter().map(|m| m.0).collect();
    let modifier = pick_modifier(args.format.fourcc, &modifiers);
    let explained = match explain_choice(
        discovery,
        &devices,
        &[],
        args.format.fourcc,
        args.size.width,
        args.size.height,
    ) {
        Ok(e) => e,
        Err(err) => {
            let code = status_of(&err);
            report.error = Some(fail(code, err.to_string()));
            return code;
        }
    };
    report.explained(
        discovery,
        &explained,
        args.format.name,
        modifier.as_ref().ok().copied(),
    );
    if let Err(err) = modifier {
        report.error = Some(fail(status::NO_FIT, err.to_string()));
        return status::NO_FIT;
    }
    match explained.heap() {
        Ok(_) => status::OK,
        Err(err) => {
            // The per-heap reasons are in the report: stderr gets the first
            // sentence only.
            let code = status_of(&err);
            let message = err.to_string();
            let first = message.split("; ").next().unwrap_or_default();
            eprintln!("heapland-heaps: {first} (see \"passed over\")");
            report.error = Some(ErrorReport::new(code, message));
            code
        }
    }
}
