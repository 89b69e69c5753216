//! heapland as a seat user runs it: not root, its display and input
//! devices opened through libseat by seatd (Debian's, the seat daemon a
//! logind-less system uses; logind hands out devices the same way), with
//! the DRM nodes' `uaccess` ACL logind would give the active session's
//! user. It shows a frame on vkms and serves a client (grim).

use std::{
    fs::File,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    acl::{AclGrant, Named},
    peers::{ensure_peer_user, private_dir, start_seatd, PEER_UID, SEATD_SOCK},
    Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "seat_user::heapland_runs_as_a_seat_user_through_seatd",
        run: heapland_runs_as_a_seat_user_through_seatd,
    }]
}

const RUNTIME_DIR: &str = "/run/user/1000";
const SOCKET: &str = "heapland-seat-user";
const LOG: &str = "/tmp/heapland-seat-user.log";
/// heapland's clear colour as pixman draws it.
const BACKGROUND: [u8; 3] = [25, 30, 40];

/// Kills what it holds when the test ends.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log() -> String {
    std::fs::read_to_string(LOG).unwrap_or_default()
}

/// The real user id of process `pid`.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

fn heapland_runs_as_a_seat_user_through_seatd() -> Result<(), String> {
    ensure_peer_user()?;
    let dir = private_dir(RUNTIME_DIR, PEER_UID)?;
    private_dir("/tmp/peer-home", PEER_UID)?;
    let _ = std::fs::remove_file(dir.join(SOCKET));
    let seatd = start_seatd()?;
    let mut reaper = Reaper(vec![seatd]);
    let _uaccess = std::fs::read_dir("/dev/dri")
        .map_err(|e| format!("/dev/dri: {e}"))?
        .flatten()
        .map(|e| AclGrant::add(&e.path(), Named::User(PEER_UID), AclGrant::READ_WRITE))
        .collect::<Result<Vec<_>, _>>()?;
    let card = super::drm_card::find("vkms", "card")?.path.clone();
    let card_path = card.to_string_lossy().into_owned();
    let child = Command::new("/bin/heapland")
        .args([
            "--backend",
            "drm",
            "--drm-device",
            &card_path,
            "--renderer",
            "pixman",
            "--socket",
            SOCKET,
        ])
        .env_clear()
        .env("PATH", "/bin:/sbin:/usr/bin")
        .env("HOME", "/tmp/peer-home")
        .env("XDG_RUNTIME_DIR", &dir)
        .env("LIBSEAT_BACKEND", "seatd")
        .env("SEATD_SOCK", SEATD_SOCK)
        .env("RUST_LOG", "info")
        .uid(PEER_UID)
        .gid(PEER_UID)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(LOG).map_err(|e| format!("{LOG}: {e}"))?)
        .spawn()
        .map_err(|e| format!("spawn /bin/heapland: {e}"))?;
    let pid = child.id();
    reaper.0.push(child);

    let uid = uid_of(pid);
    if uid != Some(PEER_UID) {
        return Err(format!("heapland runs as uid {uid:?}, not {PEER_UID}"));
    }
    // Its first frame on vkms: the plane shows a framebuffer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (w, rgb) = loop {
        if let Some(Ok(Some(status))) = reaper.0.last_mut().map(|c| c.try_wait()) {
            return Err(format!("heapland exited ({status}):\n{}", log()));
        }
        let grim = Command::new("/usr/bin/grim")
            .arg("/tmp/heapland-seat-user.png")
            .env("XDG_RUNTIME_DIR", &dir)
            .env("WAYLAND_DISPLAY", SOCKET)
            .output();
        if let Ok(out) = &grim {
            if out.status.success() {
                if let Some(picture) =
                    super::compositor::read_png(std::path::Path::new("/tmp/heapland-seat-user.png"))
                {
                    break picture;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no picture from grim after 60 s ({:?}):\n{}",
                grim.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()),
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let all = rgb.len() / 3;
    let background = rgb.chunks_exact(3).filter(|p| *p == BACKGROUND).count();
    if w != 1024 || background != all {
        return Err(format!(
            "grim's {w}-wide picture has {background} of {all} background pixels:\n{}",
            log()
        ));
    }
    let (active, fb) = super::input::vkms_power()?;
    if !active || fb == 0 {
        return Err(format!(
            "vkms's CRTC active={active}, primary plane fb={fb}:\n{}",
            log()
        ));
    }
    println!(
        "INFO seat_user: heapland as uid {PEER_UID} through seatd drives vkms ({card_path}); grim reads its {w}x{} picture",
        all / w as usize
    );
    Ok(())
}
