//! vivid capture into heap buffers with V4L2_MEMORY_DMABUF, in both of vivid's memory modes.

use std::os::fd::{AsFd, OwnedFd};

use super::dma_buf::{self, Mapping};
use super::dma_heap::{self, Heap, HeapInfo};
use super::v4l2::{self, MEMORY_DMABUF};
use super::Test;

/// Phase `vivid-vmalloc`: vivid loaded with its default vmalloc memops.
pub fn vmalloc_tests() -> Vec<Test> {
    vec![Test {
        name: "vivid::vmalloc_dmabuf_capture_640x480",
        run: vmalloc_dmabuf_capture_640x480,
    }]
}

/// Phase `vivid-contig`: vivid reloaded with allocators=1 (vb2 dma-contig).
pub fn contig_tests() -> Vec<Test> {
    vec![
        Test {
            name: "vivid::contig_dmabuf_capture_640x480",
            run: contig_dmabuf_capture_640x480,
        },
        Test {
            name: "vivid::contig_dmabuf_capture_1920x1080",
            run: contig_dmabuf_capture_1920x1080,
        },
        Test {
            name: "vivid::contig_capture_into_every_heap_vivid_reaches",
            run: contig_capture_into_every_heap_vivid_reaches,
        },
    ]
}

/// vivid's `allocators` parameter for instance 0 (0 vmalloc, 1 dma-contig).
fn allocator_mode() -> Result<u32, String> {
    let s = std::fs::read_to_string("/sys/module/vivid/parameters/allocators")
        .map_err(|e| format!("vivid allocators parameter: {e}"))?;
    s.trim()
        .split(',')
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or(format!("vivid allocators parameter {s:?}"))
}

fn vivid_heap(contiguous: bool) -> Result<HeapInfo, String> {
    let heaps = dma_heap::heaps_of_device("vivid.0")?;
    heaps
        .iter()
        .find(|h| h.contiguous == contiguous)
        .or(if contiguous { None } else { heaps.first() })
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = heaps.iter().map(|h| h.name.as_str()).collect();
            format!(
                "vivid.0 has no {} heap (has {})",
                if contiguous { "contiguous" } else { "" },
                names.join(" ")
            )
        })
}

/// Captures one frame of `width`x`height` into `nbufs` buffers from `heap` and returns
/// the frame's bytes.
fn capture(
    heap: &Heap,
    width: u32,
    height: u32,
    fourcc: u32,
    nbufs: u32,
) -> Result<(Vec<u8>, usize), String> {
    let (node, video) = v4l2::find_capture("vivid")?;
    let pix = video.set_format(width, height, fourcc)?;
    if (pix.width, pix.height, pix.pixelformat) != (width, height, fourcc) {
        return Err(format!(
            "{}: asked {width}x{height} {fourcc:#x}, driver chose {}x{} {:#x}",
            node.display(),
            pix.width,
            pix.height,
            pix.pixelformat
        ));
    }
    let size = (pix.sizeimage as u64).div_ceil(4096) * 4096;
    let granted = video.reqbufs(nbufs, MEMORY_DMABUF)?;
    if granted < 2 {
        return Err(format!("REQBUFS granted {granted} DMABUF buffers"));
    }
    let bufs: Vec<OwnedFd> = (0..granted)
        .map(|_| heap.alloc(size))
        .collect::<Result<_, _>>()?;
    let result = (|| {
        for (i, b) in bufs.iter().enumerate() {
            video.qbuf_dmabuf(i as u32, b.as_fd(), size as u32)?;
        }
        video.streamon()?;
        // Skip the first frame (it may be produced before the pattern settles).
        let mut frame = None;
        for n in 0..2 {
            let b = video.dqbuf(MEMORY_DMABUF, 20_000)?;
            if b.flags & 0x40 != 0 {
                return Err(format!("frame {n}: V4L2_BUF_FLAG_ERROR"));
            }
            if b.bytesused < pix.sizeimage {
                return Err(format!(
                    "frame {n}: bytesused {} < sizeimage {}",
                    b.bytesused, pix.sizeimage
                ));
            }
            let fd = bufs[b.index as usize].as_fd();
            let m = Mapping::new(fd, size as usize)?;
            dma_buf::sync(fd, dma_buf::SYNC_START | dma_buf::SYNC_READ)
                .map_err(|e| format!("SYNC: {e}"))?;
            frame = Some(m.bytes()[..pix.sizeimage as usize].to_vec());
            dma_buf::sync(fd, dma_buf::SYNC_END | dma_buf::SYNC_READ)
                .map_err(|e| format!("SYNC: {e}"))?;
            video.qbuf_dmabuf(b.index, fd, size as u32)?;
        }
        frame
            .map(|f| (f, pix.bytesperline as usize))
            .ok_or_else(|| "no frame".to_string())
    })();
    let _ = video.streamoff();
    let _ = video.reqbufs(0, MEMORY_DMABUF);
    result
}

