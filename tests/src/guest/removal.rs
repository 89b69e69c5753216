//! Taking things away while buffers are alive: the module, a heap, the served device.
//! Buffers must keep working (or fail cleanly) and the kernel must not complain.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::io::Errno;

use super::discovery::check_sane;
use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap, HeapInfo};
use super::drm_card;
use super::kernel_log::Mark;
use super::modules;
use super::Test;
use drm::control::Device as _;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "removal::rmmod_refused_while_buffer_alive",
            run: rmmod_refused_while_buffer_alive,
        },
        Test {
            name: "removal::rmmod_after_last_buffer_then_reload",
            run: rmmod_after_last_buffer_then_reload,
        },
        Test {
            name: "removal::sysfs_remove_heap_while_buffer_alive",
            run: sysfs_remove_heap_while_buffer_alive,
        },
        Test {
            name: "removal::heap_removed_during_allocations",
            run: heap_removed_during_allocations,
        },
        Test {
            name: "removal::shared_heap_stays_while_another_device_needs_it",
            run: shared_heap_stays_while_another_device_needs_it,
        },
        Test {
            name: "removal::driver_unbind_while_buffer_alive",
            run: driver_unbind_while_buffer_alive,
        },
        Test {
            name: "removal::served_device_removed_while_buffer_alive",
            run: served_device_removed_while_buffer_alive,
        },
        Test {
            name: "removal::device_removed_during_allocations",
            run: device_removed_during_allocations,
        },
        Test {
            name: "removal::add_races_unbind_and_rmmod_vivid",
            run: add_races_unbind_and_rmmod_vivid,
        },
        Test {
            name: "removal::vivid_reloaded_contig_heap_added",
            run: vivid_reloaded_contig_heap_added,
        },
    ]
}

const MODULE: &str = "device_heap";

/// Checks the buffer still holds `seed`'s pattern, then rewrites and rechecks it, each
/// through a fresh mapping.
fn still_works(buf: &std::os::fd::OwnedFd, len: usize, seed: u32) -> Result<(), String> {
    dma_buf::check(buf.as_fd(), len, seed).map_err(|e| format!("old contents: {e}"))?;
    dma_buf::fill(buf.as_fd(), len, seed ^ 0xffff)?;
    dma_buf::check(buf.as_fd(), len, seed ^ 0xffff).map_err(|e| format!("rewritten: {e}"))
}

fn rmmod_refused_while_buffer_alive() -> Result<(), String> {
    let name = dma_heap::device_heaps()?
        .into_iter()
        .next()
        .ok_or("no device heaps")?;
    let buf = {
        let heap = Heap::open(&name)?;
        heap.alloc(65536)?
    }; // the heap fd is closed: only the buffer pins the module now
    dma_buf::fill(buf.as_fd(), 65536, 11)?;
    let mark = Mark::new("rmmod with live buffer");
    match modules::rmmod(MODULE) {
        Ok(()) => {
            let _ = modules::insmod(MODULE, &modules::boot_params(MODULE));
            return Err("rmmod device_heap succeeded while a buffer was alive".into());
        }
        Err(msg) => println!("INFO removal: rmmod with a live buffer refused: {msg}"),
    }
    if !modules::is_loaded(MODULE) {
        return Err("rmmod failed but the module is gone".into());
    }
    still_works(&buf, 65536, 11)?;
    drop(buf);
    mark.check_clean()
}

