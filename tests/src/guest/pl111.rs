//! The arm boot: QEMU's Versatile Express, whose PL111 display engine has no IOMMU and
//! scans out only physically contiguous memory (`drm_gem_dma`: a PRIME import must be one
//! contiguous DMA range). Here the constraint is the hardware's, not a `devices=` hint:
//!
//! - buffers proven scattered (a scatter-gather heap's, vgem's, vivid's vmalloc one) are
//!   refused by PL111;
//! - the heap `heapland-heaps for <display> <camera>` picks is accepted, scanned out, and
//!   seen in the KMS state and in QEMU's own screendump of the emulated display (taken by
//!   the host harness, an oracle independent of this code);
//! - `DMA_BUF_IOCTL_SYNC` reaches the non-coherent display (the kernel's dma tracepoints);
//! - highmem pages of a 32-bit kernel are cleared, mapped and synced;
//! - the display's heap follows its driver: made when pl111 binds after the module loaded,
//!   gone when it unbinds, back when it binds again.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drm::buffer::{Buffer as _, DrmFourcc, DrmModifier, Handle as BufferHandle, PlanarBuffer};
use drm::control::{connector, crtc, framebuffer, Device as _, FbCmd2Flags};

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap};
use super::drm_card::{self, Card};
use super::kernel_log::Mark;
use super::placement;
use super::v4l2::{cstr, Video, CAP_VIDEO_CAPTURE, MEMORY_MMAP};
use super::Test;

/// The PL111's AMBA device on vexpress-a15 (tests/vm/run names it in `devices=`).
pub const CLCD: &str = "1c1f0000.clcd";
/// The heap the module made for it: contiguous memory anywhere in RAM (PL111's 32-bit
/// mask reaches all of the board's RAM), shared with vivid.0, which needs the same.
const CLCD_HEAP: &str = "system-contiguous";
/// Scattered pages anywhere: the kernel has no heaps of its own here (armmp-lpae
/// does not build the heap core's system heap), so the module makes `system` for vgem,
/// served as a scatter-gather device on purpose (`platform/vgem:sg`).
const SG_HEAP: &str = "system";
/// Where the host harness puts QEMU's screendumps (virtio-9p, tests/vm/run).
const HOSTOUT: &str = "/hostout";
/// The display's mode and so every buffer here: 1024x768 XRGB8888, 3 MiB.
const W: u32 = 1024;
const H: u32 = 768;
const LEN: usize = (W * H * 4) as usize;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "pl111::contiguity_comes_from_the_kernel",
            run: contiguity_comes_from_the_kernel,
        },
        Test {
            name: "pl111::scattered_buffers_refused",
            run: scattered_buffers_refused,
        },
        Test {
            name: "pl111::chosen_heap_scanned_out",
            run: chosen_heap_scanned_out,
        },
        Test {
            name: "pl111::sync_reaches_the_display",
            run: sync_reaches_the_display,
        },
        Test {
            name: "pl111::highmem_cleared_mapped_synced",
            run: highmem_cleared_mapped_synced,
        },
    ]
}

/// Unbinding the display's driver: the arm boot's last phase. After pl111 has been
/// unbound and bound again with fbcon on it, a later modeset that fbcon makes (when a
/// compositor gives the VT back) oopsed in the kernel's timer code (6.12.95 armmp-lpae),
/// so nothing runs after this.
pub fn rebind_tests() -> Vec<Test> {
    vec![Test {
        name: "pl111::heap_follows_the_driver",
        run: heap_follows_the_driver,
    }]
}

fn clcd_sysfs() -> PathBuf {
    Path::new("/sys/bus/amba/devices").join(CLCD)
}

fn pl111() -> Result<Card, String> {
    drm_card::find("pl111", "card")
}

