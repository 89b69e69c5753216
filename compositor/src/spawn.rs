//! Starting programs as clients of this compositor: bindings, autostart and
//! `--exec`.

use std::{
    os::unix::process::CommandExt,
    process::{Command, Stdio},
};

use tracing::{info, warn};

/// Runs `command_line` with `/bin/sh -c`, connected to the socket
/// `socket_name` (in heapland's own XDG_RUNTIME_DIR) and to Xwayland's
/// `x_display` when it runs, in a process group of
/// its own so that signals meant for heapland's terminal do not reach it.
/// A thread waits for it, so that it leaves no zombie behind.
pub fn spawn(command_line: &str, socket_name: &str, x_display: Option<u32>) {
    let mut command = Command::new("/bin/sh");
    match x_display {
        Some(display) => command.env("DISPLAY", format!(":{display}")),
        // heapland's own DISPLAY (nested under X) is not Xwayland's.
        None => command.env_remove("DISPLAY"),
    };
    command
        .arg("-c")
        .arg(command_line)
        .env("WAYLAND_DISPLAY", socket_name)
        .env("XDG_SESSION_TYPE", "wayland")
        .stdin(Stdio::null())
        .process_group(0);
    match command.spawn() {
        Ok(mut child) => {
            info!(pid = child.id(), "started {command_line:?}");
            let waited = std::thread::Builder::new()
                .name("heapland-child".into())
                .spawn(move || child.wait());
            if let Err(err) = waited {
                warn!("cannot wait for {command_line:?}: {err}");
            }
        }
        Err(err) => warn!("cannot start {command_line:?}: {err}"),
    }
}
