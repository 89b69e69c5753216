//! `zwp_linux_buffer_params_v1`: a client's planes checked, made into a
//! [`Dmabuf`], admitted by the renderer that will draw it, and handed back
//! as a `wl_buffer` (module [`crate::linux_dmabuf`] says why heapland
//! serves linux-dmabuf itself).
//!
//! Every request is checked completely before anything is built: a zero or
//! too-small stride, an unadvertised format or modifier, `offset + stride`
//! or `stride * height` beyond 32 bits, a plane beyond its fd's size
//! (`fstat`, which for a dma-buf is the buffer's size and, unlike a seek,
//! leaves the shared file offset alone). A bad request gets the exact
//! protocol error, which disconnects only that client.
//!
//! What is "not a dma-buf": on a host without DMA-BUF heaps a client can only
//! pass ordinary files (a memfd). Such fds are refused when the buffer is
//! created ([`check_is_dmabuf`], `fstatfs` magic `DMA_BUF_MAGIC`):
//! `create` gets the `failed` event, `create_immed` the `invalid_wl_buffer`
//! protocol error, as the linux-dmabuf protocol prescribes. Accepting them
//! would work with the pixman renderer (it only mmaps) but would let clients
//! bypass the heaps this compositor is about, and would break on any GPU
//! renderer.

use std::{collections::HashSet, os::fd::OwnedFd, sync::Mutex};

use smithay::{
    backend::{
        allocator::{
            dmabuf::{Dmabuf, DmabufFlags},
            Format, Fourcc, Modifier,
        },
        drm::DrmNode,
    },
    reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_buffer_params_v1::{
        self, Error as ParamsError, ZwpLinuxBufferParamsV1,
    },
    reexports::wayland_server::{
        backend::ClientId,
        protocol::wl_buffer::{self, WlBuffer},
        Client, DataInit, Dispatch, DisplayHandle, Resource, WEnum,
    },
    wayland::buffer::BufferHandler,
};
use tracing::{debug, info};

use crate::state::Heapland;

/// `DMA_BUF_MAGIC` from `<uapi/linux/magic.h>`: `f_type` of every dma-buf fd.
const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// Number of planes linux-dmabuf allows.
const MAX_PLANES: u32 = 4;

/// Largest buffer size we accept: the protocol's offsets are `u32`.
const MAX_BUFFER_BYTES: u64 = u32::MAX as u64;

/// One `zwp_linux_buffer_params_v1`: the planes added so far, until a
/// `create` or `create_immed` takes them.
#[derive(Debug, Default)]
pub struct Params(Mutex<ParamsState>);

#[derive(Debug, Default)]
struct ParamsState {
    planes: Vec<Plane>,
    /// A create request took the planes; every later request is an error.
    used: bool,
    /// `set_sampling_device` (version 6): the device the client allocated
    /// for, recorded on the buffer.
    sampling_device: Option<u64>,
}

/// One added plane.
#[derive(Debug)]
struct Plane {
    fd: OwnedFd,
    idx: u32,
    offset: u32,
    stride: u32,
    modifier: u64,
    /// Size of the fd in bytes (`fstat`), when it has one.
    fd_size: Option<u64>,
}

/// The formats and modifiers linux-dmabuf advertised, which every buffer
/// must be one of.
#[derive(Debug)]
pub struct ParamsValidator {
    /// (fourcc, modifier) pairs advertised in the feedback.
    formats: HashSet<(u32, u64)>,
}

/// A protocol error to post on the params object.
type Rejection = (ParamsError, String);

impl ParamsValidator {
    pub fn new(formats: impl IntoIterator<Item = Format>) -> Self {
        ParamsValidator {
            formats: formats
                .into_iter()
                .map(|f| (f.code as u32, u64::from(f.modifier)))
                .collect(),
        }
    }

