//! `zwlr_screencopy_manager_v1` (version 3): screenshots and screen
//! recording for grim, wf-recorder and the xdg-desktop-portal-wlr.
//!
//! A frame is offered as one wl_shm buffer layout, XRGB8888 with rows of
//! four bytes a pixel, of the captured region's size in pixels. `copy`
//! renders the output into that buffer at the end of the current turn of
//! the event loop ([`crate::capture`]). `copy_with_damage` waits until the
//! output changed since the client's last such copy of it (a recorder
//! asks again after every frame, and an idle screen must not make it
//! wake), and then reports the whole region as damaged.
//!
//! A capture shows every client's pixels, so sandboxed clients do not see
//! the global.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
};

use smithay::{
    output::Output,
    reexports::{
        wayland_protocols_wlr::screencopy::v1::server::{
            zwlr_screencopy_frame_v1::{self, Flags, ZwlrScreencopyFrameV1},
            zwlr_screencopy_manager_v1::{self, ZwlrScreencopyManagerV1},
        },
        wayland_server::{
            backend::ClientId,
            protocol::{wl_buffer::WlBuffer, wl_output::WlOutput},
            Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
        },
    },
    utils::{Logical, Physical, Rectangle},
};
use tracing::{debug, warn};

use crate::{
    capture::{output_state, OutputState},
    security_context::is_sandboxed,
    state::Heapland,
};

/// The version of the global: 3 adds `buffer_done` and `linux_dmabuf`
/// (this compositor offers wl_shm only, which version 3 allows).
const VERSION: u32 = 3;

use crate::shm_copy::FORMAT;

/// Copies waiting for the end of the turn or for damage, and which client
/// has seen which output's latest picture.
#[derive(Debug, Default)]
pub struct Screencopy {
    pending: Vec<PendingCopy>,
    /// `(client, output name)` pairs whose last `copy_with_damage` is still
    /// what the output shows. A pair not in here is due at once.
    unchanged: HashSet<(ClientId, String)>,
}

impl Screencopy {
    pub fn new(dh: &DisplayHandle) -> Self {
        dh.create_global::<Heapland, ZwlrScreencopyManagerV1, ()>(VERSION, ());
        Screencopy::default()
    }

    /// `output` drew a changed picture: every client's next
    /// `copy_with_damage` of it is due.
    pub fn output_damaged(&mut self, output: &Output) {
        let name = output.name();
        self.unchanged.retain(|(_, o)| *o != name);
    }
}

#[derive(Debug)]
struct PendingCopy {
    frame: ZwlrScreencopyFrameV1,
    buffer: WlBuffer,
    with_damage: bool,
}

/// What a frame object captures.
#[derive(Debug)]
pub struct FrameData {
    /// `None` when the frame failed at creation (unknown output, empty
    /// region).
    target: Option<Target>,
    /// A frame copies once.
    used: AtomicBool,
}

#[derive(Debug, Clone)]
struct Target {
    output: Output,
    region: Rectangle<i32, Physical>,
    cursor: bool,
    /// The output's state the region was computed for: a frame whose
    /// output changed mode, scale or transform since fails.
    state: OutputState,
}

impl GlobalDispatch<ZwlrScreencopyManagerV1, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwlrScreencopyManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

impl Dispatch<ZwlrScreencopyManagerV1, ()> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _manager: &ZwlrScreencopyManagerV1,
        request: zwlr_screencopy_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        let (frame, cursor, output, region) = match request {
            zwlr_screencopy_manager_v1::Request::CaptureOutput {
                frame,
                overlay_cursor,
                output,
            } => (frame, overlay_cursor != 0, output, None),
            zwlr_screencopy_manager_v1::Request::CaptureOutputRegion {
                frame,
                overlay_cursor,
                output,
                x,
                y,
                width,
                height,
            } => (
                frame,
                overlay_cursor != 0,
                output,
                Some(Rectangle::<i32, Logical>::new(
                    (x, y).into(),
                    (width, height).into(),
                )),
            ),
            zwlr_screencopy_manager_v1::Request::Destroy => return,
            _ => return,
        };
        let target = target(&output, region, cursor);
        let frame = data_init.init(
            frame,
            FrameData {
                target: target.clone(),
                used: AtomicBool::new(false),
            },
        );
        match target {
            Some(t) => {
                let (w, h) = (t.region.size.w as u32, t.region.size.h as u32);
                frame.buffer(FORMAT, w, h, w * 4);
                if frame.version() >= 3 {
                    frame.buffer_done();
                }
            }
            None => frame.failed(),
        }
    }
}

