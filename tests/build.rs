//! The static in-guest binaries (heapland-guest and heapland-bench: musl, and armv7
//! glibc with `+crt-static`) link Smithay through heapland-allocator's `smithay`
//! feature, for `Dmabuf` and `DmaHeapAllocator`.
//!
//! Smithay depends on the `xkbcommon` crate unconditionally, and that crate
//! emits `-lxkbcommon` even when no keyboard code is used. Debian ships no
//! static libxkbcommon for musl, so a static link fails on the `-l` flag
//! alone. An empty archive satisfies the flag; if any xkbcommon symbol were
//! really referenced the link would still fail with an undefined symbol, so
//! this cannot hide a real dependency. It lives here, with the only static
//! binaries that need it, not in the library, whose users link as they
//! choose; dynamic builds (the host tests, the glibc helpers) are untouched.

//!
//! It also says what the host running the host tests (`tests/tests/`) has,
//! as cfgs: `host_render_node` (a `/dev/dri/renderD*` node) and
//! `host_dma_heaps` (an entry in `/dev/dma_heap`). A host test that needs
//! one is `ignore`d, with the reason, where it is missing, so that it is
//! reported as not run instead of passing on checks that hold vacuously;
//! the guest phases run the same properties on real devices.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(host_render_node)");
    println!("cargo::rustc-check-cfg=cfg(host_dma_heaps)");
    // A path that does not exist would make cargo run this every build.
    for dir in ["/dev/dri", "/dev/dma_heap"] {
        if std::path::Path::new(dir).exists() {
            println!("cargo:rerun-if-changed={dir}");
        }
    }
    let entries = |dir: &str| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    if entries("/dev/dri").iter().any(|n| n.starts_with("renderD")) {
        println!("cargo:rustc-cfg=host_render_node");
    }
    if !entries("/dev/dma_heap").is_empty() {
        println!("cargo:rustc-cfg=host_dma_heaps");
    }
    let musl = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let crt_static =
        env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if !(musl || crt_static) {
        return;
    }
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("xkbcommon-stub");
    if fs::create_dir_all(&dir).is_ok()
        && fs::write(dir.join("libxkbcommon.a"), b"!<arch>\n").is_ok()
    {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}
