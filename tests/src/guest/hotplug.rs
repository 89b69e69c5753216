//! Connector hot-plug on the drm backend: a vkms device made through
//! configfs (the 7.3 vkms has it, 6.12's has not), whose
//! connector is unplugged and plugged back by writing its `status`. heapland
//! hears the change from udev (systemd-udevd from the host's /usr) and
//! withdraws, then re-adds, the output: clients see the wl_output global go
//! and come back.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::{
    compositor::{Heapland, State},
    input::Udevd,
    Test,
};

/// Only on kernels whose vkms has configfs (Debian's 7.x; 6.12's vkms has
/// none, so there is no connector to unplug and no test to count).
pub fn tests() -> Vec<Test> {
    if kernel_major() < 7 {
        return Vec::new();
    }
    vec![Test {
        name: "hotplug::unplugged_connector_withdraws_its_output",
        run: unplugged_connector_withdraws_its_output,
    }]
}

fn kernel_major() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| r.split('.').next().and_then(|m| m.trim().parse().ok()))
        .unwrap_or(0)
}

const CONFIGFS: &str = "/sys/kernel/config";
const DEVICE: &str = "/sys/kernel/config/vkms/heapland";

/// connector_status_connected / _disconnected of enum drm_connector_status.
const CONNECTED: &str = "1";
const DISCONNECTED: &str = "2";

fn write(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

fn mkdir(path: &str) -> Result<(), String> {
    std::fs::create_dir(path).map_err(|e| format!("mkdir {path}: {e}"))
}

fn link(target: &str, at: &str) -> Result<(), String> {
    std::os::unix::fs::symlink(target, at).map_err(|e| format!("ln -s {target} {at}: {e}"))
}

/// A vkms device with one primary plane, CRTC, encoder and connector,
/// made through configfs; disabled and removed on drop.
struct ConfigfsVkms;

impl ConfigfsVkms {
    fn create() -> Result<ConfigfsVkms, String> {
        mkdir(DEVICE)?;
        let dev = ConfigfsVkms;
        mkdir(&format!("{DEVICE}/planes/primary"))?;
        write(&format!("{DEVICE}/planes/primary/type"), "1")?;
        mkdir(&format!("{DEVICE}/crtcs/crtc"))?;
        mkdir(&format!("{DEVICE}/encoders/encoder"))?;
        mkdir(&format!("{DEVICE}/connectors/connector"))?;
        link(
            &format!("{DEVICE}/crtcs/crtc"),
            &format!("{DEVICE}/planes/primary/possible_crtcs/crtc"),
        )?;
        link(
            &format!("{DEVICE}/crtcs/crtc"),
            &format!("{DEVICE}/encoders/encoder/possible_crtcs/crtc"),
        )?;
        link(
            &format!("{DEVICE}/encoders/encoder"),
            &format!("{DEVICE}/connectors/connector/possible_encoders/encoder"),
        )?;
        write(&format!("{DEVICE}/enabled"), "1")?;
        Ok(dev)
    }

    fn set_status(&self, status: &str) -> Result<(), String> {
        write(&format!("{DEVICE}/connectors/connector/status"), status)
    }
}

impl Drop for ConfigfsVkms {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("{DEVICE}/enabled"), "0");
        for l in [
            "planes/primary/possible_crtcs/crtc",
            "encoders/encoder/possible_crtcs/crtc",
            "connectors/connector/possible_encoders/encoder",
        ] {
            let _ = std::fs::remove_file(format!("{DEVICE}/{l}"));
        }
        for d in [
            "planes/primary",
            "crtcs/crtc",
            "encoders/encoder",
            "connectors/connector",
            "",
        ] {
            let _ = std::fs::remove_dir(format!("{DEVICE}/{d}"));
        }
    }
}

fn cards() -> Vec<PathBuf> {
    let mut cards: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("card"))
                })
                .collect()
        })
        .unwrap_or_default();
    cards.sort();
    cards
}

fn unplugged_connector_withdraws_its_output() -> Result<(), String> {
    if !Path::new(CONFIGFS).join("vkms").exists() {
        let out = Command::new("mount")
            .args(["-t", "configfs", "configfs", CONFIGFS])
            .output()
            .map_err(|e| format!("mount configfs: {e}"))?;
        if !out.status.success() && !Path::new(CONFIGFS).join("vkms").exists() {
            let msg = String::from_utf8_lossy(&out.stderr).into_owned();
            if !msg.contains("busy") {
                return Err(format!("mount configfs: {msg}"));
            }
        }
    }
    if !Path::new(CONFIGFS).join("vkms").exists() {
        return Err("vkms has no configfs directory on this 7.x kernel".into());
    }

    let _udevd = Udevd::start()?;
    let before = cards();
    let vkms = ConfigfsVkms::create()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let card = loop {
        if let Some(c) = cards().into_iter().find(|c| !before.contains(c)) {
            break c;
        }
        if Instant::now() > deadline {
            return Err("the configfs vkms device made no /dev/dri/card".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let card_path = card.to_string_lossy().into_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm", "--drm-device", &card_path])?;
    let (_conn, globals, mut queue) = super::compositor::connect()?;
    let outputs = |globals: &wayland_client::globals::GlobalList| {
        globals
            .contents()
            .with_list(|l| l.iter().filter(|g| g.interface == "wl_output").count())
    };
    let mut st = State::default();
    let mut wait_outputs = |want: usize, what: &str| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while outputs(&globals) != want {
            queue
                .roundtrip(&mut st)
                .map_err(|e| format!("roundtrip waiting for {what}: {e}"))?;
            comp.alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{what}: {} wl_output globals, want {want}\n{}",
                    outputs(&globals),
                    comp.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait_outputs(1, "the configfs vkms output")?;
    vkms.set_status(DISCONNECTED)?;
    wait_outputs(0, "unplugging the connector")?;
    vkms.set_status(CONNECTED)?;
    wait_outputs(1, "plugging the connector back")?;
    let log = comp.log_text();
    for line in ["disconnected, output withdrawn", "connected, output added"] {
        if !log.contains(line) {
            return Err(format!("no \"{line}\" in the log:\n{log}"));
        }
    }
    println!("INFO hotplug: {card_path}: its output went with the connector and came back");
    comp.stop()?;
    super::input::released(&card_path)?;
    drop(vkms);
    Ok(())
}