/// With no buffer left the module unloads and loads again with the same heaps; on
/// heap-core kernels it must refuse to unload instead (the core keeps its nodes until
/// reboot) and go on working.
fn rmmod_after_last_buffer_then_reload() -> Result<(), String> {
    let before = dma_heap::device_heaps()?;
    let live = dma_heap::debugfs_counter("live_buffers")?;
    if live != 0 {
        return Err(format!("live_buffers is {live} with no buffer open"));
    }
    let mark = Mark::new("rmmod device_heap");
    if dma_heap::kernel_has_heap_core()? {
        if modules::rmmod(MODULE).is_ok() {
            return Err("rmmod device_heap succeeded though the heap core holds its heaps".into());
        }
        let mut errs = Vec::new();
        for n in &before {
            if let Err(e) = Heap::open(n).and_then(|h| h.alloc(4096).map(drop)) {
                errs.push(format!("after the refused rmmod: {e}"));
            }
        }
        mark.check_clean().map_err(|e| errs.push(e)).ok();
        return super::all_ok(errs);
    }
    modules::rmmod(MODULE).map_err(|e| format!("rmmod with no buffers: {e}"))?;
    let mut errs = Vec::new();
    for n in &before {
        if Path::new("/dev/dma_heap").join(n).exists() {
            errs.push(format!("/dev/dma_heap/{n} still exists after rmmod"));
        }
    }
    if Path::new(dma_heap::CLASS).exists() {
        errs.push(format!("{} still exists after rmmod", dma_heap::CLASS));
    }
    modules::insmod(MODULE, &modules::boot_params(MODULE))?;
    let after = dma_heap::device_heaps()?;
    if after != before {
        errs.push(format!("heaps after reload {after:?} != before {before:?}"));
    }
    mark.check_clean().map_err(|e| errs.push(e)).ok();
    super::all_ok(errs)
}

/// The heap only vivid.0 needs (its 32-bit contiguous memory; vkms and vgem link to it
/// but need the wider one), and the entry that serves vivid.0 at boot.
fn vivid_heap() -> Result<(HeapInfo, String), String> {
    Ok((
        dma_heap::best_heap("vivid.0", true)?,
        dma_heap::spec("vivid.0", None)?,
    ))
}

