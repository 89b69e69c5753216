//! Command line of `heapland`.
//!
//! Kept apart from `main` so the option set is one place a reader can check
//! against `heapland --help`.

use std::{path::PathBuf, str::FromStr};

use clap::{Parser, ValueEnum};

/// A Wayland compositor whose buffers come from Linux DMA-BUF heaps.
///
/// Clients connect through the socket printed at start-up
/// (`WAYLAND_DISPLAY=<socket>` in the same XDG_RUNTIME_DIR).
#[derive(Debug, Parser)]
#[command(name = "heapland", version, about, long_about = None)]
pub struct Cli {
    /// Backend to run on. `auto` picks headless when neither WAYLAND_DISPLAY
    /// nor DISPLAY is set (and when built without the `winit` feature).
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,

    /// Configuration file (default: $XDG_CONFIG_HOME/heapland/config.toml,
    /// else ~/.config/heapland/config.toml; without one, the defaults in
    /// config.example.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// A command line to run (with /bin/sh -c) as a client once heapland
    /// listens, after the configuration's autostart (repeatable).
    #[arg(long = "exec", value_name = "CMD")]
    pub exec: Vec<String>,

    /// Name of the Wayland socket to create in XDG_RUNTIME_DIR
    /// (default: the first free wayland-N).
    #[arg(long, value_name = "NAME")]
    pub socket: Option<String>,

    /// A virtual output of the headless backend, as WIDTHxHEIGHT@HZ
    /// (repeatable; default 1280x720@60). With the drm backend: the mode to
    /// set on each connector in turn, if it has that mode.
    #[arg(long = "output", value_name = "WxH@HZ")]
    pub outputs: Vec<OutputMode>,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or
    /// `heapland=debug,smithay=warn` (RUST_LOG is used when absent).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// PNG file to write the first output's picture to: on SIGUSR1, and after
    /// every frame with --screenshot-every-frame.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,

    /// Write the --screenshot PNG after every rendered frame (for tests; slow).
    #[arg(long, requires = "screenshot")]
    pub screenshot_every_frame: bool,

    /// DRM device for the drm backend, e.g. /dev/dri/card0 (default: the
    /// first one on the seat with a connected display).
    #[arg(long, value_name = "PATH")]
    pub drm_device: Option<PathBuf>,

    /// A device node whose memory constraints the drm backend's scanout
    /// buffers must also meet, e.g. /dev/video0 for a camera whose frames end
    /// up on screen (repeatable). The render node is always included.
    #[arg(long = "share-with", value_name = "PATH")]
    pub share_with: Vec<PathBuf>,

    /// Where the drm backend's scanout buffers come from. With `heap`, a
    /// display that no DMA-BUF heap serves gets KMS dumb buffers instead, and
    /// the log says so in one line. The other backends ignore this option.
    #[arg(long, value_enum, default_value_t = AllocatorKind::Heap)]
    pub allocator: AllocatorKind,

    /// What composes the drm backend's outputs. `auto` takes GLES where EGL
    /// on the display device runs on a GPU, and pixman otherwise (no EGL, or
    /// software GL), saying which in one log line. The headless backend
    /// always uses pixman, the nested one GLES.
    #[arg(long, value_enum, default_value_t = RendererKind::Auto)]
    pub renderer: RendererKind,

    /// Write running totals to PATH (truncated first) once a second, for
    /// benchmarks: frames shown (composited or scanned out directly),
    /// buffers heapland allocated, and its CPU time (format in
    /// frame_stats.rs).
    #[arg(long, value_name = "PATH")]
    pub stats: Option<PathBuf>,
}

/// What composes the drm backend's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RendererKind {
    /// GLES if EGL on the display device runs on a GPU, else pixman.
    Auto,
    /// Smithay's GLES renderer over EGL on the display device's GBM: the
    /// GPU draws into the scanout buffers, imported as EGL images. Software
    /// GL (llvmpipe) too, from Mesa 26.1 on.
    Gles,
    /// Smithay's pixman renderer: the CPU draws into mapped buffers.
    Pixman,
}