    /// Checks a create request's size and format against its planes.
    fn check(
        &self,
        planes: &[Plane],
        width: i32,
        height: i32,
        format: u32,
    ) -> Result<(), Rejection> {
        let Some(first) = planes.first() else {
            return Err((ParamsError::Incomplete, "no planes were added".into()));
        };
        let modifier = first.modifier;
        if let Some(p) = planes.iter().find(|p| p.modifier != modifier) {
            return Err((
                ParamsError::InvalidFormat,
                format!(
                    "plane {} has modifier {:#x}, plane {} has {modifier:#x}",
                    p.idx, p.modifier, first.idx
                ),
            ));
        }
        if !self.formats.contains(&(format, modifier)) {
            return Err((
                ParamsError::InvalidFormat,
                format!(
                    "format {} with modifier {modifier:#x} was not advertised",
                    fourcc_name(format)
                ),
            ));
        }
        if width < 1 || height < 1 {
            return Err((
                ParamsError::InvalidDimensions,
                format!("invalid size {width}x{height}"),
            ));
        }
        // Every advertised format is single-plane (the heap allocator
        // produces linear packed RGB), so exactly plane 0 must be present.
        let Some(plane0) = planes.iter().find(|p| p.idx == 0) else {
            return Err((ParamsError::Incomplete, "plane 0 is missing".into()));
        };
        if planes.len() != 1 {
            return Err((
                ParamsError::Incomplete,
                format!("{} planes for a single-plane format", planes.len()),
            ));
        }
        let bpp = bytes_per_pixel(format).unwrap_or(4);
        let row = u64::from(width.unsigned_abs()) * bpp;
        if u64::from(plane0.stride) < row {
            return Err((
                ParamsError::OutOfBounds,
                format!(
                    "stride {} is smaller than a row of {width} pixels ({row} bytes)",
                    plane0.stride
                ),
            ));
        }
        let end =
            u64::from(plane0.offset) + u64::from(plane0.stride) * u64::from(height.unsigned_abs());
        if end > MAX_BUFFER_BYTES {
            return Err((
                ParamsError::OutOfBounds,
                format!("offset + stride * height = {end} overflows 32 bits"),
            ));
        }
        if let Some(size) = plane0.fd_size.filter(|s| *s > 0) {
            if end > size {
                return Err((
                    ParamsError::OutOfBounds,
                    format!("offset + stride * height = {end} is beyond the buffer's {size} bytes"),
                ));
            }
        }
        Ok(())
    }
}

impl Params {
    /// Records one `add`.
    fn add(
        &self,
        fd: OwnedFd,
        idx: u32,
        offset: u32,
        stride: u32,
        modifier: u64,
    ) -> Result<(), Rejection> {
        let mut params = self.0.lock().map_err(|_| poisoned())?;
        params.ensure_unused()?;
        if idx >= MAX_PLANES {
            return Err((
                ParamsError::PlaneIdx,
                format!("plane index {idx} is not below {MAX_PLANES}"),
            ));
        }
        if params.planes.iter().any(|p| p.idx == idx) {
            return Err((
                ParamsError::PlaneSet,
                format!("plane {idx} was already added"),
            ));
        }
        if offset.checked_add(stride).is_none() {
            return Err((
                ParamsError::OutOfBounds,
                format!("plane {idx}: offset {offset} + stride {stride} overflows"),
            ));
        }
        let fd_size = rustix::fs::fstat(&fd)
            .ok()
            .and_then(|st| u64::try_from(st.st_size).ok());
        params.planes.push(Plane {
            fd,
            idx,
            offset,
            stride,
            modifier,
            fd_size,
        });
        Ok(())
    }

    /// Records `set_sampling_device`.
    fn set_sampling_device(&self, device: &[u8]) -> Result<(), Rejection> {
        let mut params = self.0.lock().map_err(|_| poisoned())?;
        params.ensure_unused()?;
        let dev: [u8; 8] = device.try_into().map_err(|_| {
            (
                ParamsError::InvalidDevTSize,
                format!("a dev_t is 8 bytes, not {}", device.len()),
            )
        })?;
        params.sampling_device = Some(u64::from_ne_bytes(dev));
        Ok(())
    }

    /// Takes the planes for a create request, checks them and builds the
    /// buffer. Any later request on these params is `already_used`.
    fn take(
        &self,
        validator: &ParamsValidator,
        width: i32,
        height: i32,
        format: u32,
        flags: WEnum<zwp_linux_buffer_params_v1::Flags>,
    ) -> Result<Dmabuf, Rejection> {
        let mut params = self.0.lock().map_err(|_| poisoned())?;
        params.ensure_unused()?;
        params.used = true;
        let mut planes = std::mem::take(&mut params.planes);
        validator.check(&planes, width, height, format)?;
        let fourcc = Fourcc::try_from(format).map_err(|_| {
            (
                ParamsError::InvalidFormat,
                format!("unknown format {format:#x}"),
            )
        })?;
        planes.sort_by_key(|p| p.idx);
        let modifier = Modifier::from(planes[0].modifier);
        let flags = DmabufFlags::from_bits_truncate(u32::from(flags));
        let mut builder = Dmabuf::builder((width, height), fourcc, modifier, flags);
        for p in planes {
            builder.add_plane(p.fd, p.idx, p.offset, p.stride);
        }
        if let Some(node) = params
            .sampling_device
            .and_then(|dev| DrmNode::from_dev_id(dev).ok())
        {
            builder.set_node(node);
        }
        builder
            .build()
            .ok_or((ParamsError::Incomplete, "no planes were added".into()))
    }
}

impl ParamsState {
    fn ensure_unused(&self) -> Result<(), Rejection> {
        if self.used {
            Err((
                ParamsError::AlreadyUsed,
                "these params already made a buffer".into(),
            ))
        } else {
            Ok(())
        }
    }
}

fn poisoned() -> Rejection {
    // Only a panic while holding the lock poisons it; the object is unusable.
    (ParamsError::AlreadyUsed, "params object is broken".into())
}

