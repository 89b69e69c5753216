//! heapland-bench-camera: the camera-to-display part of heapland-bench
//! (tests/src/guest/camera_latency.rs).
//!
//! heapland-bench is a static musl binary and cannot link Mesa's libgbm, which
//! the copying path allocates from; it runs this glibc helper once and passes
//! its `BENCH` and `TABLE` lines through (they go to the same console).

const USAGE: &str = "\
usage: heapland-bench-camera --boot NAME [--rounds N] [--frames N]
  --boot NAME   boot name in BENCH lines
  --rounds N    runs of each path, alternating (default 5)
  --frames N    measured frames per run, after 10 of warm-up (default 60)";

#[cfg(target_env = "gnu")]
fn main() -> std::process::ExitCode {
    let mut boot = String::new();
    let (mut rounds, mut frames) = (5usize, 60usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next();
        let parsed = match (a.as_str(), value.as_deref()) {
            ("--boot", Some(v)) => {
                boot = v.to_owned();
                Ok(())
            }
            ("--rounds", Some(v)) => v.parse().map(|n| rounds = n).map_err(|_| v.to_owned()),
            ("--frames", Some(v)) => v.parse().map(|n| frames = n).map_err(|_| v.to_owned()),
            _ => Err(a.clone()),
        };
        if let Err(bad) = parsed {
            eprintln!("heapland-bench-camera: bad argument {bad:?}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    }
    if boot.is_empty() || rounds == 0 || frames == 0 {
        eprintln!(
            "heapland-bench-camera: --boot is required, --rounds and --frames at least 1\n{USAGE}"
        );
        return std::process::ExitCode::from(2);
    }
    if heapland_tests::guest::camera_latency::bench(&boot, rounds, frames) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(not(target_env = "gnu"))]
fn main() -> std::process::ExitCode {
    eprintln!("heapland-bench-camera needs Mesa's libgbm: build it for a glibc target\n{USAGE}");
    std::process::ExitCode::FAILURE
}