/// The memory the drm backend scans out of; the renderer draws into it
/// whichever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllocatorKind {
    /// The DMA-BUF heap that serves the display, the render node and every
    /// --share-with device (heapland-allocator); dumb buffers if none does.
    Heap,
    /// Mesa's GBM on the display device (kms_swrast on display-only devices
    /// such as vkms): a baseline to measure heaps against.
    Gbm,
    /// KMS dumb buffers of the display device: any KMS driver makes them.
    Dumb,
}

/// Which backend drives the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Winit when built with it and a display exists, else headless.
    Auto,
    /// Virtual outputs rendered on the CPU with pixman, no display needed.
    Headless,
    /// The session compositor on a KMS display (libseat + udev), scanning
    /// out buffers from the display device's DMA-BUF heap (see --allocator).
    Drm,
    /// A window in the host's Wayland or X11 session (feature `winit`).
    #[cfg(feature = "winit")]
    Winit,
}

/// A virtual output mode: size in pixels and refresh rate in Hz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputMode {
    pub width: u32,
    pub height: u32,
    pub refresh_hz: u32,
}

impl Default for OutputMode {
    fn default() -> Self {
        OutputMode {
            width: 1280,
            height: 720,
            refresh_hz: 60,
        }
    }
}

impl FromStr for OutputMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not WIDTHxHEIGHT@HZ (e.g. 1280x720@60)");
        let (size, hz) = s.split_once('@').unwrap_or((s, "60"));
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let width: u32 = w.parse().map_err(|_| bad())?;
        let height: u32 = h.parse().map_err(|_| bad())?;
        let refresh_hz: u32 = hz.parse().map_err(|_| bad())?;
        if !(1..=16384).contains(&width) || !(1..=16384).contains(&height) {
            return Err(format!(
                "output size {width}x{height} must be 1..=16384 in each dimension"
            ));
        }
        if !(1..=1000).contains(&refresh_hz) {
            return Err(format!("refresh rate {refresh_hz} Hz must be 1..=1000"));
        }
        Ok(OutputMode {
            width,
            height,
            refresh_hz,
        })
    }
}

impl Cli {
    /// The backend to use once `auto` has been resolved from the environment.
    pub fn resolved_backend(&self) -> BackendKind {
        match self.backend {
            #[cfg(feature = "winit")]
            BackendKind::Auto if display_present() => BackendKind::Winit,
            BackendKind::Auto => BackendKind::Headless,
            other => other,
        }
    }
}

/// Whether a host display to nest in is named by the environment.
pub fn display_present() -> bool {
    std::env::var_os("WAYLAND_DISPLAY").is_some() || std::env::var_os("DISPLAY").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!(
            "800x600@30".parse::<OutputMode>(),
            Ok(OutputMode {
                width: 800,
                height: 600,
                refresh_hz: 30
            })
        );
        assert_eq!(
            "640x480".parse::<OutputMode>().map(|m| m.refresh_hz),
            Ok(60)
        );
        assert!("0x480@60".parse::<OutputMode>().is_err());
        assert!("640x480@0".parse::<OutputMode>().is_err());
        assert!("banana".parse::<OutputMode>().is_err());
    }

    #[test]
    fn allocator_defaults_to_heap_and_takes_each_kind() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("heapland").chain(args.iter().copied()))
                .map(|cli| cli.allocator)
        };
        assert_eq!(parse(&[]).ok(), Some(AllocatorKind::Heap));
        assert_eq!(
            parse(&["--allocator", "heap"]).ok(),
            Some(AllocatorKind::Heap)
        );
        assert_eq!(
            parse(&["--allocator", "gbm"]).ok(),
            Some(AllocatorKind::Gbm)
        );
        assert_eq!(
            parse(&["--allocator", "dumb"]).ok(),
            Some(AllocatorKind::Dumb)
        );
        assert!(parse(&["--allocator", "vulkan"]).is_err());
    }
}
