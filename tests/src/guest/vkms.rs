//! vkms (the display): scan out a heap buffer and read the composed frame back through the
//! writeback connector into a second heap buffer.
//!
//! vkms composes on the CPU, so importing a heap buffer exercises the heap's vmap. Stock
//! vkms refuses a commit in which the Virtual and the Writeback connector share the CRTC
//! (drm_atomic_check_valid_clones), so the commit detaches the Virtual connector.

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use drm::buffer::{DrmFourcc, DrmModifier, Handle as BufferHandle, PlanarBuffer};
use drm::control::{
    connector, crtc, framebuffer, plane, property, AtomicCommitFlags, Device as _, FbCmd2Flags,
    ResourceHandle,
};
use drm::{ClientCapability, Device as _};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap};
use super::drm_card::{self, Card};
use super::Test;

pub fn tests() -> Vec<Test> {
    vec![Test {
        name: "vkms::scanout_and_writeback_match",
        run: scanout_and_writeback_match,
    }]
}

/// Modes scanned out: one whose buffers the buddy allocator can give in one piece and
/// 1080p, whose 8,294,400-byte buffers take the large-buffer path of contiguous heaps.
const SIZES: [(u32, u32); 2] = [(1024, 768), (1920, 1080)];

/// An XRGB8888 framebuffer description for ADDFB2.
struct Xrgb {
    handle: BufferHandle,
    w: u32,
    h: u32,
}

impl PlanarBuffer for Xrgb {
    fn size(&self) -> (u32, u32) {
        (self.w, self.h)
    }
    fn format(&self) -> DrmFourcc {
        DrmFourcc::Xrgb8888
    }
    fn modifier(&self) -> Option<DrmModifier> {
        None
    }
    fn pitches(&self) -> [u32; 4] {
        [self.w * 4, 0, 0, 0]
    }
    fn handles(&self) -> [Option<BufferHandle>; 4] {
        [Some(self.handle), None, None, None]
    }
    fn offsets(&self) -> [u32; 4] {
        [0; 4]
    }
}

fn props<T: ResourceHandle>(
    card: &Card,
    h: T,
) -> Result<HashMap<String, property::Handle>, String> {
    let set = card
        .get_properties(h)
        .map_err(|e| format!("GETPROPERTIES: {e}"))?;
    let map = set
        .as_hashmap(card)
        .map_err(|e| format!("GETPROPERTY: {e}"))?;
    Ok(map.into_iter().map(|(k, v)| (k, v.handle())).collect())
}

fn prop(map: &HashMap<String, property::Handle>, name: &str) -> Result<property::Handle, String> {
    map.get(name)
        .copied()
        .ok_or_else(|| format!("no property {name}"))
}

fn pixel(x: u32, y: u32) -> u32 {
    let r = x & 0xff;
    let g = y & 0xff;
    let b = ((x >> 8) * 61 + (y >> 8) * 113 + (x ^ y)) & 0xff;
    0xff00_0000 | r << 16 | g << 8 | b
}

/// The pieces of vkms's one pipeline.
pub struct Pipeline {
    crtc: crtc::Handle,
    /// The primary plane.
    pub plane: plane::Handle,
    virtual_conn: connector::Handle,
    writeback: connector::Handle,
    mode: drm::control::Mode,
}

/// vkms's CRTC, primary plane, Virtual and Writeback connectors, and the Virtual
/// connector's `w`x`h` mode.
pub fn pipeline(card: &Card, (w, h): (u32, u32)) -> Result<Pipeline, String> {
    let res = card
        .resource_handles()
        .map_err(|e| format!("GETRESOURCES: {e}"))?;
    let crtc = *res.crtcs().first().ok_or("no CRTC")?;
    let mut virtual_conn = None;
    let mut writeback = None;
    let mut mode = None;
    for &c in res.connectors() {
        let info = card
            .get_connector(c, true)
            .map_err(|e| format!("GETCONNECTOR: {e}"))?;
        match info.interface() {
            connector::Interface::Virtual => {
                virtual_conn = Some(c);
                mode = info
                    .modes()
                    .iter()
                    .find(|m| m.size() == (w as u16, h as u16))
                    .copied();
            }
            connector::Interface::Writeback => writeback = Some(c),
            _ => {}
        }
    }
    let mut primary = None;
    for p in card
        .plane_handles()
        .map_err(|e| format!("GETPLANERESOURCES: {e}"))?
    {
        let info = card.get_plane(p).map_err(|e| format!("GETPLANE: {e}"))?;
        if !res.filter_crtcs(info.possible_crtcs()).contains(&crtc) {
            continue;
        }
        let set = card
            .get_properties(p)
            .map_err(|e| format!("GETPROPERTIES: {e}"))?;
        let names = set.as_hashmap(card).map_err(|e| e.to_string())?;
        let type_id = names.get("type").ok_or("plane without type")?.handle();
        let (ids, vals) = set.as_props_and_values();
        let ty = ids
            .iter()
            .zip(vals)
            .find(|(i, _)| **i == type_id)
            .map(|(_, v)| *v);
        if ty == Some(1) {
            primary = Some(p);
            break;
        }
    }
    Ok(Pipeline {
        crtc,
        plane: primary.ok_or("no primary plane")?,
        virtual_conn: virtual_conn.ok_or("no Virtual connector")?,
        writeback: writeback.ok_or("no Writeback connector (enable_writeback?)")?,
        mode: mode.ok_or(format!("Virtual connector has no {w}x{h} mode"))?,
    })
}