/// What `output` and the logical `region` of it (all of it when `None`)
/// are in pixels; `None` for an output that is gone or a region that
/// covers none of it.
fn target(
    output: &WlOutput,
    region: Option<Rectangle<i32, Logical>>,
    cursor: bool,
) -> Option<Target> {
    let output = Output::from_resource(output)?;
    let size = crate::capture::output_size(&output)?;
    let whole = Rectangle::<i32, Physical>::from_size(size);
    let region = match region {
        None => whole,
        Some(r) if r.size.w <= 0 || r.size.h <= 0 => return None,
        Some(r) => {
            // The region is in the output's upright (logical) orientation;
            // the picture in the mode's, which Smithay draws with the
            // inverse of the output's transform.
            let scale = output.current_scale().fractional_scale();
            let transform = output.current_transform();
            let upright = transform.transform_size(size);
            let r = r.to_physical_precise_round(scale);
            transform
                .invert()
                .transform_rect_in(r, &upright)
                .intersection(whole)?
        }
    };
    (!region.is_empty()).then(|| Target {
        state: output_state(&output),
        output,
        region,
        cursor,
    })
}

impl Dispatch<ZwlrScreencopyFrameV1, FrameData> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        frame: &ZwlrScreencopyFrameV1,
        request: zwlr_screencopy_frame_v1::Request,
        data: &FrameData,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        let (buffer, with_damage) = match request {
            zwlr_screencopy_frame_v1::Request::Copy { buffer } => (buffer, false),
            zwlr_screencopy_frame_v1::Request::CopyWithDamage { buffer } => (buffer, true),
            zwlr_screencopy_frame_v1::Request::Destroy => return,
            _ => return,
        };
        if data.used.swap(true, Ordering::Relaxed) {
            frame.post_error(
                zwlr_screencopy_frame_v1::Error::AlreadyUsed,
                "this frame was already copied",
            );
            return;
        }
        let Some(target) = &data.target else {
            // `failed` was sent; a copy after it changes nothing.
            return;
        };
        if let Err(reason) = crate::shm_copy::check_buffer(&buffer, target.region.size) {
            frame.post_error(zwlr_screencopy_frame_v1::Error::InvalidBuffer, reason);
            return;
        }
        state.screencopy.pending.push(PendingCopy {
            frame: frame.clone(),
            buffer,
            with_damage,
        });
    }
}

impl Heapland {
    /// Carries out the copies that are due: every `copy`, and each
    /// `copy_with_damage` whose output changed since its client's last one.
    /// Called at the end of each turn of the event loop, after drawing.
    pub fn finish_screencopies(&mut self) {
        if self.screencopy.pending.is_empty() {
            return;
        }
        let (due, waiting): (Vec<PendingCopy>, Vec<PendingCopy>) =
            std::mem::take(&mut self.screencopy.pending)
                .into_iter()
                .filter(|c| c.frame.is_alive())
                .partition(|c| {
                    // A frame that cannot be copied fails now rather than
                    // wait for a change that will not come.
                    let refused = c
                        .frame
                        .data::<FrameData>()
                        .and_then(|d| d.target.as_ref())
                        .is_none_or(|t| self.refusal(t).is_some());
                    refused
                        || !c.with_damage
                        || key(c).is_none_or(|k| !self.screencopy.unchanged.contains(&k))
                });
        self.screencopy.pending = waiting;
        for copy in due {
            let Some(target) = copy
                .frame
                .data::<FrameData>()
                .and_then(|d| d.target.clone())
            else {
                continue;
            };
            let why_not = self.refusal(&target);
            let (backend, scene) = self.split_for_frame();
            let written = match why_not {
                None => backend
                    .capture(&target.output, &scene, target.cursor, target.region)
                    .map_err(|e| e.to_string())
                    .and_then(|pixels| crate::shm_copy::write_into(&copy.buffer, &pixels)),
                Some(why) => Err(why.to_owned()),
            };
            match written {
                Ok(()) => {
                    copy.frame.flags(Flags::empty());
                    if copy.with_damage {
                        let r = target.region;
                        copy.frame.damage(0, 0, r.size.w as u32, r.size.h as u32);
                        if let Some(k) = key(&copy) {
                            self.screencopy.unchanged.insert(k);
                        }
                    }
                    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                    let secs = now.tv_sec as u64;
                    copy.frame
                        .ready((secs >> 32) as u32, secs as u32, now.tv_nsec as u32);
                    debug!(output = %target.output.name(), "screencopy: frame copied");
                }
                Err(err) => {
                    warn!(output = %target.output.name(), "screencopy failed: {err}");
                    copy.frame.failed();
                }
            }
        }
        // Clients that are gone.
        let dh = self.display_handle.clone();
        self.screencopy
            .unchanged
            .retain(|(client, _)| dh.backend_handle().get_client_data(client.clone()).is_ok());
    }
}

impl Heapland {
    /// Why `target` cannot be copied now, if it cannot.
    fn refusal(&self, target: &Target) -> Option<&'static str> {
        self.capture_refusal(&target.output, &target.state)
    }
}

/// The `(client, output)` pair `copy` belongs to, while both exist.
fn key(copy: &PendingCopy) -> Option<(ClientId, String)> {
    let client = copy.frame.client()?.id();
    let output = copy
        .frame
        .data::<FrameData>()?
        .target
        .as_ref()?
        .output
        .name();
    Some((client, output))
}