/// The module chose contiguous memory for PL111 from what the kernel knows of it (no
/// IOMMU), with no `:contig` in `devices=`; the device is not coherent.
fn contiguity_comes_from_the_kernel() -> Result<(), String> {
    let mut errs = Vec::new();
    let param = fs::read_to_string("/sys/module/device_heap/parameters/devices")
        .map_err(|e| format!("devices parameter: {e}"))?;
    let entry = param
        .trim()
        .split(',')
        .find(|s| s.contains(CLCD))
        .ok_or_else(|| format!("devices={} does not name {CLCD}", param.trim()))?;
    if entry != format!("amba/{CLCD}") {
        errs.push(format!("devices= entry {entry:?} carries a backing hint"));
    }
    if clcd_sysfs().join("iommu_group").exists() {
        errs.push(format!("{CLCD} sits behind an IOMMU"));
    }
    let heaps =
        dma_heap::heaps_serving(&fs::canonicalize(clcd_sysfs()).map_err(|e| e.to_string())?)?;
    let names: Vec<&str> = heaps.iter().map(|h| h.name.as_str()).collect();
    match heaps.iter().find(|h| h.name == CLCD_HEAP) {
        None => errs.push(format!("{CLCD} has heaps {names:?}, not {CLCD_HEAP}")),
        Some(h) => {
            if h.backing != "contig" || !h.contiguous {
                errs.push(format!(
                    "{CLCD_HEAP}: backing {}, contiguous {}",
                    h.backing, h.contiguous
                ));
            }
            if h.coherent {
                errs.push(format!("{CLCD_HEAP} says coherent: ARM DMA here is not"));
            }
            println!(
                "INFO pl111: {CLCD_HEAP}: {} (contig_source {}), below {} bits, coherent {}",
                h.backing, h.contig_source, h.dma_mask_bits, h.coherent
            );
        }
    }
    super::all_ok(errs)
}

/// An XRGB8888 framebuffer description for ADDFB2.
struct Xrgb(BufferHandle);

impl PlanarBuffer for Xrgb {
    fn size(&self) -> (u32, u32) {
        (W, H)
    }
    fn format(&self) -> DrmFourcc {
        DrmFourcc::Xrgb8888
    }
    fn modifier(&self) -> Option<DrmModifier> {
        None
    }
    fn pitches(&self) -> [u32; 4] {
        [W * 4, 0, 0, 0]
    }
    fn handles(&self) -> [Option<BufferHandle>; 4] {
        [Some(self.0), None, None, None]
    }
    fn offsets(&self) -> [u32; 4] {
        [0; 4]
    }
}

/// Imports `fd` into PL111 and adds it as a 1024x768 XRGB8888 framebuffer.
fn import(card: &Card, fd: BorrowedFd<'_>) -> Result<framebuffer::Handle, String> {
    let handle = card
        .prime_fd_to_buffer(fd)
        .map_err(|e| format!("PRIME_FD_TO_HANDLE: {e}"))?;
    card.add_planar_framebuffer(&Xrgb(handle), FbCmd2Flags::empty())
        .map_err(|e| format!("ADDFB2: {e}"))
}

/// Whether the pages of `buf` are physically one range.
fn contiguous(buf: BorrowedFd<'_>) -> Result<bool, String> {
    let pfns = placement::frames(buf)?;
    Ok(pfns.windows(2).all(|w| w[1] == w[0] + 1))
}

/// Makes buffers with `make` until one is proven scattered (the others stay alive while
/// trying, which only scatters the next more), and returns it. A fresh guest often
/// hands out adjacent chunks: such a buffer proves nothing and PL111 may take it.
fn scattered(
    what: &str,
    mut make: impl FnMut() -> Result<OwnedFd, String>,
) -> Result<OwnedFd, String> {
    let mut kept = Vec::new();
    for _ in 0..8 {
        let fd = make()?;
        if !contiguous(fd.as_fd())? {
            return Ok(fd);
        }
        println!("INFO pl111: a {what} buffer came out contiguous, trying another");
        kept.push(fd);
    }
    Err(format!(
        "8 {what} buffers in a row were physically contiguous"
    ))
}

