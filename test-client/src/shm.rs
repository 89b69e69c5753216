//! Solid-colour `wl_shm` buffers.

use std::{fs::File, io::Write, os::fd::AsFd};

use wayland_client::{
    protocol::{
        wl_buffer::WlBuffer,
        wl_shm::{self, WlShm},
        wl_shm_pool::WlShmPool,
    },
    Dispatch, QueueHandle,
};

/// XRGB8888 buffers of `w`x`h` (rows of `w * 4` bytes), one per colour of
/// `colours` (`0x00RRGGBB`), back to back in one memfd, each with user
/// data `data`; and the file, which the caller keeps for as long as the
/// buffers are used (and may read what a compositor wrote into them, with
/// positioned reads: its offset is at its end).
pub fn solid_buffers<S, U>(
    shm: &WlShm,
    qh: &QueueHandle<S>,
    (w, h): (u32, u32),
    colours: &[u32],
    data: U,
) -> Result<(Vec<WlBuffer>, File), String>
where
    S: Dispatch<WlShmPool, ()> + Dispatch<WlBuffer, U> + 'static,
    U: Clone + Send + Sync + 'static,
{
    if w == 0 || h == 0 || colours.is_empty() {
        return Err(format!("no buffer of {w}x{h} in {} colours", colours.len()));
    }
    let stride = w.checked_mul(4).ok_or("buffer too wide")?;
    let len = u64::from(stride) * u64::from(h);
    let total = len * colours.len() as u64;
    let pool_size = i32::try_from(total).map_err(|_| format!("{total} bytes of buffers"))?;
    let (wi, hi, stride_i) = (
        i32::try_from(w).map_err(|_| "width")?,
        i32::try_from(h).map_err(|_| "height")?,
        i32::try_from(stride).map_err(|_| "stride")?,
    );
    let fd = rustix::fs::memfd_create("heapland-test-shm", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = File::from(fd);
    for colour in colours {
        let frame: Vec<u8> = std::iter::repeat_n(colour.to_le_bytes(), (w * h) as usize)
            .flatten()
            .collect();
        file.write_all(&frame)
            .map_err(|e| format!("fill the shm pool: {e}"))?;
    }
    let pool = shm.create_pool(file.as_fd(), pool_size, qh, ());
    let buffers = (0..colours.len())
        .map(|i| {
            pool.create_buffer(
                (len * i as u64) as i32,
                wi,
                hi,
                stride_i,
                wl_shm::Format::Xrgb8888,
                qh,
                data.clone(),
            )
        })
        .collect();
    pool.destroy();
    Ok((buffers, file))
}

/// One buffer of [`solid_buffers`].
pub fn solid_buffer<S, U>(
    shm: &WlShm,
    qh: &QueueHandle<S>,
    size: (u32, u32),
    colour: u32,
    data: U,
) -> Result<(WlBuffer, File), String>
where
    S: Dispatch<WlShmPool, ()> + Dispatch<WlBuffer, U> + 'static,
    U: Clone + Send + Sync + 'static,
{
    let (mut buffers, file) = solid_buffers(shm, qh, size, &[colour], data)?;
    let buffer = buffers.pop().ok_or("no buffer")?;
    Ok((buffer, file))
}
