//! Start-up, globals, CLI and shutdown of the real `heapland` binary.

mod common;

use std::process::Command;

use common::{heapland_bin, private_dir, Compositor};

#[test]
fn advertises_every_global_with_expected_versions() {
    let comp = Compositor::start();
    let client = comp.connect();
    let globals = client.globals.contents().clone_list();
    let version = |name: &str| {
        globals
            .iter()
            .find(|g| g.interface == name)
            .map(|g| g.version)
            .unwrap_or_else(|| {
                panic!(
                    "global {name} missing; have {:?}",
                    globals.iter().map(|g| &g.interface).collect::<Vec<_>>()
                )
            })
    };
    assert!(version("wl_compositor") >= 5);
    assert!(version("wl_subcompositor") >= 1);
    assert!(version("wl_shm") >= 1);
    assert!(version("wl_seat") >= 5);
    assert!(version("wl_output") >= 4);
    assert!(version("zxdg_output_manager_v1") >= 3);
    assert!(version("xdg_wm_base") >= 5);
    // Feedback (v4+) needs a main device clients can open: a render node.
    if common::render_node().is_some() {
        assert!(
            version("zwp_linux_dmabuf_v1") >= 4,
            "feedback with a render node"
        );
    } else {
        assert_eq!(version("zwp_linux_dmabuf_v1"), 3, "no feedback without DRM");
    }
    assert!(version("wp_presentation") >= 1);
    assert!(version("wp_viewporter") >= 1);
    assert!(version("wp_fractional_scale_manager_v1") >= 1);
    assert_eq!(version("xx_dmabuf_heap_manager_v1"), 1);
    assert_eq!(version("wp_security_context_manager_v1"), 1);
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() {
    let mut comp = Compositor::start();
    let socket = comp.dir.join(&comp.socket);
    assert!(socket.exists());
    let status = comp.terminate();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        comp.log_text()
    );
    assert!(!socket.exists(), "socket left behind after shutdown");
    assert!(
        comp.log_text().contains("shutting down"),
        "{}",
        comp.log_text()
    );
}

#[test]
fn without_xdg_runtime_dir_it_fails_with_a_clear_message() {
    let out = Command::new(heapland_bin())
        .args(["--backend", "headless"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run heapland");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("XDG_RUNTIME_DIR"), "stderr: {stderr}");
}

#[test]
fn a_socket_in_use_is_refused_with_a_clear_message() {
    let comp = Compositor::start();
    let out = Command::new(heapland_bin())
        .args(["--backend", "headless", "--socket", &comp.socket])
        .env("XDG_RUNTIME_DIR", &comp.dir)
        .output()
        .expect("run second heapland");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("socket") && stderr.contains(&comp.socket),
        "stderr: {stderr}"
    );
}

#[test]
fn bad_output_mode_is_rejected() {
    let dir = private_dir("badmode");
    let out = Command::new(heapland_bin())
        .args(["--backend", "headless", "--output", "0x100@60"])
        .env("XDG_RUNTIME_DIR", &dir)
        .output()
        .expect("run heapland");
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit with 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0x100"), "stderr: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_names_every_option() {
    let out = Command::new(heapland_bin())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--backend",
        "--socket",
        "--output",
        "--log",
        "--screenshot",
        "headless",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}:\n{help}");
    }
}

#[test]
fn auto_backend_without_display_is_headless_and_says_how_to_connect() {
    let dir = private_dir("auto");
    let child = Command::new(heapland_bin())
        .args(["--socket", "auto-test"])
        .env("XDG_RUNTIME_DIR", &dir)
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.join("auto-test").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socket never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::signal(child.id(), rustix::process::Signal::TERM);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("WAYLAND_DISPLAY=auto-test"),
        "stdout: {stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