/// The capture node of vivid's instance `n` (`n_devs=2 ... allocators=0,1`: instance 0
/// captures into vmalloc memory, instance 1 into dma-contig memory). Both instances are
/// children of the one platform device vivid.0; QUERYCAP's bus_info tells them apart.
pub fn vivid_instance(n: u32) -> Result<(PathBuf, Video), String> {
    let want = format!("platform:vivid-{n:03}");
    let mut seen = Vec::new();
    for i in 0..16 {
        let node = PathBuf::from(format!("/dev/video{i}"));
        let Ok(video) = Video::open(&node) else {
            continue;
        };
        let cap = video
            .querycap()
            .map_err(|e| format!("QUERYCAP {}: {e}", node.display()))?;
        let bus = cstr(&cap.bus_info);
        if cstr(&cap.driver) == "vivid" && bus == want && cap.device_caps & CAP_VIDEO_CAPTURE != 0 {
            return Ok((node, video));
        }
        seen.push(format!("{}={bus}", node.display()));
    }
    Err(format!(
        "no capture node of {want} (seen {})",
        seen.join(" ")
    ))
}

/// A scatter-gather heap's buffer, a vgem buffer and a vivid vmalloc buffer, each proven
/// scattered first, are refused by PL111's PRIME import or by ADDFB2.
fn scattered_buffers_refused() -> Result<(), String> {
    let mark = Mark::new("scattered buffers into pl111");
    let card = pl111()?;
    let mut errs = Vec::new();
    let mut candidates: Vec<(&str, Result<OwnedFd, String>)> = Vec::new();

    let sg = Heap::open(SG_HEAP)?;
    candidates.push((
        "scatter-gather heap",
        scattered(SG_HEAP, || sg.alloc(LEN as u64)),
    ));

    if let Err(e) = vgem_refused(&card) {
        errs.push(format!("vgem: {e}"));
    }

    let (node, video) = vivid_instance(0)?;
    let granted = video.reqbufs(8, MEMORY_MMAP)?;
    let mut index = 0;
    candidates.push((
        "vivid vmalloc",
        scattered("vivid.0", || {
            if index >= granted {
                return Err(format!("{}: only {granted} buffers", node.display()));
            }
            index += 1;
            video.expbuf(index - 1)
        }),
    ));

    for (what, fd) in candidates {
        match fd {
            Err(e) => errs.push(format!("{what}: {e}")),
            // drm_gem_dma refuses at import what is not one contiguous DMA range.
            Ok(fd) => match card.prime_fd_to_buffer(fd.as_fd()) {
                Ok(handle) => {
                    let _ = card.close_buffer(handle);
                    errs.push(format!("PL111 imported a scattered {what} buffer"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    println!("INFO pl111: scattered {what} buffer refused by PRIME import: {e}");
                }
                Err(e) => errs.push(format!("{what}: PRIME import failed, not with EINVAL: {e}")),
            },
        }
    }
    let _ = video.reqbufs(0, MEMORY_MMAP);
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// vgem maps its buffers VM_PFNMAP, which /proc/self/pagemap does not show: what PL111
/// was offered is read from the kernel's `dma_map_sg` tracepoint, which the import fires
/// (DMA address and length of every segment), before the import's verdict.
fn vgem_refused(card: &Card) -> Result<(), String> {
    let vgem = drm_card::find("vgem", "card")?;
    let trace = DmaTrace::start_events(&["dma_map_sg"])?;
    let mut kept = Vec::new();
    for _ in 0..8 {
        let bo = vgem
            .create_dumb_buffer((W, H), DrmFourcc::Xrgb8888, 32)
            .map_err(|e| format!("CREATE_DUMB: {e}"))?;
        let fd = vgem
            .buffer_to_prime_fd(bo.handle(), drm::CLOEXEC | drm::RDWR)
            .map_err(|e| format!("PRIME export: {e}"))?;
        trace.clear()?;
        let imported = card.prime_fd_to_buffer(fd.as_fd());
        let segs = trace.mapped_segments(CLCD)?;
        let one_range = segs.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
        match (one_range, imported) {
            (true, imported) => {
                if let Ok(h) = imported {
                    let _ = card.close_buffer(h);
                }
                println!("INFO pl111: a vgem buffer came out as one DMA range, trying another");
                kept.push(fd);
            }
            (false, Ok(h)) => {
                let _ = card.close_buffer(h);
                return Err(format!("PL111 imported it in {} DMA segments", segs.len()));
            }
            (false, Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                println!(
                    "INFO pl111: scattered vgem buffer ({} DMA segments) refused by PRIME import: {e}",
                    segs.len()
                );
                return Ok(());
            }
            (false, Err(e)) => return Err(format!("PRIME import failed, not with EINVAL: {e}")),
        }
    }
    Err("8 vgem buffers in a row were one DMA range".into())
}

/// The heap heapland-heaps chooses for the display and vivid.1's camera, as JSON.
fn chosen_heap() -> Result<String, String> {
    let (camera, _) = vivid_instance(1)?;
    let card = pl111()?;
    let out = std::process::Command::new("heapland-heaps")
        .arg("for")
        .arg(&card.path)
        .arg(&camera)
        .args([
            "--format",
            "XRGB8888",
            "--size",
            &format!("{W}x{H}"),
            "--json",
        ])
        .output()
        .map_err(|e| format!("heapland-heaps: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "heapland-heaps for {} {}: {}: {text} {}",
            card.path.display(),
            camera.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("heapland-heaps --json: {e}: {text}"))?;
    v["heap"]["name"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("heapland-heaps --json names no heap: {text}"))
}

/// Colour of pixel (x, y): four quadrants of pure colour with a gradient band, so that a
/// swapped channel, a wrong pitch or an offset all show.
fn pixel(x: u32, y: u32) -> [u8; 3] {
    match (x < W / 2, y < H / 2) {
        (true, true) => [0xff, 0, (x / 4) as u8],
        (false, true) => [0, 0xff, (y / 3) as u8],
        (true, false) => [(y / 3) as u8, 0, 0xff],
        (false, false) => [0xff, 0xff, (x ^ y) as u8 & 0xf0],
    }
}

fn xrgb(p: [u8; 3]) -> u32 {
    (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2])
}

/// The connected HDMI connector, its CRTC and its 1024x768 mode.
fn pipeline(card: &Card) -> Result<(connector::Handle, crtc::Handle, drm::control::Mode), String> {
    let res = card
        .resource_handles()
        .map_err(|e| format!("GETRESOURCES: {e}"))?;
    let crtc = *res.crtcs().first().ok_or("no CRTC")?;
    for &c in res.connectors() {
        let info = card
            .get_connector(c, true)
            .map_err(|e| format!("GETCONNECTOR: {e}"))?;
        if info.state() != connector::State::Connected {
            continue;
        }
        let mode = info
            .modes()
            .iter()
            .find(|m| m.size() == (W as u16, H as u16))
            .copied()
            .ok_or_else(|| format!("{:?} has no {W}x{H} mode", info.interface()))?;
        return Ok((c, crtc, mode));
    }
    Err("no connected connector on PL111".into())
}

/// Asks the host for QEMU's screendump `name` and waits for it (tests/vm/run).
pub fn screendump(name: &str) -> Result<Vec<u8>, String> {
    let path = Path::new(HOSTOUT).join(format!("{name}.ppm"));
    println!("SCREENDUMP {name}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(data) = fs::read(&path) {
            return Ok(data);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("no screendump {} after 30 s", path.display()))
}

/// A binary PPM (P6, maxval 255): width, height and RGB bytes.
pub fn parse_ppm(data: &[u8]) -> Result<(u32, u32, &[u8]), String> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        let s = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if s == i {
            return Err("PPM header cut short".into());
        }
        fields.push(String::from_utf8_lossy(&data[s..i]).into_owned());
    }
    i += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("not a P6/255 PPM: {fields:?}"));
    }
    let w: u32 = fields[1].parse().map_err(|_| "PPM width")?;
    let h: u32 = fields[2].parse().map_err(|_| "PPM height")?;
    let px = data
        .get(i..i + (w * h * 3) as usize)
        .ok_or("PPM pixels cut short")?;
    Ok((w, h, px))
}