/// Stops serving vivid.0 (the only device its heap is for) with a buffer alive.
fn sysfs_remove_heap_while_buffer_alive() -> Result<(), String> {
    let (info, entry) = vivid_heap()?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    let heap = Heap::open(&info.name)?;
    const LEN: usize = 128 * 1024;
    let buf = heap.alloc(LEN as u64)?;
    dma_buf::fill(buf.as_fd(), LEN, 21)?;
    let mut old_map = Mapping::new(&buf, LEN)?;
    let mark = Mark::new("sysfs remove heap");
    dma_heap::control("remove", &entry)?;

    let mut errs = Vec::new();
    if Path::new(dma_heap::CLASS).join(&info.name).exists() {
        errs.push(format!("{}/{} still exists", dma_heap::CLASS, info.name));
    }
    // The heap core cannot remove a node: there it stays, without a heap behind it.
    let core = dma_heap::kernel_has_heap_core()?;
    if Path::new("/dev/dma_heap").join(&info.name).exists() != core {
        errs.push(format!(
            "/dev/dma_heap/{} {} after remove (heap core {core})",
            info.name,
            if core { "is gone" } else { "still exists" }
        ));
    }
    match dma_heap::alloc(heap.fd.as_fd(), 4096) {
        Err(Errno::NODEV) => {}
        Ok(_) => errs.push("allocation through the removed heap's open fd succeeded".into()),
        Err(e) => errs.push(format!(
            "allocation through the removed heap's fd: {e}, expected ENODEV"
        )),
    }
    // The mapping made before removal still works, and so does a new one.
    old_map.words_mut()[0] = 0x5a5a_5a5a;
    if old_map.words()[0] != 0x5a5a_5a5a {
        errs.push("old mapping lost a write".into());
    }
    old_map.words_mut()[0] = dma_buf::pattern(21, 0);
    drop(old_map);
    if let Err(e) = still_works(&buf, LEN, 21) {
        errs.push(e);
    }
    drop(buf);
    drop(heap);
    let live1 = dma_heap::debugfs_counter("live_buffers")?;
    if live1 != live0 {
        errs.push(format!(
            "live_buffers {live0} -> {live1} after the buffer was closed"
        ));
    }
    match dma_heap::device_dir("vivid.0") {
        Ok(d) if d.join("dma_heaps").exists() => {
            errs.push("vivid.0 still has dma_heaps/ after its entry was removed".into())
        }
        _ => {}
    }
    // Put it back as it was (the next phases use it).
    let spec = entry;
    match dma_heap::control("add", &spec) {
        Ok(()) => match HeapInfo::by_name(&info.name) {
            Ok(again) => {
                if let Err(e) = check_sane(&again, &dma_heap::device_dir("vivid.0")?, false) {
                    errs.push(format!("re-added heap: {e}"));
                }
                if let Err(e) = Heap::open(&info.name).and_then(|h| h.alloc(4096).map(drop)) {
                    errs.push(format!("re-added heap: {e}"));
                }
            }
            Err(e) => errs.push(format!("after add {spec:?}: {e}")),
        },
        Err(e) => errs.push(e),
    }
    match dma_heap::control("add", &spec) {
        Err(e) if e.contains("exists") => {}
        Err(e) => errs.push(format!(
            "adding an existing heap again: {e}, expected EEXIST"
        )),
        Ok(()) => errs.push("adding an existing heap again succeeded".into()),
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// Allocates, writes and frees through `fds` open fds of heap `name` from one thread each
/// while `act` runs (after 300 ms; the threads stop 200 ms later). Every allocation must
/// work or fail with ENODEV. Returns (successes, ENODEVs, errors).
fn race_allocations(
    name: &str,
    fds: usize,
    act: impl FnOnce() -> Result<(), String>,
) -> Result<(u32, u32, Vec<String>), String> {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = AtomicBool::new(false);
    let ok = AtomicU32::new(0);
    let nodev = AtomicU32::new(0);
    let heaps: Vec<Heap> = (0..fds)
        .map(|_| Heap::open(name))
        .collect::<Result<_, _>>()?;
    let errs: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = heaps
            .iter()
            .enumerate()
            .map(|(t, heap)| {
                let (stop, ok, nodev) = (&stop, &ok, &nodev);
                s.spawn(move || -> Result<(), String> {
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let len = 4096 * (1 + (i as usize + t) % 32);
                        match dma_heap::alloc(heap.fd.as_fd(), len as u64) {
                            Ok(b) => {
                                dma_buf::fill(b.as_fd(), len, i)?;
                                dma_buf::check(b.as_fd(), len, i)?;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Errno::NODEV) => {
                                nodev.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => return Err(format!("thread {t}: allocation: {e}")),
                        }
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let acted = act();
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let mut errs: Vec<String> = workers
            .into_iter()
            .filter_map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("thread panicked".into()))
                    .err()
            })
            .collect();
        if let Err(e) = acted {
            errs.push(e);
        }
        errs
    });
    Ok((ok.into_inner(), nodev.into_inner(), errs))
}

/// Races heap removal (vivid.0's entry, the only one needing its heap) against
/// allocations in flight through the heap. Nothing may stay allocated and the kernel must
/// not complain.
fn heap_removed_during_allocations() -> Result<(), String> {
    let (info, entry) = vivid_heap()?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    let mark = Mark::new("heap removal race");
    let (ok, nodev, mut errs) =
        race_allocations(&info.name, 4, || dma_heap::control("remove", &entry))?;
    println!("INFO removal: {ok} allocations before the heap went, {nodev} ENODEV after");
    if nodev == 0 {
        errs.push("no allocation saw ENODEV after the heap was removed".into());
    }
    if let Err(e) = dma_heap::control("add", &entry) {
        errs.push(format!("re-adding {entry}: {e}"));
    }
    settle_race(live0, &mark, errs)
}

/// A heap two devices need stays when one of them stops being served: vgem's entry goes,
/// `system-contiguous` stays for vkms (allocating, listing only vkms as served), vgem
/// loses its links, and gets them back when added again.
fn shared_heap_stays_while_another_device_needs_it() -> Result<(), String> {
    let shared = dma_heap::best_heap("vkms", true)?;
    let vgem_dir = dma_heap::device_dir("vgem")?;
    let vkms_dir = dma_heap::device_dir("vkms")?;
    if !shared.served.contains(&vgem_dir) || !shared.served.contains(&vkms_dir) {
        return Err(format!(
            "{} does not serve both vkms and vgem: {:?}",
            shared.name, shared.served
        ));
    }
    let entry = dma_heap::spec("vgem", None)?;
    let mark = Mark::new("remove one device of a shared heap");
    dma_heap::control("remove", &entry)?;
    let mut errs = Vec::new();
    match HeapInfo::by_name(&shared.name) {
        Ok(h) => {
            if h.served.contains(&vgem_dir) {
                errs.push(format!("{} still lists vgem as served", h.name));
            }
            if let Err(e) = Heap::open(&h.name).and_then(|h| h.alloc(65536).map(drop)) {
                errs.push(format!("the shared heap after vgem went: {e}"));
            }
        }
        Err(e) => errs.push(format!("{} went with vgem's entry: {e}", shared.name)),
    }
    if vgem_dir.join("dma_heaps").exists() {
        errs.push("vgem kept dma_heaps/ after its entry was removed".into());
    }
    if let Err(e) = dma_heap::control("add", &entry) {
        errs.push(format!("re-adding {entry}: {e}"));
    }
    match dma_heap::links(&vgem_dir) {
        Ok(l) if l.first().map(|l| l.name.as_str()) == Some(shared.name.as_str()) => {}
        Ok(l) => errs.push(format!(
            "vgem re-added links {:?}, expected {} first",
            l.iter().map(|l| &l.name).collect::<Vec<_>>(),
            shared.name
        )),
        Err(e) => errs.push(format!("vgem re-added: {e}")),
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// Races the removal of the served device (rmmod vivid) against allocations in flight
/// through its heap. Loads vivid again first (the previous test removed it).
fn device_removed_during_allocations() -> Result<(), String> {
    if !modules::is_loaded("vivid") {
        modules::insmod("vivid", "")?;
    }
    if dma_heap::heaps_of_device("vivid.0").is_err() {
        dma_heap::control("add", &dma_heap::spec("vivid.0", Some("contig"))?)?;
    }
    let info = dma_heap::heaps_of_device("vivid.0")?
        .into_iter()
        .next()
        .ok_or("vivid.0 has no heap")?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    let mark = Mark::new("device removal race");
    let (ok, nodev, mut errs) = race_allocations(&info.name, 4, || {
        // Refusal while allocations are in flight is acceptable; then retry once idle.
        modules::rmmod("vivid").or_else(|e| {
            println!("INFO removal: rmmod vivid during allocations refused: {e}");
            Ok(())
        })
    })?;
    if modules::is_loaded("vivid") {
        if let Err(e) = modules::rmmod("vivid") {
            errs.push(format!("rmmod vivid after the allocations stopped: {e}"));
        }
    } else if nodev == 0 {
        errs.push("no allocation saw ENODEV after vivid.0 went away".into());
    }
    println!("INFO removal: {ok} allocations before vivid.0 went, {nodev} ENODEV after");
    settle_race(live0, &mark, errs)
}

/// Unbinds vivid's driver from vivid.0 (the device itself stays) with a heap buffer alive,
/// then binds it again. The heap may stay or go with the driver; the buffer must keep
/// working and the kernel must not complain.
fn driver_unbind_while_buffer_alive() -> Result<(), String> {
    const DRV: &str = "/sys/bus/platform/drivers/vivid";
    const LEN: usize = 300 * 1024;
    let info = dma_heap::heaps_of_device("vivid.0")?
        .into_iter()
        .next()
        .ok_or("vivid.0 has no heap")?;
    let heap = Heap::open(&info.name)?;
    let buf = heap.alloc(LEN as u64)?;
    dma_buf::fill(buf.as_fd(), LEN, 51)?;
    let mark = Mark::new("unbind vivid.0");
    std::fs::write(format!("{DRV}/unbind"), "vivid.0")
        .map_err(|e| format!("unbind vivid.0: {e}"))?;
    let mut errs = Vec::new();
    if let Err(e) = still_works(&buf, LEN, 51) {
        errs.push(format!("after unbind: {e}"));
    }
    let present = Path::new(dma_heap::CLASS).join(&info.name).exists();
    match dma_heap::alloc(heap.fd.as_fd(), 4096) {
        Ok(_) => println!(
            "INFO removal: after unbind {} is {}, allocation works",
            info.name,
            if present { "listed" } else { "gone" }
        ),
        Err(Errno::NODEV) => println!(
            "INFO removal: after unbind {} is {}, allocation gives ENODEV",
            info.name,
            if present { "listed" } else { "gone" }
        ),
        Err(e) => errs.push(format!(
            "allocation after unbind: {e}, expected success or ENODEV"
        )),
    }
    if let Err(e) = std::fs::write(format!("{DRV}/bind"), "vivid.0") {
        errs.push(format!("bind vivid.0 again: {e}"));
    }
    if let Err(e) = super::v4l2::find_capture("vivid") {
        errs.push(format!("after rebind: {e}"));
    }
    if dma_heap::heaps_of_device("vivid.0").is_err() {
        // The heap went with the driver: give the device its heap back for later tests.
        if let Err(e) = dma_heap::control("add", &dma_heap::spec("vivid.0", Some(&info.backing))?) {
            errs.push(format!("re-adding {} after rebind: {e}", info.name));
        }
    }
    if let Err(e) = still_works(&buf, LEN, 51 ^ 0xffff) {
        errs.push(format!("after rebind: {e}"));
    }
    drop(buf);
    drop(heap);
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

fn served_device_removed_while_buffer_alive() -> Result<(), String> {
    let infos = dma_heap::heaps_of_device("vivid.0")?;
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    const LEN: usize = 600 * 1024;
    // vgem holds an attachment of every buffer across the removal, as a GPU would.
    let vgem = drm_card::find("vgem", "renderD")?;
    let mut held = Vec::new();
    for (k, i) in infos.iter().enumerate() {
        let heap = Heap::open(&i.name)?;
        let buf = heap.alloc(LEN as u64)?;
        dma_buf::fill(buf.as_fd(), LEN, 31 + k as u32)?;
        let map = Mapping::new(&buf, LEN)?;
        let gem = vgem
            .prime_fd_to_buffer(buf.as_fd())
            .map_err(|e| format!("[{}] PRIME import into vgem: {e}", i.name))?;
        held.push((i.name.clone(), heap, buf, map, 31 + k as u32, gem));
    }
    let mark = Mark::new("rmmod vivid");
    // Refusing (the heap pins vivid while its buffers live) and allowing (the buffers
    // outlive the device) are both acceptable; touching freed device memory is not.
    let refused = modules::rmmod("vivid").err();
    match &refused {
        Some(msg) => {
            println!("INFO removal: rmmod vivid with live heap buffers was refused: {msg}")
        }
        None => println!("INFO removal: rmmod vivid with live heap buffers succeeded"),
    }
    let mut errs = Vec::new();
    for (name, heap, buf, map, seed, gem) in held {
        if map.words()[1] != dma_buf::pattern(seed, 1) {
            errs.push(format!("[{name}] old mapping changed after rmmod vivid"));
        }
        // vgem's import still refers to the same buffer and contents.
        match vgem.buffer_to_prime_fd(gem, 0o2 | 0o2_000_000) {
            Ok(fd) => {
                if let Err(e) = dma_buf::check(fd.as_fd(), LEN, seed) {
                    errs.push(format!("[{name}] through vgem after rmmod vivid: {e}"));
                }
            }
            Err(e) => errs.push(format!(
                "[{name}] PRIME export from vgem after rmmod vivid: {e}"
            )),
        }
        if let Err(e) = vgem.close_buffer(gem) {
            errs.push(format!("[{name}] closing vgem's import: {e}"));
        }
        drop(map);
        if let Err(e) = still_works(&buf, LEN, seed) {
            errs.push(format!("[{name}] {e}"));
        }
        if refused.is_none() {
            match dma_heap::alloc(heap.fd.as_fd(), 4096) {
                Err(Errno::NODEV) => {}
                Ok(_) => errs.push(format!(
                    "[{name}] allocation after the device went away succeeded"
                )),
                Err(e) => errs.push(format!(
                    "[{name}] allocation after the device went away: {e}, expected ENODEV"
                )),
            }
            if Path::new(dma_heap::CLASS).join(&name).exists() {
                errs.push(format!(
                    "[{name}] heap still in {} after its device went away",
                    dma_heap::CLASS
                ));
            }
        }
        // Closing the buffer and the heap fd after the device is gone must be safe.
        drop(buf);
        drop(heap);
    }
    if refused.is_some() {
        if let Err(e) = modules::rmmod("vivid") {
            errs.push(format!(
                "rmmod vivid still refused after the buffers were closed: {e}"
            ));
        }
    }
    let live1 = dma_heap::debugfs_counter("live_buffers")?;
    if live1 != live0 {
        errs.push(format!(
            "live_buffers {live0} -> {live1} after the buffers were closed"
        ));
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

fn vivid_reloaded_contig_heap_added() -> Result<(), String> {
    if !modules::is_loaded("vivid") {
        modules::insmod("vivid", "allocators=1")?;
    }
    let dev = dma_heap::device_dir("vivid.0").map_err(|e| format!("vivid.0 after reload: {e}"))?;
    let has_contig = dma_heap::heaps_of_device("vivid.0")
        .map(|v| v.iter().any(|h| h.contiguous))
        .unwrap_or(false);
    if !has_contig {
        dma_heap::control("add", &dma_heap::spec("vivid.0", Some("contig"))?)?;
    }
    let heaps = dma_heap::heaps_of_device("vivid.0")?;
    let h = heaps
        .iter()
        .find(|h| h.contiguous)
        .ok_or("no contiguous heap for the new vivid.0 after add")?;
    check_sane(h, &dev, true)?;
    // Named for its memory: contiguous, below vivid.0's 32-bit reach.
    if h.name != "system-32bit-contiguous" {
        return Err(format!(
            "contiguous heap of vivid.0 is named {}, expected system-32bit-contiguous",
            h.name
        ));
    }
    let b = Heap::open(&h.name)?.alloc(1920 * 1080 * 4)?;
    dma_buf::fill(b.as_fd(), 1920 * 1080 * 4, 41)?;
    dma_buf::check(b.as_fd(), 1920 * 1080 * 4, 41)
}

/// Puts the guest in the state the phases after `removal` expect, whatever the removal
/// tests left behind: device_heap loaded, vivid loaded in dma-contig mode, and a
/// contiguous heap for vivid.0. Run by /init after the phase (`heapland-guest --after removal`).
/// Writes to `add` race unbinding, binding and removing vivid.0. Only a bound device may
/// get a heap, and the unbind that follows must take it away: once vivid.0 is unbound,
/// and again once vivid is unloaded, no heap for it may be left, and the kernel must not
/// complain. Leaves vivid unloaded.
fn add_races_unbind_and_rmmod_vivid() -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    const DRV: &str = "/sys/bus/platform/drivers/vivid";
    if !modules::is_loaded("vivid") {
        modules::insmod("vivid", "")?;
    }
    let spec = dma_heap::spec("vivid.0", Some("contig"))?;
    // Only adds serve vivid.0 during the race: its boot entry goes (restore() brings one
    // back), and so does an entry a failed run may have left.
    for entry in [dma_heap::spec("vivid.0", None)?, spec.clone()] {
        let _ = dma_heap::control_raw("remove", &entry);
    }
    // What serving vivid.0 leaves: its heap (which only it needs) and its links.
    let vivid_heaps = || -> Vec<String> {
        let mut left: Vec<String> = dma_heap::device_heaps()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n == "system-32bit-contiguous")
            .collect();
        if let Ok(d) = dma_heap::device_dir("vivid.0") {
            if d.join("dma_heaps").exists() {
                left.push(format!("{}/dma_heaps", d.display()));
            }
        }
        left
    };
    let live0 = dma_heap::debugfs_counter("live_buffers")?;
    let mark = Mark::new("add against unbind and rmmod vivid");
    let stop = AtomicBool::new(false);
    let (added, refused) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut errs = Vec::new();
    std::thread::scope(|s| {
        let adder = s.spawn(|| -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                match dma_heap::control_raw("add", &spec) {
                    Ok(()) => added.fetch_add(1, Ordering::Relaxed),
                    // EEXIST: already there; ENODEV: unbound or gone.
                    Err(e) if matches!(e.raw_os_error(), Some(17) | Some(19)) => {
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => return Err(format!("add {spec}: {e}")),
                };
            }
            Ok(())
        });
        let settle = || std::thread::sleep(std::time::Duration::from_millis(50));
        for round in 0..20 {
            if let Err(e) = fs::write(format!("{DRV}/unbind"), "vivid.0") {
                errs.push(format!("round {round}: unbind: {e}"));
                break;
            }
            settle();
            let left = vivid_heaps();
            if !left.is_empty() {
                errs.push(format!("round {round}: unbound vivid.0 has heaps {left:?}"));
            }
            if let Err(e) = fs::write(format!("{DRV}/bind"), "vivid.0") {
                errs.push(format!("round {round}: bind: {e}"));
                break;
            }
            settle();
        }
        for round in 0..3 {
            if let Err(e) = modules::rmmod("vivid") {
                errs.push(format!("rmmod vivid {round}: {e}"));
                break;
            }
            settle();
            let left = vivid_heaps();
            if !left.is_empty() {
                errs.push(format!("after rmmod vivid {round}: heaps {left:?} remain"));
            }
            if round < 2 {
                if let Err(e) = modules::insmod("vivid", "") {
                    errs.push(format!("insmod vivid {round}: {e}"));
                    break;
                }
                settle();
            }
        }
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = adder
            .join()
            .unwrap_or_else(|_| Err("adder panicked".into()))
        {
            errs.push(e);
        }
    });
    let left = vivid_heaps();
    if !left.is_empty() {
        errs.push(format!(
            "at the end heaps {left:?} remain in {}",
            dma_heap::CLASS
        ));
    }
    let (added, refused) = (added.into_inner(), refused.into_inner());
    println!("INFO removal: {added} adds took, {refused} refused during the race");
    if added == 0 {
        errs.push("no add ever took: the race raced nothing".into());
    }
    settle_race(live0, &mark, errs)
}

pub fn restore() -> Result<(), String> {
    if !modules::is_loaded(MODULE) {
        modules::insmod(MODULE, &modules::boot_params(MODULE))?;
    }
    if !modules::is_loaded("vivid") {
        modules::insmod("vivid", "allocators=1")?;
    }
    let has_contig = dma_heap::heaps_of_device("vivid.0")
        .map(|v| v.iter().any(|h| h.contiguous))
        .unwrap_or(false);
    if !has_contig {
        dma_heap::control("add", &dma_heap::spec("vivid.0", Some("contig"))?)?;
    }
    Ok(())
}

/// The end of a race test: the live-buffer count is back where it started,
/// the kernel log is clean, and every problem seen is reported at once.
fn settle_race(live0: u64, mark: &Mark, mut errs: Vec<String>) -> Result<(), String> {
    let live1 = dma_heap::debugfs_counter("live_buffers")?;
    if live1 != live0 {
        errs.push(format!("live_buffers {live0} -> {live1}"));
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}
