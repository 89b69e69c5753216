//! Copying a captured picture into a client's wl_shm buffer: the one
//! layout both capture protocols offer (XRGB8888, four bytes a pixel, rows
//! of exactly the picture's width).

use smithay::{
    reexports::wayland_server::protocol::{wl_buffer::WlBuffer, wl_shm},
    utils::{Physical, Size},
    wayland::shm::{with_buffer_contents_mut, BufferData},
};

use crate::capture::Pixels;

/// The pixel layout pictures are offered in.
pub const FORMAT: wl_shm::Format = wl_shm::Format::Xrgb8888;

/// Whether `buffer` is the wl_shm layout offered for a picture of `size`.
pub fn check_buffer(buffer: &WlBuffer, size: Size<i32, Physical>) -> Result<(), String> {
    let (w, h) = (size.w, size.h);
    let layout = with_buffer_contents_mut(buffer, |_, len, data| (len, data))
        .map_err(|_| "the buffer is not a wl_shm buffer (only wl_shm is offered)".to_owned())?;
    let (len, data): (usize, BufferData) = layout;
    if data.format != FORMAT || data.width != w || data.height != h || data.stride != w * 4 {
        return Err(format!(
            "the buffer is {}x{} {:?} with stride {}, not the offered {w}x{h} {FORMAT:?} with stride {}",
            data.width,
            data.height,
            data.format,
            data.stride,
            w * 4
        ));
    }
    let end = data.offset as usize + data.stride as usize * data.height as usize;
    if end > len {
        return Err(format!(
            "the buffer ends past its pool ({end} > {len} bytes)"
        ));
    }
    Ok(())
}

/// Copies `pixels` into the wl_shm `buffer`, whose layout `check_buffer`
/// accepted.
pub fn write_into(buffer: &WlBuffer, pixels: &Pixels) -> Result<(), String> {
    with_buffer_contents_mut(buffer, |ptr, len, data| {
        let row = pixels.width as usize * 4;
        let (offset, stride) = (data.offset as usize, data.stride as usize);
        if data.width as u32 != pixels.width
            || data.height as u32 != pixels.height
            || stride < row
            || offset + stride * pixels.height as usize > len
        {
            return Err("the buffer no longer has the offered layout".to_owned());
        }
        for (y, src) in pixels.data.chunks_exact(row).enumerate() {
            // SAFETY: the destination row lies inside the pool's mapping
            // (checked above), which stays mapped while this closure runs;
            // the source is our own vector. Raw copies, no references into
            // memory the client may change meanwhile.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), ptr.add(offset + y * stride), row);
            }
        }
        Ok(())
    })
    .map_err(|e| format!("cannot write the buffer: {e}"))?
}