/// The buffer from the heap heapland-heaps picks for the display and the camera is
/// imported, added and scanned out: the KMS state holds its framebuffer, and QEMU's
/// screendump of the emulated PL111 shows its pixels.
fn chosen_heap_scanned_out() -> Result<(), String> {
    let mark = Mark::new("chosen heap on pl111");
    let name = chosen_heap()?;
    println!("INFO pl111: heapland-heaps picks {name} for PL111 and vivid's dma-contig camera");
    let heap = Heap::open(&name)?;
    let fd = heap.alloc(LEN as u64)?;
    {
        let mut map = Mapping::new(fd.as_fd(), LEN)?;
        if !contiguous(fd.as_fd())? {
            return Err(format!("{name} gave a scattered buffer"));
        }
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC start: {e}"))?;
        for (i, px) in map.words_mut().iter_mut().enumerate() {
            *px = xrgb(pixel(i as u32 % W, i as u32 / W));
        }
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC end: {e}"))?;
    }
    let card = pl111()?;
    let fb =
        import(&card, fd.as_fd()).map_err(|e| format!("PL111 refused {name}'s buffer: {e}"))?;
    let (conn, crtc, mode) = pipeline(&card)?;
    card.set_crtc(crtc, Some(fb), (0, 0), &[conn], Some(mode))
        .map_err(|e| format!("SETCRTC with {name}'s buffer: {e}"))?;
    let mut errs = Vec::new();
    let shown = card
        .get_crtc(crtc)
        .map_err(|e| format!("GETCRTC: {e}"))?
        .framebuffer();
    if shown != Some(fb) {
        errs.push(format!("the CRTC scans out {shown:?}, not {fb:?}"));
    }
    match screendump("pl111-chosen-heap").and_then(|d| compare(&d)) {
        Ok(()) => println!("INFO pl111: QEMU's screendump shows {name}'s buffer pixel for pixel"),
        Err(e) => errs.push(e),
    }
    let _ = card.set_crtc(crtc, None, (0, 0), &[], None);
    let _ = card.destroy_framebuffer(fb);
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}

