//! The `heapland-heaps` command, run as a program: on this host (which has
//! no heaps) and on fake sysfs trees shaped like the guest's kernels.

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::*;
use heapland_allocator::{choose, drm_fourcc::DrmFourcc as Fourcc, resolve_devices};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_heapland-heaps");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Runs the command on `tree`'s sysfs and /dev.
fn run_on(tree: &FakeTree, args: &[&str]) -> Output {
    let sys = tree.dir.path().join("sys");
    let dev = tree.dir.path().join("dev");
    let mut all = vec![
        "--sysfs-root",
        sys.to_str().unwrap(),
        "--dev-root",
        dev.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run(&all)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The guest's devices on a 7.x kernel with a CMA area, listed by the heap
/// core too: vkms (contiguous, 32-bit), vgem (scatter-gather, 32-bit) and
/// vivid.0 (contiguous, all of RAM, the default CMA area), served by three
/// heaps of the module and the kernel's default CMA heap; system,
/// `reserved`, udmabuf; and the node a removed `system-40bit` heap left
/// behind.
///
/// ```text
/// vkms     0 system-32bit-contiguous
/// vgem     0 system-32bit  1 system-32bit-contiguous
/// vivid.0  0 system-contiguous  1 default_cma_region  2 system-32bit-contiguous
/// ```
fn heap_core_tree(mem_accounting: bool) -> FakeTree {
    let t = FakeTree::new();
    t.heap(
        "system-32bit-contiguous",
        system_32bit_contiguous()
            .accounting("none")
            .source("cma:reserved buddy"),
    )
    .heap(
        "system-32bit",
        HeapSpec::sg()
            .mask(32)
            .accounting("memcg")
            .max_user(512 << 20),
    )
    .heap(
        "system-contiguous",
        system_contiguous()
            .accounting("none")
            .source("cma:reserved buddy"),
    )
    .system_heap()
    .udmabuf()
    .cma_area("reserved", 32768)
    .core_heap("system")
    .core_heap("default_cma_region")
    .core_heap("reserved")
    .on_heap_core()
    .core_heap("system-40bit")
    .mem_accounting(mem_accounting)
    .device("faux/vkms")
    .driver("faux/vkms", "vkms")
    .node("faux/vkms", "drm/card0", VKMS)
    .links("faux/vkms", &["system-32bit-contiguous"])
    .device("faux/vgem")
    .driver("faux/vgem", "vgem")
    .node("faux/vgem", "drm/renderD128", VGEM)
    .links("faux/vgem", &["system-32bit", "system-32bit-contiguous"])
    .device("platform/vivid.0")
    .driver("platform/vivid.0", "vivid")
    .node("platform/vivid.0", "video4linux/video0", VIVID)
    .node(
        "platform/vivid.0",
        "video4linux/video1",
        heapland_allocator::DeviceNumber::new(81, 1),
    )
    .links(
        "platform/vivid.0",
        &[
            "system-contiguous",
            "default_cma_region",
            "system-32bit-contiguous",
        ],
    );
    t
}

#[test]
fn this_host_has_no_heaps_and_says_so() {
    if Path::new("/dev/dma_heap").exists() || Path::new("/dev/udmabuf").exists() {
        eprintln!("this host has heaps: only the fake empty tree is checked");
    } else {
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("no DMA-BUF heaps"), "{err}");
        assert!(err.contains("modprobe device_heap devices="), "{err}");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let out = run(&["list", "--json"]);
        assert_eq!(out.status.code(), Some(3));
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "no-heaps");
        assert_eq!(v["error"]["status"], 3);
        assert_eq!(v["heaps"].as_array().unwrap().len(), 0);
        // `for` says the same before it looks at any device.
        let out = run(&["for", "/dev/null"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
    let empty = FakeTree::new();
    let out = run_on(&empty, &["--json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(json(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("modprobe device_heap"));
}

#[test]
fn list_shows_every_heap_once_with_kind_accounting_and_served_devices() {
    for mem_accounting in [true, false] {
        let t = heap_core_tree(mem_accounting);
        let out = run_on(&t, &["list", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["version"], 2);
        assert!(v["error"].is_null());
        let listed = names(&v, "heaps");
        assert_eq!(
            listed,
            [
                "system-32bit",
                "system-32bit-contiguous",
                "system-contiguous",
                "system",
                "default_cma_region",
                "reserved",
                "udmabuf"
            ]
        );
        let heap = |n: &str| {
            v["heaps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["name"] == n)
                .unwrap()
                .clone()
        };
        let system_charges = if mem_accounting { "memcg" } else { "none" };
        // Only the heap of a module with the attribute bounds one user.
        let bounded = serde_json::json!(512 << 20);
        let unbounded = serde_json::Value::Null;
        for (name, kind, accounting, per_user) in [
            ("system-32bit", "device", "memcg", &bounded),
            ("system-32bit-contiguous", "device", "none", &unbounded),
            ("system-contiguous", "device", "none", &unbounded),
            ("system", "system", system_charges, &unbounded),
            ("default_cma_region", "cma", "none", &unbounded),
            ("reserved", "cma", "none", &unbounded),
            ("udmabuf", "udmabuf", "memcg", &unbounded),
        ] {
            let h = heap(name);
            assert_eq!(h["kind"], kind, "{name}");
            assert_eq!(h["accounting"], accounting, "{name}");
            assert_eq!(h["properties_known"], true, "{name}");
            assert_eq!(&h["max_user_bytes"], per_user, "{name}");
        }
        let shared = heap("system-32bit-contiguous");
        assert_eq!(shared["backing"], "contig");
        assert_eq!(shared["contiguous"], true);
        assert_eq!(shared["dma_mask_bits"], 32);
        assert_eq!(shared["dma_reach"], "below 4 GiB (32-bit)");
        assert_eq!(shared["max_alloc_bytes"], 64 << 20);
        assert_eq!(shared["contig_source"], "cma:reserved buddy");
        // Every device linking to it, by bus and name, with its rank there.
        let served: Vec<(String, u64)> = shared["served"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}:{}",
                        s["bus"].as_str().unwrap(),
                        s["name"].as_str().unwrap()
                    ),
                    s["rank"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            served,
            [
                ("faux:vgem".to_owned(), 1),
                ("faux:vkms".to_owned(), 0),
                ("platform:vivid.0".to_owned(), 2)
            ]
        );
        let vkms = &shared["served"][1];
        assert_eq!(vkms["driver"], "vkms");
        assert!(vkms["sysfs_path"]
            .as_str()
            .unwrap()
            .ends_with("sys/devices/faux/vkms"));
        assert_eq!(vkms["nodes"][0]["dev"], "226:0");
        assert!(vkms["nodes"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("dev/dri/card0"));
        let contiguous = heap("system-contiguous");
        let vivid_nodes: Vec<&str> = contiguous["served"][0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["dev"].as_str().unwrap())
            .collect();
        assert_eq!(vivid_nodes, ["81:0", "81:1"]);
        let cma = heap("default_cma_region");
        assert_eq!(cma["contiguous"], true);
        assert!(cma["dma_mask_bits"].is_null(), "reach unknown: {cma}");
        assert!(cma["dma_reach"].as_str().unwrap().starts_with("unknown"));
        assert_eq!(cma["contig_source"], "cma:reserved");
        // The kernel's heap is linked, not made for anyone: found through
        // the links.
        assert_eq!(cma["served"][0]["name"], "vivid.0");
        assert_eq!(cma["served"][0]["rank"], 1);
        assert_eq!(heap("reserved")["served"].as_array().unwrap().len(), 0);
        let system = heap("system");
        assert_eq!(system["backing"], "sg");
        assert!(system["max_alloc_bytes"].is_null(), "no limit but memory");
        assert_eq!(system["dma_reach"], "anywhere (64-bit)");
        assert_eq!(system["served"].as_array().unwrap().len(), 0);
        // What the removed system-40bit left is not a heap, and says why.
        assert_eq!(names(&v, "skipped"), ["system-40bit"]);
        assert!(v["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("removed device heap"));
    }
}

#[test]
fn list_for_people_has_a_block_per_heap() {
    let t = heap_core_tree(true);
    let out = run_on(&t, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "system-32bit-contiguous: device heap serving vgem, vkms, vivid.0",
        "DMA reach     below 4 GiB (32-bit)",
        "comes from    cma:reserved buddy",
        "serves        vkms (faux bus, driver vkms), its heap of rank 0",
        "serves        vivid.0 (platform bus, driver vivid), its heap of rank 2",
        "system: the kernel's system heap",
        "accounting    memcg: charged",
        "per user      at most 512 MiB (536870912 bytes) pinned by one user",
        "per user      no limit: nothing bounds what one user pins",
        "default_cma_region: a CMA heap",
        "found but not usable:",
        "system-40bit: the heap core's node of a removed device heap",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(text.contains("/dev/video1 (81:1)"), "{text}");
    // `list` is the default.
    assert_eq!(run_on(&t, &["list"]).stdout, out.stdout);
}

#[test]
fn for_picks_what_the_library_picks_and_explains_every_other_heap() {
    let t = heap_core_tree(true);
    let d = t.discover();
    for (devices, format, fourcc) in [
        (vec!["81:0", "226:0"], "NV12", Fourcc::Nv12),
        (vec!["226:0", "81:0"], "NV12", Fourcc::Nv12),
        (vec!["226:128"], "XRGB8888", Fourcc::Xrgb8888),
        (vec!["226:128", "81:0"], "XR24", Fourcc::Xrgb8888),
    ] {
        let mut args = vec!["for"];
        args.extend(devices.iter().copied());
        args.extend(["--format", format, "--size", "1920x1080", "--json"]);
        let out = run_on(&t, &args);
        assert_eq!(out.status.code(), Some(0), "{devices:?}: {}", stderr(&out));
        let v = json(&out);
        let numbers: Vec<_> = devices
            .iter()
            .map(|s| {
                let (a, b) = s.split_once(':').unwrap();
                heapland_allocator::DeviceNumber::new(a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        let resolved = resolve_devices(&d, &numbers).unwrap();
        let (heap, layout, _) = choose(&d, &resolved, &[], fourcc, 1920, 1080).unwrap();
        assert_eq!(v["heap"]["name"], heap.name.as_str(), "{devices:?}");
        let b = &v["buffer"];
        assert_eq!(b["size"], layout.size);
        assert_eq!(b["alloc_size"], layout.alloc_size());
        assert_eq!(b["modifier"], "LINEAR");
        let planes = b["planes"].as_array().unwrap();
        assert_eq!(planes.len(), layout.planes.len());
        for (p, l) in planes.iter().zip(&layout.planes) {
            assert_eq!(p["offset"], l.offset);
            assert_eq!(p["pitch"], l.stride);
            assert_eq!(p["size"], l.size);
        }
        // Every other heap is passed over, once, with a reason.
        let mut others = names(&v, "passed_over");
        others.push(heap.name.clone());
        others.sort();
        let mut all: Vec<String> = d.heaps().iter().map(|h| h.name.clone()).collect();
        all.sort();
        assert_eq!(others, all, "{devices:?}");
        for p in v["passed_over"].as_array().unwrap() {
            let reasons = p["reasons"].as_array().unwrap();
            assert!(!reasons.is_empty() && reasons.iter().all(|r| !r.as_str().unwrap().is_empty()));
        }
        assert_eq!(v["devices"].as_array().unwrap().len(), resolved.len());
    }
    // vivid first, but its first heap gives memory above vkms' 32 bits, and
    // the CMA heap cannot prove it lies below them: vivid's third, which
    // vkms links to too; sg heaps are unfit.
    let out = run_on(&t, &["for", "81:0", "226:0", "--format", "NV12", "--json"]);
    let v = json(&out);
    assert_eq!(v["version"], 2);
    assert_eq!(v["heap"]["name"], "system-32bit-contiguous");
    assert_eq!(v["needs"]["contiguous"], true);
    assert_eq!(v["needs"]["dma_mask_bits"], 32);
    let vivid = &v["devices"][0];
    assert_eq!(vivid["name"], "vivid.0");
    assert_eq!(
        vivid["heaps"],
        serde_json::json!([
            "system-contiguous",
            "default_cma_region",
            "system-32bit-contiguous"
        ])
    );
    assert!(vivid["heaps_from"]
        .as_str()
        .unwrap()
        .ends_with("sys/devices/platform/vivid.0"));
    let reason = |n: &str| {
        v["passed_over"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()
            .clone()
    };
    let above = reason("system-contiguous");
    assert_eq!(above["fits"], false);
    assert!(above["reasons"][0]
        .as_str()
        .unwrap()
        .contains("beyond DMA mask 32 of vkms"));
    let system = reason("system");
    assert_eq!(system["fits"], false);
    assert!(system["reasons"][0]
        .as_str()
        .unwrap()
        .contains("not contiguous (needed by vivid.0, vkms)"));
    for name in ["default_cma_region", "reserved"] {
        let cma = reason(name);
        assert_eq!(cma["kind"], "cma");
        assert!(cma["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("DMA reach unknown")));
    }
    // vgem alone: its first heap; the next is passed over by rank.
    let out = run_on(&t, &["for", "226:128", "--json"]);
    let v = json(&out);
    assert_eq!(v["heap"]["name"], "system-32bit");
    let next = v["passed_over"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "system-32bit-contiguous")
        .unwrap()
        .clone();
    assert_eq!(next["fits"], true);
    assert_eq!(
        next["reasons"][0],
        "fits, but system-32bit is rank 0 for vgem, this heap rank 1"
    );
    // For people.
    let out = run_on(&t, &["for", "81:0", "226:0", "--format", "NV12"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "heap          system-32bit-contiguous",
        "81:0: vivid.0 (81:0), needs contiguous",
        "heaps by rank: 0 system-contiguous, 1 default_cma_region, 2 system-32bit-contiguous",
        "226:0: vkms (226:0), needs contiguous, below 4 GiB (32-bit)",
        "heaps by rank: 0 system-32bit-contiguous\n",
        "buffer        NV12 1920x1080, modifier LINEAR",
        "  plane 1",
        "passed over",
        "system-contiguous",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn for_without_a_fitting_heap_exits_4_and_explains() {
    // vkms' only heap is too small for 4K and nothing else is both
    // contiguous and proven below 4 GiB.
    let t = heap_core_tree(false);
    let out = run_on(&t, &["for", "226:0", "--size", "4096x4097", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v = json(&out);
    assert!(v["heap"].is_null());
    assert_eq!(v["error"]["kind"], "no-fit");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("no heap satisfies vkms"));
    assert!(v["buffer"]["size"].as_u64().unwrap() > 64 << 20);
    assert_eq!(
        names(&v, "passed_over").len(),
        t.discover().heaps().len(),
        "every heap is explained"
    );
    assert!(stderr(&out).contains("no heap satisfies vkms"));
    // Modifiers heaps cannot make.
    let out = run_on(&t, &["for", "226:0", "--modifier", "0x100000000000001"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("LINEAR"), "{}", stderr(&out));
    let out = run_on(&t, &["for", "226:0", "--modifier", "INVALID", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["buffer"]["modifier"], "INVALID");
    // A device sysfs does not know.
    let out = run_on(&t, &["for", "1:3", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json(&out)["error"]["kind"], "failure");
}

#[test]
fn bad_command_lines_exit_2() {
    let t = heap_core_tree(false);
    let file = t.dir.path().join("dev/video0");
    for args in [
        vec!["for"],
        vec!["for", "226:0", "--size", "0x1080"],
        vec!["for", "226:0", "--size", "big"],
        vec!["for", "226:0", "--format", "MJPG"],
        vec!["for", "226:0", "--modifier", "tiled"],
        vec!["for", "/nonexistent/video0"],
        vec!["for", file.to_str().unwrap()],
        vec!["--no-such-option"],
        // A pitch beyond 32 bits cannot be laid out.
        vec!["for", "226:0", "--size", "2000000000x2"],
    ] {
        let out = run_on(&t, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = run_on(&t, &["for", file.to_str().unwrap()]);
    assert!(stderr(&out).contains("not a character device"));
}

/// Every `--option` in a help text.
fn options(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if let Some(rest) = word.strip_prefix("--") {
            if !rest.is_empty() && !out.contains(&word.to_owned()) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

#[test]
fn help_is_the_manual_and_the_man_page_has_every_option() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for section in ["EXAMPLES:", "EXIT STATUS:", "FILES:", "JSON OUTPUT:"] {
        assert!(help.contains(section), "{section} not in --help");
    }
    let man_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("heapland-heaps.1");
    let man = std::fs::read_to_string(&man_path).unwrap();
    // roff writes a dash as \-.
    let man_plain = man.replace("\\-", "-");
    let mut all = options(&help);
    for sub in ["list", "for"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        all.extend(options(&stdout(&out)));
    }
    assert!(all.contains(&"--sysfs-root".to_owned()) && all.contains(&"--modifier".to_owned()));
    for opt in &all {
        assert!(
            man_plain.contains(opt.as_str()),
            "{opt} is in --help but not in {}",
            man_path.display()
        );
    }
    for section in [
        ".SH EXAMPLES",
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        ".SH SYNOPSIS",
    ] {
        assert!(man.contains(section), "{section} not in the man page");
    }
    for status in 0..=4 {
        assert!(
            man.contains(&format!(".B {status}\n")),
            "exit status {status} not in the man page"
        );
    }
    // Kinds and accounting words documented in both.
    for word in ["udmabuf", "memcg", "no-fit", "no-heaps"] {
        assert!(help.contains(word) && man_plain.contains(word), "{word}");
    }
}
