//! heapland-egl-client: renders with EGL into a buffer from the heap the
//! compositor's protocol gives it, and shows it (tests/src/guest/egl_client.rs).

const USAGE: &str = "usage: heapland-egl-client [DRM_DEVICE]  (default /dev/dri/card0; connects to the guest tests' heapland, /run/user/0/heapland-guest)";

#[cfg(all(target_env = "gnu", not(target_feature = "crt-static")))]
fn main() -> std::process::ExitCode {
    let card = match std::env::args().nth(1) {
        Some(a) if a.starts_with('-') => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
        Some(a) => std::path::PathBuf::from(a),
        None => std::path::PathBuf::from("/dev/dri/card0"),
    };
    match heapland_tests::guest::egl_client::run(&card) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("heapland-egl-client: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(all(target_env = "gnu", not(target_feature = "crt-static"))))]
fn main() {
    eprintln!("{USAGE}: needs a dynamically linked glibc build (EGL is loaded at run time)");
    std::process::exit(2);
}
