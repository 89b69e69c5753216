//! Debian's own programs in the guest: /init mounts the host's `/usr` read-only over
//! virtio-9p (tests/vm/run shares it, mount tag `hostusr`), so Mesa, GStreamer and Debian's
//! Wayland clients run there as they are, with their libraries, without being copied into
//! the initramfs. These tests show the share is there, is read-only, and that Debian's
//! dynamically linked clients work against heapland.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::compositor::{read_png, Heapland, RUNTIME_DIR, SOCKET};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "host_usr::usr_is_the_hosts_read_only",
            run: usr_is_the_hosts_read_only,
        },
        Test {
            name: "host_usr::wayland_info_sees_heapland",
            run: wayland_info_sees_heapland,
        },
        Test {
            name: "host_usr::weston_simple_shm_window_in_the_output",
            run: weston_simple_shm_window_in_the_output,
        },
    ]
}

/// The background heapland clears its outputs to.
const BACKGROUND: [u8; 3] = [25, 30, 40];

fn usr_is_the_hosts_read_only() -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/usr"))
        .ok_or("nothing mounted on /usr (see the console for the 9p mount)")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.first() != Some(&"hostusr") || fields.get(2) != Some(&"9p") {
        return Err(format!("/usr is not the host's 9p share: {line}"));
    }
    if !fields
        .get(3)
        .is_some_and(|o| o.split(',').any(|o| o == "ro"))
    {
        return Err(format!("/usr is not read-only: {line}"));
    }
    match std::fs::write("/usr/heapland-write-test", b"x") {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) => {}
        other => return Err(format!("write into /usr: {other:?}, expected EROFS")),
    }
    for p in [
        "/usr/bin/wayland-info",
        "/usr/bin/weston-simple-shm",
        "/usr/lib/x86_64-linux-gnu/dri/kms_swrast_dri.so",
    ] {
        if !Path::new(p).exists() {
            return Err(format!("{p} is not in the shared /usr"));
        }
    }
    println!("INFO host_usr: {line}");
    Ok(())
}

/// A Debian client from the shared /usr, with the compositor's environment.
fn client(name: &str) -> Command {
    let mut c = Command::new(Path::new("/usr/bin").join(name));
    c.env("XDG_RUNTIME_DIR", RUNTIME_DIR)
        .env("WAYLAND_DISPLAY", SOCKET)
        .stdin(Stdio::null());
    c
}

fn wayland_info_sees_heapland() -> Result<(), String> {
    let comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let out = client("wayland-info")
        .output()
        .map_err(|e| format!("run /usr/bin/wayland-info: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wayland-info failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for global in [
        "xx_dmabuf_heap_manager_v1",
        "zwp_linux_dmabuf_v1",
        "wl_compositor",
    ] {
        if !text.contains(global) {
            return Err(format!("wayland-info does not list {global}"));
        }
    }
    println!(
        "INFO host_usr: Debian's wayland-info lists {} globals of heapland",
        text.lines().filter(|l| l.contains("interface:")).count()
    );
    comp.stop()
}

fn weston_simple_shm_window_in_the_output() -> Result<(), String> {
    let mut comp = Heapland::start_with(&["--backend", "headless", "--output", "640x480@30"])?;
    let mut child = client("weston-simple-shm")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn /usr/bin/weston-simple-shm: {e}"))?;
    // simple-shm draws a 250x250 window at the origin; its animated pattern fills
    // (20,20)..(230,230) with anything but the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        comp.alive()?;
        if let Ok(Some(st)) = child.try_wait() {
            break Err(format!("weston-simple-shm exited early: {st}"));
        }
        comp.signal(rustix::process::Signal::USR1);
        std::thread::sleep(Duration::from_millis(300));
        if let Some((w, rgb)) = read_png(&comp.png) {
            let px = |x: u32, y: u32| {
                let i = ((y * w + x) * 3) as usize;
                [rgb[i], rgb[i + 1], rgb[i + 2]]
            };
            let mut inside_bg = 0;
            let mut colours = std::collections::HashSet::new();
            for y in (30..220).step_by(7) {
                for x in (30..220).step_by(7) {
                    inside_bg += usize::from(px(x, y) == BACKGROUND);
                    colours.insert(px(x, y));
                }
            }
            if inside_bg == 0 && colours.len() > 20 && px(500, 400) == BACKGROUND {
                println!(
                    "INFO host_usr: weston-simple-shm from /usr drew {} colours in heapland's output",
                    colours.len()
                );
                break Ok(());
            }
        }
        if Instant::now() > deadline {
            break Err("weston-simple-shm's window never appeared in the output".into());
        }
    };
    let _ = child.kill();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if let Err(e) = result {
        return Err(format!(
            "{e}; client stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    comp.stop()
}
