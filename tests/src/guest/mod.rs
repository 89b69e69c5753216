//! In-guest tests: each area contributes a list of named tests that the
//! `heapland-guest` runner executes inside the QEMU guest, grouped in phases that run in
//! order (some phases change the guest: `removal` reloads the module and vivid).
//!
//! To add tests: write a module here with `pub fn tests() -> Vec<Test>` and add a `Phase`
//! to `phases()` (e.g. `allocator`, `compositor`, after `vivid-contig`).

pub mod accounting;
pub mod acl;
pub mod allocator;
pub mod bad_input;
pub mod block_cache;
pub mod camera_client;
// Mesa's libgbm: dynamically linked glibc builds only (heapland-bench-camera).
#[cfg(all(target_env = "gnu", not(target_feature = "crt-static")))]
pub mod camera_latency;
pub mod camera_pipeline;
pub mod compositor;
pub mod concurrency;
pub mod discovery;
pub mod dma_buf;
pub mod dma_heap;
pub mod drag;
pub mod drm_card;
#[cfg(all(target_env = "gnu", not(target_feature = "crt-static")))]
pub mod egl_client;
pub mod gles;
pub mod grants;
pub mod heap;
pub mod heap_feedback_v2;
pub mod heaps_command;
pub mod host_usr;
pub mod hotplug;
pub mod input;
pub mod kernel_log;
pub mod lifetime;
pub mod lock;
pub mod modules;
pub mod peers;
pub mod pl111;
pub mod pl111_session;
pub mod placement;
pub mod pointer;
pub mod redraw;
pub mod registration;
pub mod removal;
pub mod sandbox;
pub mod scanout;
pub mod seat_user;
pub mod session;
pub mod sg;
pub mod steady_state;
pub mod stress;
pub mod user_limit;
pub mod v4l2;
pub mod vgem;
pub mod vivid;
pub mod vkms;
pub mod x11;

/// One in-guest test. `run` returns `Err` with a message saying what went wrong.
#[derive(Clone, Copy)]
pub struct Test {
    /// Stable name printed on the result line, e.g. `kernel::alloc_mmap_roundtrip`.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> Result<(), String>,
}

/// A test that gathers every problem it sees passes when there is none, and
/// otherwise reports them all at once.
pub fn all_ok(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// A group of tests run by one `heapland-guest <phase>` process.
pub struct Phase {
    pub name: &'static str,
    pub tests: fn() -> Vec<Test>,
}

/// Every phase of this build's architecture, in the order /init runs them.
pub fn phases() -> Vec<Phase> {
    phases_for(std::env::consts::ARCH)
}

/// The phases of the guest of `arch` (`std::env::consts::ARCH`): the host's harness asks
/// for the arm boot's list from an x86_64 build.
pub fn phases_for(arch: &str) -> Vec<Phase> {
    match arch {
        "arm" => return arm_phases(),
        // The debug kernel (KASAN, lockdep): the phases that exercise the module, not the
        // compositor's, which the other boots run and which TCG under KASAN makes slow.
        "debug" => {
            return phases_for("x86_64")
                .into_iter()
                .filter(|p| DEBUG_PHASES.contains(&p.name))
                .collect()
        }
        // 7 with a CMA area: what the CMA area changes (placement, contiguous heaps for
        // vkms and vivid, heapland's scanout buffers and the camera session taken from
        // them). The redraw, GLES and input phases do not touch placement, and boot 7
        // runs them on the same kernel.
        "x86_64-cma" => {
            return phases_for("x86_64")
                .into_iter()
                .filter(|p| CMA_PHASES.contains(&p.name))
                .collect()
        }
        _ => {}
    }
    vec![
        Phase {
            name: "heap",
            tests: || {
                [
                    placement::opt_in_tests(),
                    sg::add_tests(),
                    heap::tests(),
                    bad_input::tests(),
                    discovery::tests(),
                    concurrency::tests(),
                    lifetime::tests(),
                    block_cache::tests(),
                    placement::tests(),
                    registration::tests(),
                    accounting::tests(),
                    user_limit::tests(),
                ]
                .concat()
            },
        },
        Phase {
            name: "drm",
            tests: || [vgem::tests(), vkms::tests(), sg::remove_tests()].concat(),
        },
        // After `drm` removed the sg entries: vivid.0's comes and goes here.
        Phase {
            name: "stress",
            tests: stress::tests,
        },
        // Before vivid-vmalloc/removal change the guest: the boot state has
        // heaps for vkms, vgem and vivid.0.
        Phase {
            name: "allocator",
            tests: || {
                [
                    discovery::boot_links_tests(),
                    allocator::tests(),
                    heaps_command::tests(),
                ]
                .concat()
            },
        },
        Phase {
            name: "vivid-vmalloc",
            tests: vivid::vmalloc_tests,
        },
        Phase {
            name: "removal",
            tests: removal::tests,
        },
        Phase {
            name: "vivid-contig",
            tests: vivid::contig_tests,
        },
        Phase {
            name: "compositor",
            tests: || {
                [
                    compositor::tests(),
                    heap_feedback_v2::tests(),
                    sandbox::tests(),
                    grants::tests(),
                    host_usr::tests(),
                ]
                .concat()
            },
        },
        // Needs vivid in dma-contig mode (after vivid-contig) and vkms free.
        Phase {
            name: "session",
            tests: || {
                [
                    session::tests(),
                    camera_pipeline::tests(),
                    steady_state::tests(),
                ]
                .concat()
            },
        },
        // After the session tests, with vkms free: heapland on vkms with each
        // --allocator, read back through vkms's writeback connector.
        Phase {
            name: "redraw",
            tests: redraw::tests,
        },
        Phase {
            name: "gles",
            tests: gles::tests,
        },
        Phase {
            name: "scanout",
            tests: scanout::tests,
        },
        // Last: these run systemd-udevd, whose database then makes libinput
        // open the guest's evdev devices in every later session.
        Phase {
            name: "input",
            tests: || {
                [
                    input::tests(),
                    pointer::tests(),
                    drag::tests(),
                    lock::tests(),
                    x11::tests(),
                    seat_user::tests(),
                    hotplug::tests(),
                ]
                .concat()
            },
        },
    ]
}

/// The phases the debug kernel's boot runs.
const DEBUG_PHASES: &[&str] = &[
    "heap",
    "drm",
    "stress",
    "allocator",
    "vivid-vmalloc",
    "removal",
    "vivid-contig",
];

/// The phases the boot with a CMA area runs.
const CMA_PHASES: &[&str] = &[
    "heap",
    "drm",
    "stress",
    "allocator",
    "vivid-vmalloc",
    "removal",
    "vivid-contig",
    "compositor",
    "session",
    "scanout",
];

/// The arm boot (QEMU vexpress-a15, tests/vm/run): PL111, vgem and vivid.
fn arm_phases() -> Vec<Phase> {
    vec![
        Phase {
            name: "pl111",
            tests: || {
                [
                    discovery::boot_links_tests(),
                    pl111::tests(),
                    user_limit::tests(),
                ]
                .concat()
            },
        },
        // After pl111 (which uses vgem): heapland alone with the display.
        Phase {
            name: "pl111-session",
            tests: pl111_session::tests,
        },
        Phase {
            name: "pl111-rebind",
            tests: pl111::rebind_tests,
        },
    ]
}
