//! A third-party camera pipeline against heapland on vkms: Debian's GStreamer (from the
//! host's /usr, shared into the guest) runs `v4l2src` on vivid into `waylandsink`, and
//! heapland scans the result out on vkms. The scanout buffer (heapland's screenshot reads
//! it through a mapping of the dma-buf) must show vivid's colour bars; the kernel's
//! `bufinfo` then says who exported the buffers on the way (printed, and the scanout
//! buffers must come from a heap).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    compositor::{read_png, Heapland, RUNTIME_DIR, SOCKET},
    session::bufinfo,
    v4l2, Test,
};

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "camera_pipeline::gstreamer_v4l2src_to_waylandsink_on_vkms",
        run: gstreamer_v4l2src_to_waylandsink_on_vkms,
    }]
}

/// vivid's default test pattern, 75% colour bars: the six coloured bars, in RGB.
const BARS: [(&str, [u8; 3]); 6] = [
    ("yellow", [191, 191, 0]),
    ("cyan", [0, 191, 191]),
    ("green", [0, 191, 0]),
    ("magenta", [191, 0, 191]),
    ("red", [191, 0, 0]),
    ("blue", [0, 0, 191]),
];

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 40)
}

/// Kills the pipeline on drop.
struct Pipeline(Child);

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gstreamer_v4l2src_to_waylandsink_on_vkms() -> Result<(), String> {
    let gst = Path::new("/usr/bin/gst-launch-1.0");
    if !gst.exists() {
        return Err("no /usr/bin/gst-launch-1.0: is the host's /usr shared?".into());
    }
    // Only the node: GStreamer opens the device itself.
    let (video_node, video) = v4l2::find_capture("vivid")?;
    drop(video);
    let device = video_node
        .to_str()
        .ok_or("non-UTF-8 video node")?
        .to_owned();
    let mut comp = Heapland::start_with(&["--backend", "drm"])?;
    let log = std::fs::File::create("/tmp/gst.log").map_err(|e| e.to_string())?;
    let mut pipeline = Pipeline(
        Command::new(gst)
            .args([
                "-q",
                "v4l2src",
                &format!("device={device}"),
                "io-mode=dmabuf",
                "!",
                "video/x-raw,format=BGRx,width=640,height=480",
                "!",
                "waylandsink",
            ])
            .env("XDG_RUNTIME_DIR", RUNTIME_DIR)
            .env("WAYLAND_DISPLAY", SOCKET)
            .env("HOME", "/tmp")
            .env("GST_REGISTRY", "/tmp/gst-registry.bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn gst-launch-1.0: {e}"))?,
    );
    let gst_log = || std::fs::read_to_string("/tmp/gst.log").unwrap_or_default();

    // Up to a minute: the first run builds GStreamer's plugin registry under TCG.
    let deadline = Instant::now() + Duration::from_secs(90);
    let seen = loop {
        comp.alive()?;
        if let Ok(Some(st)) = pipeline.0.try_wait() {
            return Err(format!(
                "gst-launch-1.0 exited ({st}): {}",
                gst_log().trim()
            ));
        }
        comp.signal(rustix::process::Signal::USR1);
        std::thread::sleep(Duration::from_millis(500));
        if let Some((w, rgb)) = read_png(&comp.png) {
            let h = (rgb.len() / 3) as u32 / w.max(1);
            let mut found: Vec<&str> = Vec::new();
            for y in (0..h).step_by(8) {
                for x in (0..w).step_by(8) {
                    let i = ((y * w + x) * 3) as usize;
                    let px = [rgb[i], rgb[i + 1], rgb[i + 2]];
                    for (name, c) in BARS {
                        if near(px, c) && !found.contains(&name) {
                            found.push(name);
                        }
                    }
                }
            }
            if found.len() >= 5 {
                break found;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "vivid's colour bars never appeared in the scanout buffer; gst: {}",
                gst_log().trim()
            ));
        }
    };

    // Who exported what, while the pipeline runs.
    let bufs = bufinfo()?;
    let heaps: Vec<String> = std::fs::read_dir("/dev/dma_heap")
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let scanout: Vec<_> = bufs
        .iter()
        .filter(|b| b.attached.iter().any(|a| a.contains("vkms")))
        .collect();
    for b in &bufs {
        println!(
            "INFO camera_pipeline: dma-buf exported by {} ({}) attached to [{}]",
            b.exp_name,
            if b.name.is_empty() {
                "unnamed"
            } else {
                &b.name
            },
            b.attached.join(", ")
        );
    }
    if !scanout.iter().any(|b| heaps.contains(&b.exp_name)) {
        return Err(format!(
            "no buffer attached to vkms comes from a heap: {:?}",
            scanout.iter().map(|b| &b.exp_name).collect::<Vec<_>>()
        ));
    }
    println!(
        "INFO camera_pipeline: v4l2src ! waylandsink on heapland/vkms shows bars {}",
        seen.join(", ")
    );
    drop(pipeline);
    comp.stop()
}
