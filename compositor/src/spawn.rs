//! Starting programs as clients of this compositor: bindings, autostart and
//! `--exec`.

use std::{
    os::unix::process::CommandExt,
    process::{Command, Stdio},
};

use tracing::{info, warn};

/// What a program heapland starts finds in its environment.
pub struct ChildEnv {
    /// heapland's socket, in heapland's own XDG_RUNTIME_DIR.
    pub socket_name: String,
    /// Xwayland's display number, when it runs.
    pub x_display: Option<u32>,
    pub cursor_theme: String,
    pub cursor_size: u32,
}

/// Runs `command_line` with `/bin/sh -c`, a client of heapland (and of its
/// Xwayland) with heapland's cursor theme, in a process group of its own
/// so that signals meant for heapland's terminal do not reach it. A thread
/// waits for it, so that it leaves no zombie behind.
pub fn spawn(command_line: &str, env: &ChildEnv) {
    let mut command = Command::new("/bin/sh");
    match env.x_display {
        Some(display) => command.env("DISPLAY", format!(":{display}")),
        // heapland's own DISPLAY (nested under X) is not Xwayland's.
        None => command.env_remove("DISPLAY"),
    };
    command
        .arg("-c")
        .arg(command_line)
        .env("WAYLAND_DISPLAY", &env.socket_name)
        .env("XDG_SESSION_TYPE", "wayland")
        .env("XCURSOR_THEME", &env.cursor_theme)
        .env("XCURSOR_SIZE", env.cursor_size.to_string())
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