fn import_fb(
    card: &Card,
    buf: &OwnedFd,
    (w, h): (u32, u32),
) -> Result<(BufferHandle, framebuffer::Handle), String> {
    let handle = card
        .prime_fd_to_buffer(buf.as_fd())
        .map_err(|e| format!("PRIME_FD_TO_HANDLE: {e}"))?;
    let fb = card
        .add_planar_framebuffer(&Xrgb { handle, w, h }, FbCmd2Flags::empty())
        .map_err(|e| format!("ADDFB2 {w}x{h} XRGB8888: {e}"))?;
    Ok((handle, fb))
}

/// Opens vkms's card with the client capabilities the writeback tests need.
pub fn open_card() -> Result<Card, String> {
    let card = drm_card::find("vkms", "card")?;
    for cap in [
        ClientCapability::UniversalPlanes,
        ClientCapability::Atomic,
        ClientCapability::WritebackConnectors,
    ] {
        card.set_client_capability(cap, true)
            .map_err(|e| format!("SET_CLIENT_CAP {cap:?}: {e}"))?;
    }
    Ok(card)
}

fn scanout_and_writeback_match() -> Result<(), String> {
    let card = open_card()?;
    let heaps = dma_heap::heaps_serving(&card.sysfs_device()?)?;
    let mut errs = Vec::new();
    for h in &heaps {
        let heap = Heap::open(&h.name)?;
        for (w, hh) in SIZES {
            match scanout_with_heap(&card, &heap, (w, hh)) {
                Err(e) => errs.push(format!("[{} {w}x{hh}] {e}", h.name)),
                Ok(()) => println!(
                    "INFO vkms: {w}x{hh} scanout from {} read back identical",
                    h.name
                ),
            }
        }
    }
    super::all_ok(errs)
}

fn scanout_with_heap(card: &Card, heap: &Heap, size: (u32, u32)) -> Result<(), String> {
    let len = (size.0 * size.1 * 4) as u64;
    let src = heap.alloc(len)?;
    let dst = heap.alloc(len)?;
    scanout_buffers(card, &src, &dst, size, &|| Ok(()))
}

/// Fills `src`, imports `src` and `dst` as framebuffers, runs `between`, then shows `src`
/// on the primary plane with `dst` as the writeback target and compares the two.
pub fn scanout_buffers(
    card: &Card,
    src: &OwnedFd,
    dst: &OwnedFd,
    size: (u32, u32),
    between: &dyn Fn() -> Result<(), String>,
) -> Result<(), String> {
    let (w, h) = size;
    let len = (w * h * 4) as usize;
    let pipe = pipeline(card, size)?;
    {
        let mut m = Mapping::new(src, len)?;
        dma_buf::sync(src.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_WRITE)
            .map_err(|e| e.to_string())?;
        for (i, w) in m.words_mut().iter_mut().enumerate() {
            *w = pixel(i as u32 % size.0, i as u32 / size.0);
        }
        dma_buf::sync(src.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_WRITE)
            .map_err(|e| e.to_string())?;
    }
    let (src_bo, src_fb) = import_fb(card, src, size)?;
    let (dst_bo, dst_fb) = import_fb(card, dst, size)?;
    between()?;

    let result = show_with_writeback(card, &pipe, src_fb, dst_fb, size)
        .and_then(|()| compare(src, dst, w, len));
    let _ = card.destroy_framebuffer(src_fb);
    let _ = card.destroy_framebuffer(dst_fb);
    let _ = card.close_buffer(src_bo);
    let _ = card.close_buffer(dst_bo);
    result
}