/// A frame of vivid's colour-bar test pattern: not all zero, not one repeated value, and
/// its middle row differs between the left and right third (the bars are vertical).
fn check_nontrivial(frame: &[u8], bytesperline: usize) -> Result<(), String> {
    if frame.iter().all(|&b| b == 0) {
        return Err(format!(
            "captured frame of {} bytes is all zero",
            frame.len()
        ));
    }
    let mut seen = [false; 256];
    frame.iter().for_each(|&b| seen[b as usize] = true);
    let distinct = seen.iter().filter(|&&s| s).count();
    // 75% colour bars in an RGB format use only 0x00 and 0xbf, so two values is fine.
    if distinct < 2 {
        return Err("captured frame is one repeated byte value".into());
    }
    let rows = frame.len() / bytesperline;
    let mid = &frame[rows / 2 * bytesperline..(rows / 2 + 1) * bytesperline];
    let third = bytesperline / 3 / 4 * 4;
    if mid[..third] == mid[bytesperline - third..] {
        return Err("the middle row's left and right thirds are identical (no colour bars)".into());
    }
    Ok(())
}

fn vmalloc_dmabuf_capture_640x480() -> Result<(), String> {
    let mode = allocator_mode()?;
    if mode != 0 {
        return Err(format!(
            "vivid allocators={mode}, this phase needs the default vmalloc (0)"
        ));
    }
    let info = vivid_heap(false)?;
    let heap = Heap::open(&info.name)?;
    let (frame, bpl) = capture(&heap, 640, 480, v4l2::PIX_FMT_YUYV, 4)?;
    check_nontrivial(&frame, bpl)?;
    println!(
        "INFO vivid vmalloc: captured 640x480 YUYV into {}",
        info.name
    );
    Ok(())
}

fn contig_capture(width: u32, height: u32, fourcc: u32, nbufs: u32) -> Result<(), String> {
    let mode = allocator_mode()?;
    if mode != 1 {
        return Err(format!("vivid allocators={mode}, expected 1 (dma-contig)"));
    }
    let info = vivid_heap(true)?;
    let heap = Heap::open(&info.name)?;
    let (frame, bpl) = capture(&heap, width, height, fourcc, nbufs)?;
    check_nontrivial(&frame, bpl)?;
    println!(
        "INFO vivid dma-contig: captured {width}x{height} ({} bytes/frame) into {}",
        frame.len(),
        info.name
    );
    Ok(())
}

fn contig_dmabuf_capture_640x480() -> Result<(), String> {
    contig_capture(640, 480, v4l2::PIX_FMT_YUYV, 4)
}

fn contig_dmabuf_capture_1920x1080() -> Result<(), String> {
    // XBGR32: 8,294,400 bytes per frame, more than the buddy allocator's 4 MiB.
    contig_capture(1920, 1080, v4l2::PIX_FMT_XBGR32, 3)
}

/// vb2 dma-contig refuses a dma-buf whose DMA addresses are not one contiguous range
/// ("contiguous chunk is too small"), and without an IOMMU that means physical contiguity.
/// So a 1080p capture into buffers of *every* heap that claims contiguous=1 (vkms's and
/// vgem's too, whatever device they serve) checks that claim with a real consumer.
fn contig_capture_into_every_heap_vivid_reaches() -> Result<(), String> {
    let mode = allocator_mode()?;
    if mode != 1 {
        return Err(format!("vivid allocators={mode}, expected 1 (dma-contig)"));
    }
    // The oracle is vivid's own DMA: vb2-dma-contig maps an imported buffer for vivid.0
    // (32-bit, no IOMMU) and takes it only as one contiguous DMA range; memory beyond
    // its reach would have to be bounced, and swiotlb bounces nothing this large. Every
    // contiguous heap vivid.0 links to must be taken; the others (a 64-bit device's,
    // with RAM above 4 GiB in the guest) are tried too, for the record.
    let linked: Vec<String> = dma_heap::links(&dma_heap::device_dir("vivid.0")?)?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let (contig, beyond): (Vec<HeapInfo>, Vec<HeapInfo>) = dma_heap::all_infos()?
        .into_iter()
        .filter(|h| h.contiguous)
        .partition(|h| linked.contains(&h.name));
    if contig.is_empty() {
        return Err("no contiguous device heap".into());
    }
    let mut errs = Vec::new();
    for info in &contig {
        let r = Heap::open(&info.name).and_then(|heap| {
            let (frame, bpl) = capture(&heap, 1920, 1080, v4l2::PIX_FMT_XBGR32, 3)?;
            check_nontrivial(&frame, bpl)
        });
        match r {
            Ok(()) => println!(
                "INFO vivid dma-contig: 1080p capture into {} accepted",
                info.name
            ),
            Err(e) => errs.push(format!("[{}] {e}", info.name)),
        }
    }
    for info in &beyond {
        let r = Heap::open(&info.name)
            .and_then(|heap| capture(&heap, 1920, 1080, v4l2::PIX_FMT_XBGR32, 3).map(drop));
        println!(
            "INFO vivid dma-contig: {} (below 2^{}, not in vivid.0's links): {}",
            info.name,
            info.dma_mask_bits,
            match r {
                Ok(()) => "accepted (placed low by chance)".to_owned(),
                Err(e) => format!("refused: {e}"),
            }
        );
    }
    // Control: the kernel's system heap hands out scattered pages, which dma-contig refuses.
    match Heap::open("system")
        .and_then(|heap| capture(&heap, 1920, 1080, v4l2::PIX_FMT_XBGR32, 3).map(drop))
    {
        Ok(()) => println!(
            "INFO vivid dma-contig: system heap buffers accepted too (contiguous by chance)"
        ),
        Err(e) => println!("INFO vivid dma-contig: system heap buffers refused as expected: {e}"),
    }
    super::all_ok(errs)
}