/// Compares a screendump with [`pixel`] everywhere.
fn compare(data: &[u8]) -> Result<(), String> {
    let (w, h, px) = parse_ppm(data)?;
    if (w, h) != (W, H) {
        return Err(format!("screendump is {w}x{h}, the mode {W}x{H}"));
    }
    let mut wrong = 0;
    let mut first = None;
    for y in 0..H {
        for x in 0..W {
            let i = ((y * W + x) * 3) as usize;
            let got = [px[i], px[i + 1], px[i + 2]];
            if got != pixel(x, y) {
                wrong += 1;
                first.get_or_insert((x, y, got, pixel(x, y)));
            }
        }
    }
    match first {
        None => Ok(()),
        Some((x, y, got, want)) => Err(format!(
            "screendump: {wrong} of {} pixels differ, first at ({x},{y}): {got:02x?}, expected {want:02x?}",
            W * H
        )),
    }
}

/// The kernel's dma tracepoints, through tracefs.
struct DmaTrace;

const TRACING: &str = "/sys/kernel/tracing";

const SYNC_EVENTS: [&str; 2] = ["dma_sync_sg_for_device", "dma_sync_sg_for_cpu"];

impl DmaTrace {
    fn start() -> Result<Self, String> {
        Self::start_events(&SYNC_EVENTS)
    }

