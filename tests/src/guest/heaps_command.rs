//! `heapland-heaps`, the command for people, run as a program on the real heaps: its
//! `--json` lists exactly what /dev/dma_heap holds (and udmabuf), names each device
//! heap's device as sysfs does, and `for` answers what heapland-allocator itself
//! chooses. The text output is printed as INFO lines, for the README.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use heapland_allocator::{
    choose, drm_fourcc::DrmFourcc as Fourcc, resolve_devices, DeviceNumber, Discovery,
};
use serde_json::Value;

use super::dma_heap::{self, CLASS, CORE_CLASS};
use super::{all_ok, Test};

/// Where tests/vm/run puts the static binary.
const BIN: &str = "/bin/heapland-heaps";

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "heaps_command::list_for_people",
            run: list_for_people,
        },
        Test {
            name: "heaps_command::json_lists_every_heap_once",
            run: json_lists_every_heap_once,
        },
        Test {
            name: "heaps_command::device_heaps_name_their_devices",
            run: device_heaps_name_their_devices,
        },
        Test {
            name: "heaps_command::for_vivid_and_vkms_names_the_allocators_heap",
            run: for_vivid_and_vkms,
        },
    ]
}

/// Runs the command; `Err` unless it exits with `expect`.
fn run(args: &[&str], expect: i32) -> Result<String, String> {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .map_err(|e| format!("spawn {BIN}: {e} (is it in the guest?)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() != Some(expect) {
        return Err(format!(
            "{BIN} {args:?}: {}, expected exit {expect}; stderr: {}; stdout: {stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(stdout)
}

fn run_json(args: &[&str]) -> Result<Value, String> {
    let out = run(args, 0)?;
    serde_json::from_str(&out).map_err(|e| format!("{BIN} {args:?}: not JSON: {e}: {out}"))
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    v[key]
        .as_array()
        .ok_or_else(|| format!("{key} is not an array in {v}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Prints the text output line by line, as INFO lines.
fn print_info(what: &str, text: &str) {
    for line in text.lines() {
        println!("INFO heapland-heaps{what}: {line}");
    }
}

fn list_for_people() -> Result<(), String> {
    let text = run(&[], 0)?;
    if text.trim().is_empty() {
        return Err("heapland-heaps printed nothing".into());
    }
    print_info("", &text);
    for name in dir_names("/dev/dma_heap")? {
        if !text.contains(&format!("{name}: ")) {
            return Err(format!("{name} missing from the text listing"));
        }
    }
    Ok(())
}

fn dir_names(dir: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// A node the heap core keeps for a device heap that was removed (heap-core kernels).
fn lingering(name: &str) -> bool {
    Path::new(CORE_CLASS).join(name).exists() && !Path::new(CLASS).join(name).exists()
}

fn json_lists_every_heap_once() -> Result<(), String> {
    let v = run_json(&["--json"])?;
    if v["version"] != 2 || !v["error"].is_null() {
        return Err(format!("version/error: {} {}", v["version"], v["error"]));
    }
    let heaps = array(&v, "heaps")?;
    let skipped = array(&v, "skipped")?;
    let mut errs = Vec::new();
    let listed: Vec<&str> = heaps.iter().map(|h| str_of(h, "name")).collect();
    for name in dir_names("/dev/dma_heap")? {
        let times = listed.iter().filter(|n| **n == name).count();
        let skips: Vec<&Value> = skipped.iter().filter(|s| s["name"] == *name).collect();
        match (times, skips.len()) {
            (1, 0) => {}
            (0, 1) if lingering(&name) => {
                println!(
                    "INFO heapland-heaps: {name} skipped: {}",
                    str_of(skips[0], "reason")
                );
            }
            (t, s) => errs.push(format!(
                "/dev/dma_heap/{name}: listed {t} times, skipped {s} times"
            )),
        }
    }
    let udmabuf = listed.iter().filter(|n| **n == "udmabuf").count();
    if udmabuf != usize::from(Path::new("/dev/udmabuf").exists()) {
        errs.push(format!("udmabuf listed {udmabuf} times"));
    }
    let extra: Vec<&&str> = listed
        .iter()
        .filter(|n| **n != "udmabuf" && !Path::new("/dev/dma_heap").join(n).exists())
        .collect();
    if !extra.is_empty() {
        errs.push(format!("listed without a node: {extra:?}"));
    }
    for h in heaps {
        let name = str_of(h, "name");
        let want = if Path::new(CLASS).join(name).exists() {
            "device"
        } else if name == "system" {
            "system"
        } else if name == "udmabuf" {
            "udmabuf"
        } else if name == "default_cma_region"
            || Path::new("/sys/kernel/mm/cma").join(name).exists()
        {
            "cma"
        } else {
            "other"
        };
        if h["kind"] != want {
            errs.push(format!("{name}: kind {}, expected {want}", h["kind"]));
        }
        if want == "cma" && (h["contiguous"] != true || !h["dma_mask_bits"].is_null()) {
            errs.push(format!(
                "{name}: a CMA heap must be contiguous of unknown reach: {h}"
            ));
        }
        let accounting = str_of(h, "accounting");
        if accounting != "memcg" && accounting != "none" {
            errs.push(format!("{name}: accounting {accounting:?}"));
        }
    }
    // The system heap charges exactly when the heap core's parameter is on.
    if let Some(system) = heaps.iter().find(|h| h["name"] == "system") {
        let on = fs::read_to_string("/sys/module/dma_heap/parameters/mem_accounting")
            .is_ok_and(|s| s.trim() == "Y");
        let want = if on { "memcg" } else { "none" };
        if system["accounting"] != want {
            errs.push(format!(
                "system heap accounting {}, mem_accounting says {want}",
                system["accounting"]
            ));
        }
    }
    println!("INFO heapland-heaps: --json lists {listed:?}");
    all_ok(errs)
}

fn canonical(p: &Path) -> Result<PathBuf, String> {
    fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every heap lists the devices that link to it, with the heap's rank among each device's
/// links, its driver and /dev nodes, all as sysfs says; device heaps' properties are
/// their sysfs attributes.
fn device_heaps_name_their_devices() -> Result<(), String> {
    let v = run_json(&["list", "--json"])?;
    let mut errs = Vec::new();
    let mut served_seen = std::collections::BTreeSet::new();
    for h in array(&v, "heaps")? {
        let name = str_of(h, "name");
        for served in array(h, "served")? {
            let dev = str_of(served, "name").to_owned();
            let sysfs = canonical(Path::new(str_of(served, "sysfs_path")))?;
            // The rank is where the device's own dma_heaps/ puts the heap.
            let links = dma_heap::links(&sysfs)?;
            let rank = links.iter().position(|l| l.name == name);
            if served["rank"].as_u64().map(|r| r as usize) != rank {
                errs.push(format!(
                    "{name}: rank {} for {dev}, its dma_heaps/ says {rank:?}",
                    served["rank"]
                ));
            }
            let driver = fs::read_link(sysfs.join("driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            if served["driver"].as_str() != driver.as_deref() {
                errs.push(format!(
                    "{name}: driver of {dev} {}, sysfs says {driver:?}",
                    served["driver"]
                ));
            }
            // Every node named is a character device with the number given, whose
            // sysfs device is the served device or below it.
            let nodes = array(served, "nodes")?;
            if nodes.is_empty() {
                errs.push(format!("{name}: no /dev node found for {dev}"));
            }
            for n in nodes {
                let Some(path) = n["path"].as_str() else {
                    continue;
                };
                match fs::metadata(path) {
                    Ok(m) if m.file_type().is_char_device() => {
                        let num =
                            DeviceNumber::of_path(Path::new(path)).map_err(|e| e.to_string())?;
                        if n["dev"] != *num.to_string() {
                            errs.push(format!("{name}: {path} is {num}, listed as {}", n["dev"]));
                        }
                    }
                    other => errs.push(format!(
                        "{name}: {path} is not a character device: {other:?}"
                    )),
                }
                let node_sys = canonical(Path::new(str_of(n, "sysfs_path")))?;
                if !node_sys.starts_with(&sysfs) {
                    errs.push(format!(
                        "{name}: node {} not below {}",
                        node_sys.display(),
                        sysfs.display()
                    ));
                }
            }
            let paths: Vec<&str> = nodes.iter().filter_map(|n| n["path"].as_str()).collect();
            let expect_prefix = match dev.as_str() {
                "vkms" => Some("/dev/dri/card"),
                "vgem" => Some("/dev/dri/"),
                "vivid.0" => Some("/dev/video"),
                _ => None,
            };
            if let Some(prefix) = expect_prefix {
                if !paths.iter().any(|p| p.starts_with(prefix)) {
                    errs.push(format!("{name}: no {prefix}* among {paths:?} for {dev}"));
                }
            }
            served_seen.insert(dev);
        }
        if h["kind"] != "device" {
            continue;
        }
        let info = dma_heap::HeapInfo::by_name(name)?;
        // The devices it serves are the ones its served/ links name.
        let mut listed: Vec<PathBuf> = array(h, "served")?
            .iter()
            .filter_map(|s| canonical(Path::new(str_of(s, "sysfs_path"))).ok())
            .collect();
        listed.sort();
        if listed != info.served {
            errs.push(format!(
                "{name}: serves {listed:?}, its served/ links say {:?}",
                info.served
            ));
        }
        // The published properties, as the module's sysfs says them.
        let checks = [
            ("contiguous", h["contiguous"] == info.contiguous),
            ("coherent", h["coherent"] == info.coherent),
            ("dma_mask_bits", h["dma_mask_bits"] == info.dma_mask_bits),
            (
                "max_alloc_bytes",
                h["max_alloc_bytes"] == info.max_alloc_bytes,
            ),
            (
                "alignment_bytes",
                h["alignment_bytes"] == info.alignment_bytes,
            ),
            ("backing", h["backing"] == *info.backing),
            ("contig_source", h["contig_source"] == *info.contig_source),
        ];
        for (attr, ok) in checks {
            if !ok {
                errs.push(format!("{name}: {attr} differs from sysfs: {h}"));
            }
        }
        let accounting = fs::read_to_string(info.dir.join("accounting"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "none".into());
        if h["accounting"] != *accounting {
            errs.push(format!(
                "{name}: accounting {}, sysfs says {accounting}",
                h["accounting"]
            ));
        }
    }
    for dev in ["vkms", "vgem", "vivid.0"] {
        if !served_seen.contains(dev) {
            errs.push(format!("no heap lists {dev} as served: {served_seen:?}"));
        }
    }
    all_ok(errs)
}

/// The lowest-numbered `/dev/<prefix>N` whose class device under `/sys/class/<class>` has
/// the DMA device `device`, found through sysfs.
pub(super) fn node_of(class: &str, prefix: &str, device: &str) -> Result<PathBuf, String> {
    let dir = format!("/sys/class/{class}");
    let mut found: Vec<(u32, String)> = Vec::new();
    for name in dir_names(&dir)? {
        let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dev = fs::canonicalize(Path::new(&dir).join(&name).join("device"));
        if dev.is_ok_and(|d| d.file_name().is_some_and(|f| f == device)) {
            found.push((n, name));
        }
    }
    found.sort();
    let (_, name) = found
        .first()
        .ok_or_else(|| format!("no {dir}/{prefix}N of {device}"))?;
    let uevent = fs::read_to_string(Path::new(&dir).join(name).join("uevent")).unwrap_or_default();
    let devname = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .unwrap_or(name);
    Ok(Path::new("/dev").join(devname))
}

fn for_vivid_and_vkms() -> Result<(), String> {
    let video = node_of("video4linux", "video", "vivid.0")?;
    let card = node_of("drm", "card", "vkms")?;
    let (video_s, card_s) = (video.display().to_string(), card.display().to_string());
    let args = [
        "for",
        &video_s,
        &card_s,
        "--format",
        "NV12",
        "--size",
        "1920x1080",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v = run_json(&json_args)?;

    // What the library chooses for the same devices.
    let d = Discovery::scan();
    let numbers = [video.as_path(), card.as_path()]
        .iter()
        .map(|p| DeviceNumber::of_path(p).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let devices = resolve_devices(&d, &numbers).map_err(|e| e.to_string())?;
    let (heap, layout, _) =
        choose(&d, &devices, &[], Fourcc::Nv12, 1920, 1080).map_err(|e| e.to_string())?;

    let mut errs = Vec::new();
    if v["heap"]["name"] != *heap.name {
        errs.push(format!(
            "heapland-heaps chose {}, heapland_allocator chooses {}",
            v["heap"]["name"], heap.name
        ));
    }
    let b = &v["buffer"];
    if b["size"] != layout.size || b["alloc_size"] != layout.alloc_size() {
        errs.push(format!("buffer {b}, library layout {layout:?}"));
    }
    let planes = array(b, "planes")?;
    let same = planes.len() == layout.planes.len()
        && planes
            .iter()
            .zip(&layout.planes)
            .all(|(p, l)| p["offset"] == l.offset && p["pitch"] == l.stride && p["size"] == l.size);
    if !same {
        errs.push(format!("planes {planes:?}, library {:?}", layout.planes));
    }
    let passed = array(&v, "passed_over")?;
    if passed.len() + 1 != d.heaps().len() {
        errs.push(format!(
            "{} heaps passed over, {} heaps besides the chosen one",
            passed.len(),
            d.heaps().len() - 1
        ));
    }
    for p in passed {
        if array(p, "reasons")?.is_empty() {
            errs.push(format!("{} passed over without a reason", p["name"]));
        }
    }
    let text = run(&args, 0)?;
    print_info(
        " for",
        &format!("$ heapland-heaps {}\n{text}", args.join(" ")),
    );
    all_ok(errs)
}