/// Shows framebuffer `src_fb` full-screen on the primary plane with `dst_fb` as the
/// writeback target, waits for the writeback's out-fence, and switches the pipeline off
/// again. Needs DRM master.
pub fn show_with_writeback(
    card: &Card,
    pipe: &Pipeline,
    src_fb: framebuffer::Handle,
    dst_fb: framebuffer::Handle,
    (w, h): (u32, u32),
) -> Result<(), String> {
    let crtc_p = props(card, pipe.crtc)?;
    let plane_p = props(card, pipe.plane)?;
    let virt_p = props(card, pipe.virtual_conn)?;
    let wb_p = props(card, pipe.writeback)?;
    let blob = card
        .create_property_blob(&pipe.mode)
        .map_err(|e| format!("CREATEPROPBLOB: {e}"))?;

    let mut out_fence: i32 = -1;
    let mut req = drm::control::atomic::AtomicModeReq::new();
    req.add_property(pipe.crtc, prop(&crtc_p, "MODE_ID")?, blob);
    req.add_property(
        pipe.crtc,
        prop(&crtc_p, "ACTIVE")?,
        property::Value::Boolean(true),
    );
    req.add_property(
        pipe.plane,
        prop(&plane_p, "FB_ID")?,
        property::Value::Framebuffer(Some(src_fb)),
    );
    req.add_property(
        pipe.plane,
        prop(&plane_p, "CRTC_ID")?,
        property::Value::CRTC(Some(pipe.crtc)),
    );
    for (name, v) in [
        ("SRC_X", 0u64),
        ("SRC_Y", 0),
        ("SRC_W", (w as u64) << 16),
        ("SRC_H", (h as u64) << 16),
        ("CRTC_X", 0),
        ("CRTC_Y", 0),
        ("CRTC_W", w as u64),
        ("CRTC_H", h as u64),
    ] {
        req.add_property(
            pipe.plane,
            prop(&plane_p, name)?,
            property::Value::UnsignedRange(v),
        );
    }
    req.add_property(
        pipe.virtual_conn,
        prop(&virt_p, "CRTC_ID")?,
        property::Value::CRTC(None),
    );
    req.add_property(
        pipe.writeback,
        prop(&wb_p, "CRTC_ID")?,
        property::Value::CRTC(Some(pipe.crtc)),
    );
    req.add_property(
        pipe.writeback,
        prop(&wb_p, "WRITEBACK_FB_ID")?,
        property::Value::Framebuffer(Some(dst_fb)),
    );
    req.add_raw_property(
        pipe.writeback.into(),
        prop(&wb_p, "WRITEBACK_OUT_FENCE_PTR")?,
        &mut out_fence as *mut i32 as u64,
    );
    let commit = card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET, req);
    let result = commit
        .map_err(|e| format!("atomic commit (plane + writeback): {e}"))
        .and_then(|()| {
            if out_fence < 0 {
                return Err("commit gave no writeback out-fence".into());
            }
            // SAFETY: the kernel wrote a new sync_file fd into out_fence.
            let fence = unsafe { OwnedFd::from_raw_fd(out_fence) };
            let mut fds = [PollFd::new(&fence, PollFlags::IN)];
            // vkms composes on its vblank timer; under TCG on a busy host a
            // frame has been seen to take far longer than 10 s to come.
            let t = Timespec {
                tv_sec: 30,
                tv_nsec: 0,
            };
            let n = poll(&mut fds, Some(&t)).map_err(|e| format!("poll out-fence: {e}"))?;
            if n == 0 {
                return Err("writeback out-fence not signalled within 30 s".into());
            }
            Ok(())
        });

    // Switch the pipeline off again and give the Virtual connector back its CRTC.
    let mut off = drm::control::atomic::AtomicModeReq::new();
    off.add_property(
        pipe.plane,
        prop(&plane_p, "FB_ID")?,
        property::Value::Framebuffer(None),
    );
    off.add_property(
        pipe.plane,
        prop(&plane_p, "CRTC_ID")?,
        property::Value::CRTC(None),
    );
    off.add_property(
        pipe.writeback,
        prop(&wb_p, "CRTC_ID")?,
        property::Value::CRTC(None),
    );
    off.add_property(
        pipe.writeback,
        prop(&wb_p, "WRITEBACK_FB_ID")?,
        property::Value::Framebuffer(None),
    );
    off.add_property(
        pipe.crtc,
        prop(&crtc_p, "ACTIVE")?,
        property::Value::Boolean(false),
    );
    off.add_property(
        pipe.crtc,
        prop(&crtc_p, "MODE_ID")?,
        property::Value::Blob(0),
    );
    // A writeback still pending makes the commit fail: try again for a while, so
    // that the next user of the pipeline does not find it busy.
    for attempt in 1..=10 {
        match card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET, off.clone()) {
            Ok(()) => break,
            Err(e) => {
                println!("INFO vkms: disabling commit failed (attempt {attempt}): {e}");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    if let property::Value::Blob(id) = blob {
        let _ = card.destroy_property_blob(id);
    }
    result
}

fn compare(src: &OwnedFd, dst: &OwnedFd, width: u32, len: usize) -> Result<(), String> {
    let s = Mapping::new(src, len)?;
    let d = Mapping::new(dst, len)?;
    dma_buf::sync(dst.as_fd(), dma_buf::SYNC_START | dma_buf::SYNC_READ)
        .map_err(|e| e.to_string())?;
    let mut bad = 0usize;
    let mut first = None;
    for (i, (a, b)) in s.words().iter().zip(d.words()).enumerate() {
        if a & 0x00ff_ffff != b & 0x00ff_ffff {
            bad += 1;
            first.get_or_insert((i, *a, *b));
        }
    }
    dma_buf::sync(dst.as_fd(), dma_buf::SYNC_END | dma_buf::SYNC_READ)
        .map_err(|e| e.to_string())?;
    match first {
        None => Ok(()),
        Some((i, a, b)) => Err(format!(
            "{bad} of {} pixels differ; first at ({}, {}): scanned out {a:#010x}, written back {b:#010x}",
            len / 4,
            i as u32 % width,
            i as u32 / width
        )),
    }
}