    fn start_events(events: &[&'static str]) -> Result<Self, String> {
        if !Path::new(TRACING).join("trace").exists() {
            let out = std::process::Command::new("mount")
                .args(["-t", "tracefs", "tracefs", TRACING])
                .output()
                .map_err(|e| format!("mount tracefs: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "mount tracefs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let w = |f: &str, v: &str| {
            fs::write(Path::new(TRACING).join(f), v).map_err(|e| format!("{TRACING}/{f}: {e}"))
        };
        for e in events {
            w(&format!("events/dma/{e}/enable"), "1")?;
        }
        w("trace", "")?;
        Ok(Self)
    }

    fn clear(&self) -> Result<(), String> {
        fs::write(Path::new(TRACING).join("trace"), "").map_err(|e| format!("{TRACING}/trace: {e}"))
    }

    /// The (DMA address, length) segments of the last `dma_map_sg` for `device`.
    fn mapped_segments(&self, device: &str) -> Result<Vec<(u64, u64)>, String> {
        let lines = self.lines("dma_map_sg", device)?;
        let line = lines
            .last()
            .ok_or_else(|| format!("no dma_map_sg traced for {device}"))?;
        let list = |key: &str| -> Result<Vec<u64>, String> {
            let start = line
                .find(&format!("{key}={{"))
                .ok_or_else(|| format!("no {key} in {line}"))?
                + key.len()
                + 2;
            let end = start + line[start..].find('}').ok_or("unterminated list")?;
            line[start..end]
                .split(',')
                .map(|v| {
                    u64::from_str_radix(v.trim().trim_start_matches("0x"), 16)
                        .map_err(|_| format!("{key}: {v:?} in {line}"))
                })
                .collect()
        };
        Ok(list("dma_addrs")?.into_iter().zip(list("sizes")?).collect())
    }

    /// Trace lines of `event` naming `device`.
    fn lines(&self, event: &str, device: &str) -> Result<Vec<String>, String> {
        let text = fs::read_to_string(Path::new(TRACING).join("trace"))
            .map_err(|e| format!("{TRACING}/trace: {e}"))?;
        Ok(text
            .lines()
            .filter(|l| l.contains(&format!("{event}:")) && l.contains(device))
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for DmaTrace {
    fn drop(&mut self) {
        for e in [
            "dma_sync_sg_for_device",
            "dma_sync_sg_for_cpu",
            "dma_map_sg",
        ] {
            let _ = fs::write(format!("{TRACING}/events/dma/{e}/enable"), "0");
        }
    }
}

/// DMA_BUF_IOCTL_SYNC around a CPU write of a buffer PL111 has imported does the cache
/// maintenance for PL111 (non-coherent here): the kernel traces dma_sync_sg_for_cpu at
/// the start and dma_sync_sg_for_device at the end, for the display's device, and only
/// for devices that need it (dma_dev_need_sync()).
fn sync_reaches_the_display() -> Result<(), String> {
    let heap = Heap::open(CLCD_HEAP)?;
    let fd = heap.alloc(LEN as u64)?;
    let card = pl111()?;
    let fb = import(&card, fd.as_fd())?;
    let trace = DmaTrace::start()?;
    let mut errs = Vec::new();
    {
        let mut map = Mapping::new(fd.as_fd(), LEN)?;
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC start: {e}"))?;
        map.words_mut().fill(0x00ff_00ff);
        dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| format!("SYNC end: {e}"))?;
    }
    for event in ["dma_sync_sg_for_cpu", "dma_sync_sg_for_device"] {
        let lines = trace.lines(event, CLCD)?;
        match lines.first() {
            Some(l) => println!("INFO pl111: {}", l.trim()),
            None => errs.push(format!("SYNC traced no {event} for {CLCD}")),
        }
    }
    drop(trace);
    let _ = card.destroy_framebuffer(fb);
    super::all_ok(errs)
}

/// Allocates from the scatter-gather heap until a page lands in highmem (32-bit ARM:
/// memory the kernel does not map), then checks that buffer: it reads as zeros, a
/// pattern written through one mapping reads back through another, and SYNC with vgem
/// attached does vgem's cache maintenance over it.
fn highmem_cleared_mapped_synced() -> Result<(), String> {
    let zones = placement::zones()?;
    let high = zones
        .iter()
        .find(|z| z.name == "HighMem")
        .ok_or_else(|| format!("no HighMem zone: {zones:?}"))?
        .clone();
    let heap = Heap::open(SG_HEAP)?;
    const BUF: usize = 4 << 20;
    let mut kept = Vec::new();
    let mut found = None;
    for _ in 0..48 {
        let fd = heap.alloc(BUF as u64)?;
        let pfns = placement::frames(fd.as_fd())?;
        let n = pfns
            .iter()
            .filter(|p| **p >= high.start && **p < high.start + high.spanned)
            .count();
        if n > 0 {
            found = Some((fd, n));
            break;
        }
        kept.push(fd);
    }
    let (fd, n) = found.ok_or_else(|| {
        format!(
            "{} buffers of {SG_HEAP}, no page in highmem (pfn {}..)",
            kept.len(),
            high.start
        )
    })?;
    println!(
        "INFO pl111: {SG_HEAP} buffer {} has {n} of {} pages in highmem",
        kept.len() + 1,
        BUF / 4096
    );
    let mut errs = Vec::new();
    {
        let map = Mapping::new(fd.as_fd(), BUF)?;
        if let Some(i) = map.words().iter().position(|w| *w != 0) {
            errs.push(format!(
                "fresh buffer not cleared at word {i}: {:#x}",
                map.words()[i]
            ));
        }
    }
    let vgem = drm_card::find("vgem", "card")?;
    let gem = vgem
        .prime_fd_to_buffer(fd.as_fd())
        .map_err(|e| format!("vgem PRIME import: {e}"))?;
    let trace = DmaTrace::start()?;
    dma_buf::sync(fd.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
        .map_err(|e| format!("SYNC start: {e}"))?;
    dma_buf::fill(fd.as_fd(), BUF, 0x4d)?;
    dma_buf::sync(fd.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
        .map_err(|e| format!("SYNC end: {e}"))?;
    if let Err(e) = dma_buf::check(fd.as_fd(), BUF, 0x4d) {
        errs.push(format!("read back through a second mapping: {e}"));
    }
    if trace.lines("dma_sync_sg_for_device", "vgem")?.is_empty() {
        errs.push("SYNC traced no dma_sync_sg_for_device for vgem".into());
    }
    drop(trace);
    let _ = vgem.close_buffer(gem);
    super::all_ok(errs)
}

/// Waits up to 10 s for PL111's heap links (its `dma_heaps/`) to exist (`true`) or be
/// gone (`false`). Its heap itself stays: vivid.0 needs the same memory.
fn wait_heap(present: bool) -> Result<(), String> {
    let path = clcd_sysfs().join("dma_heaps");
    let start = Instant::now();
    while path.exists() != present {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "{} still {} after 10 s",
                path.display(),
                if present { "missing" } else { "there" }
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// device_heap was loaded before pl111 (tests/vm/init loads in the order tests/vm/run
/// wrote), naming the display in `devices=`: it was served when pl111 bound. Its links go
/// when pl111 unbinds, and come back when pl111 binds again.
fn heap_follows_the_driver() -> Result<(), String> {
    let mark = Mark::new("pl111 unbind and bind");
    let order = fs::read_to_string("/etc/heapland/modules").map_err(|e| e.to_string())?;
    let pos = |m: &str| {
        order
            .lines()
            .position(|l| l.split_whitespace().next() == Some(m))
    };
    match (pos("device_heap"), pos("pl111_drm")) {
        (Some(d), Some(p)) if d < p => {}
        other => {
            return Err(format!(
                "device_heap was not loaded before pl111_drm: {other:?}"
            ))
        }
    }
    wait_heap(true)?;
    let driver = fs::canonicalize(clcd_sysfs().join("driver"))
        .map_err(|e| format!("{CLCD} has no driver: {e}"))?;
    let mut errs = Vec::new();
    for round in 0..2 {
        fs::write(driver.join("unbind"), CLCD).map_err(|e| format!("unbind {CLCD}: {e}"))?;
        if let Err(e) = wait_heap(false) {
            errs.push(format!("round {round}, unbound: {e}"));
        }
        fs::write(driver.join("bind"), CLCD).map_err(|e| format!("bind {CLCD}: {e}"))?;
        if let Err(e) = wait_heap(true) {
            errs.push(format!("round {round}, bound again: {e}"));
            break;
        }
    }
    // The heap that came back allocates, and PL111 takes its buffer.
    let heap = Heap::open(CLCD_HEAP)?;
    let fd = heap.alloc(LEN as u64)?;
    match pl111().and_then(|card| import(&card, fd.as_fd()).map(|fb| (card, fb))) {
        Ok((card, fb)) => {
            let _ = card.destroy_framebuffer(fb);
        }
        Err(e) => errs.push(format!("after rebinding: {e}")),
    }
    if let Err(e) = mark.check_clean() {
        errs.push(e);
    }
    super::all_ok(errs)
}