/// Whether the renderer that will draw `dmabuf` takes it: refuses fds that
/// are not dma-bufs and buffers the renderer cannot import (a buffer it
/// cannot map, or whose format, modifier or layout EGL refuses, fails here
/// instead of at render time). An EGL import stays in the renderer's cache
/// for the first frame; a buffer software GL cannot sample is drawn through
/// a copy (module cpu_upload) if it can be copied.
fn admit(state: &mut Heapland, dmabuf: &Dmabuf) -> Result<(), String> {
    check_is_dmabuf(dmabuf).and_then(|()| state.backend.import_dmabuf(dmabuf))
}

impl Dispatch<ZwpLinuxBufferParamsV1, Params> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &ZwpLinuxBufferParamsV1,
        request: zwp_linux_buffer_params_v1::Request,
        data: &Params,
        dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use zwp_linux_buffer_params_v1::Request;
        let verdict = match request {
            Request::Add {
                fd,
                plane_idx,
                offset,
                stride,
                modifier_hi,
                modifier_lo,
            } => {
                let modifier = (u64::from(modifier_hi) << 32) | u64::from(modifier_lo);
                data.add(fd, plane_idx, offset, stride, modifier)
            }
            Request::SetSamplingDevice { device } => data.set_sampling_device(&device),
            Request::Create {
                width,
                height,
                format,
                flags,
            } => data
                .take(&state.params, width, height, format, flags)
                .map(|dmabuf| match admit(state, &dmabuf) {
                    Ok(()) => {
                        match client.create_resource::<WlBuffer, Dmabuf, Self>(dh, 1, dmabuf) {
                            Ok(buffer) => resource.created(&buffer),
                            Err(_) => debug!("client went away before its dmabuf was created"),
                        }
                    }
                    Err(reason) => {
                        info!("refusing linux-dmabuf buffer: {reason}");
                        resource.failed();
                    }
                }),
            Request::CreateImmed {
                buffer_id,
                width,
                height,
                format,
                flags,
            } => data
                .take(&state.params, width, height, format, flags)
                .and_then(|dmabuf| {
                    // The buffer exists for the client from this request on;
                    // a refusal disconnects it, as the protocol says.
                    let admitted = admit(state, &dmabuf);
                    data_init.init(buffer_id, dmabuf);
                    admitted.map_err(|reason| {
                        info!("refusing linux-dmabuf buffer: {reason}");
                        (ParamsError::InvalidWlBuffer, reason)
                    })
                }),
            // `destroy`: the planes' fds close with the object.
            _ => Ok(()),
        };
        if let Err((code, message)) = verdict {
            info!(client = ?client.id(), "bad zwp_linux_buffer_params_v1: {message}");
            resource.post_error(code, message);
        }
    }
}

/// The `wl_buffer`s of linux-dmabuf: their data is the [`Dmabuf`], which
/// the renderers read through Smithay's `get_dmabuf`.
impl Dispatch<WlBuffer, Dmabuf> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _buffer: &WlBuffer,
        _request: wl_buffer::Request,
        _data: &Dmabuf,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        // `destroy` is the only request; `destroyed` below follows it.
    }

    fn destroyed(state: &mut Self, _client: ClientId, buffer: &WlBuffer, _data: &Dmabuf) {
        state.buffer_destroyed(buffer);
    }
}

/// Whether params of `format` are checked completely here: one plane of a
/// packed format whose pixel size is known, linear or with the driver's
/// implicit layout (`DRM_FORMAT_MOD_INVALID`, what clients of a GBM without
/// modifiers send; one plane of at least a row of pixels per stride all the
/// same). linux-dmabuf advertises nothing else.
pub fn is_checked_layout(format: &smithay::backend::allocator::Format) -> bool {
    use smithay::backend::allocator::Modifier;
    matches!(format.modifier, Modifier::Linear | Modifier::Invalid)
        && bytes_per_pixel(format.code as u32).is_some()
}

/// Bytes per pixel of the packed formats the compositor advertises.
fn bytes_per_pixel(fourcc: u32) -> Option<u64> {
    use smithay::backend::allocator::Fourcc;
    match Fourcc::try_from(fourcc).ok()? {
        Fourcc::Argb8888 | Fourcc::Xrgb8888 | Fourcc::Abgr8888 | Fourcc::Xbgr8888 => Some(4),
        Fourcc::Rgb565 => Some(2),
        _ => None,
    }
}

fn fourcc_name(fourcc: u32) -> String {
    let bytes = fourcc.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        format!("{fourcc:#x}")
    }
}

/// Refuses buffers whose planes are not dma-buf fds (see the module docs).
pub fn check_is_dmabuf(dmabuf: &Dmabuf) -> Result<(), String> {
    for (i, fd) in dmabuf.handles().enumerate() {
        let st = rustix::fs::fstatfs(fd).map_err(|e| format!("plane {i}: fstatfs failed: {e}"))?;
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as u64;
        if magic != DMA_BUF_MAGIC {
            return Err(format!(
                "plane {i}: fd is not a dma-buf (filesystem magic {magic:#x})"
            ));
        }
    }
    Ok(())
}
