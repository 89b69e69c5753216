//! Validation of `zwp_linux_buffer_params_v1` before Smithay sees it.
//!
//! Smithay 0.7 checks plane indices, duplicate planes and the buffer size, but
//! not a zero or too-small stride, not whether the modifier was advertised,
//! and it adds `offset + stride` in `u32` (which overflows on hostile input).
//! So this module sits in front of Smithay's `Dispatch` for the params object:
//! it records each `add` (with the fd's size from `fstat`, which for a
//! dma-buf is the buffer's size and has no side effect on the shared file
//! offset), checks `create`/`create_immed` completely, answers a bad request
//! with the exact protocol error (disconnecting only that client) and forwards
//! good requests unchanged.
//!
//! What is "not a dma-buf": on a host without DMA-BUF heaps a client can only
//! pass ordinary files (a memfd). Such fds are refused when the buffer is
//! created ([`check_is_dmabuf`], `fstatfs` magic `DMA_BUF_MAGIC`):
//! `create` gets the `failed` event, `create_immed` the `invalid_wl_buffer`
//! protocol error, as the linux-dmabuf protocol prescribes. Accepting them
//! would work with the pixman renderer (it only mmaps) but would let clients
//! bypass the heaps this compositor is about, and would break on any GPU
//! renderer.

use std::collections::{HashMap, HashSet};

use smithay::{
    backend::allocator::{dmabuf::Dmabuf, Format},
    reexports::{
        wayland_protocols::wp::linux_dmabuf::zv1::server::{
            zwp_linux_buffer_params_v1::{self, Error as ParamsError, ZwpLinuxBufferParamsV1},
            zwp_linux_dmabuf_feedback_v1::ZwpLinuxDmabufFeedbackV1,
            zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
        },
        wayland_server::{
            backend::{ClientId, ObjectId},
            protocol::wl_buffer::WlBuffer,
            Client, DataInit, Dispatch, DisplayHandle, Resource,
        },
    },
    wayland::dmabuf::{DmabufFeedbackData, DmabufGlobalData, DmabufParamsData, DmabufState},
};

use crate::state::Heapland;

/// `DMA_BUF_MAGIC` from `<uapi/linux/magic.h>`: `f_type` of every dma-buf fd.
const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// Number of planes linux-dmabuf allows.
const MAX_PLANES: u32 = 4;

/// Largest buffer size we accept: the protocol's offsets are `u32`.
const MAX_BUFFER_BYTES: u64 = u32::MAX as u64;

/// One recorded `add`.
#[derive(Debug, Clone, Copy)]
struct PlaneRecord {
    idx: u32,
    offset: u32,
    stride: u32,
    modifier: u64,
    /// Size of the fd in bytes (`fstat`), when it has one.
    fd_size: Option<u64>,
}

/// Checks linux-dmabuf params requests against the advertised formats.
#[derive(Debug)]
pub struct ParamsValidator {
    /// (fourcc, modifier) pairs advertised in the feedback.
    formats: HashSet<(u32, u64)>,
    /// Per live params object: planes added so far, or `Used` once a
    /// create went through (further requests then reach Smithay, which
    /// posts `already_used`).
    pending: HashMap<ObjectId, Slot>,
}

#[derive(Debug)]
enum Slot {
    Open(Vec<PlaneRecord>),
    Used,
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
            pending: HashMap::new(),
        }
    }

    fn on_add(
        &mut self,
        params: &ObjectId,
        fd: std::os::fd::BorrowedFd<'_>,
        idx: u32,
        offset: u32,
        stride: u32,
        modifier: u64,
    ) -> Result<(), Rejection> {
        let planes = match self
            .pending
            .entry(params.clone())
            .or_insert_with(|| Slot::Open(Vec::new()))
        {
            Slot::Open(planes) => planes,
            Slot::Used => return Ok(()),
        };
        // Index and duplicate errors are Smithay's to post, with the same codes.
        if idx >= MAX_PLANES || planes.iter().any(|p| p.idx == idx) {
            return Ok(());
        }
        if offset.checked_add(stride).is_none() {
            return Err((
                ParamsError::OutOfBounds,
                format!("plane {idx}: offset {offset} + stride {stride} overflows"),
            ));
        }
        let fd_size = rustix::fs::fstat(fd)
            .ok()
            .and_then(|st| u64::try_from(st.st_size).ok());
        planes.push(PlaneRecord {
            idx,
            offset,
            stride,
            modifier,
            fd_size,
        });
        Ok(())
    }

    fn on_create(
        &mut self,
        params: &ObjectId,
        width: i32,
        height: i32,
        format: u32,
    ) -> Result<(), Rejection> {
        let planes = match self.pending.insert(params.clone(), Slot::Used) {
            Some(Slot::Open(planes)) => planes,
            Some(Slot::Used) => return Ok(()),
            None => Vec::new(),
        };
        if planes.is_empty() {
            return Err((ParamsError::Incomplete, "no planes were added".into()));
        }
        let modifier = planes[0].modifier;
        if let Some(p) = planes.iter().find(|p| p.modifier != modifier) {
            return Err((
                ParamsError::InvalidFormat,
                format!(
                    "plane {} has modifier {:#x}, plane 0 has {modifier:#x}",
                    p.idx, p.modifier
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

    fn forget(&mut self, params: &ObjectId) {
        self.pending.remove(params);
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

impl Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData> for Heapland {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &ZwpLinuxBufferParamsV1,
        request: zwp_linux_buffer_params_v1::Request,
        data: &DmabufParamsData,
        dhandle: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use zwp_linux_buffer_params_v1::Request;
        let id = resource.id();
        let verdict = match &request {
            Request::Add {
                fd,
                plane_idx,
                offset,
                stride,
                modifier_hi,
                modifier_lo,
            } => {
                use std::os::fd::AsFd;
                let modifier = (u64::from(*modifier_hi) << 32) | u64::from(*modifier_lo);
                state
                    .params
                    .on_add(&id, fd.as_fd(), *plane_idx, *offset, *stride, modifier)
            }
            Request::Create {
                width,
                height,
                format,
                ..
            }
            | Request::CreateImmed {
                width,
                height,
                format,
                ..
            } => state.params.on_create(&id, *width, *height, *format),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {
                <DmabufState as Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData, Self>>::request(
                    state, client, resource, request, data, dhandle, data_init,
                )
            }
            Err((code, message)) => {
                tracing::info!(client = ?client.id(), "bad zwp_linux_buffer_params_v1: {message}");
                resource.post_error(code, message);
            }
        }
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &ZwpLinuxBufferParamsV1,
        data: &DmabufParamsData,
    ) {
        state.params.forget(&resource.id());
        <DmabufState as Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData, Self>>::destroyed(
            state, client, resource, data,
        )
    }
}

// The rest of linux-dmabuf is Smithay's, delegated as `delegate_dmabuf!`
// would, minus the params object handled above and the global's requests
// (crate::feedback; the feedback objects are crate::linux_feedback's, so
// Smithay's feedback data type below is needed by its trait bounds only).
smithay::reexports::wayland_server::delegate_global_dispatch!(Heapland: [ZwpLinuxDmabufV1: DmabufGlobalData] => DmabufState);
smithay::reexports::wayland_server::delegate_dispatch!(Heapland: [WlBuffer: Dmabuf] => DmabufState);
smithay::reexports::wayland_server::delegate_dispatch!(Heapland: [ZwpLinuxDmabufFeedbackV1: DmabufFeedbackData] => DmabufState);
