//! `heapland`: a Wayland compositor whose buffers come from DMA-BUF heaps.

mod activation;
mod backend;
mod bindings;
mod capture;
mod cli;
mod config;
mod config_watch;
mod cpu_upload;
mod cursor_theme;
mod decoration;
mod dmabuf_params;
mod feedback;
mod focus;
mod foreign_toplevel;
mod frame_stats;
mod heap_protocol;
mod heap_protocol_v2;
mod heap_watch;
mod heaps;
mod idle;
mod image_copy_capture;
mod input;
mod layer_shell;
mod linux_dmabuf;
mod linux_feedback;
mod move_grab;
mod node_access;
mod output_management;
mod output_power;
mod peer;
mod popup;
mod redraw;
mod renderer;
mod resize_grab;
mod scene;
mod screencopy;
mod screenshot;
mod seat_protocols;
mod security_context;
mod selection;
mod session_lock;
mod shm_copy;
mod spawn;
mod state;
mod xwayland;
mod xwayland_surface;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(err) => {
            eprintln!("heapland: invalid --log filter: {err}");
            return ExitCode::from(2);
        }
    };
    // Colours only on a terminal: logs in files and test output stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();

    match backend::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("heapland: cannot run: {err}");
            ExitCode::FAILURE
        }
    }
}
