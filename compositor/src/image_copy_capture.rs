//! `ext_image_copy_capture_manager_v1` with outputs as sources
//! (`ext_output_image_capture_source_manager_v1`): the standard screen
//! capture protocol that followed wlr-screencopy.
//!
//! A session offers one wl_shm layout (XRGB8888, the output's size in
//! pixels) and says again when the output's mode, scale or transform
//! changes; a frame captured with a buffer of another layout fails with
//! `buffer_constraints`. A session's first frame is copied at the end of
//! the current turn of the event loop; every later one when the output
//! drew a changed picture since the one before, so an idle screen does not
//! wake a recorder. The picture is rendered again by the output's own
//! renderer ([`crate::capture`]), with the cursor if the session asked for
//! `paint_cursors`. Cursor sessions have no cursor images to give: their
//! capture sessions are stopped at once. Windows (foreign toplevels) are
//! not offered as sources.
//!
//! A capture shows every client's pixels, so sandboxed clients do not see
//! the globals.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use smithay::{
    output::Output,
    reexports::{
        wayland_protocols::ext::{
            image_capture_source::v1::server::{
                ext_image_capture_source_v1::{self, ExtImageCaptureSourceV1},
                ext_output_image_capture_source_manager_v1::{
                    self, ExtOutputImageCaptureSourceManagerV1,
                },
            },
            image_copy_capture::v1::server::{
                ext_image_copy_capture_cursor_session_v1::{
                    self, ExtImageCopyCaptureCursorSessionV1,
                },
                ext_image_copy_capture_frame_v1::{
                    self, ExtImageCopyCaptureFrameV1, FailureReason,
                },
                ext_image_copy_capture_manager_v1::{self, ExtImageCopyCaptureManagerV1, Options},
                ext_image_copy_capture_session_v1::{self, ExtImageCopyCaptureSessionV1},
            },
        },
        wayland_server::{
            protocol::wl_buffer::WlBuffer, Client, DataInit, Dispatch, DisplayHandle,
            GlobalDispatch, New, Resource, WEnum,
        },
    },
    utils::{Physical, Rectangle, Size},
};
use tracing::warn;

use crate::{
    capture::output_size,
    security_context::is_sandboxed,
    shm_copy::{check_buffer, write_into, FORMAT},
    state::Heapland,
};

/// Sessions and the frames waiting to be copied.
#[derive(Debug, Default)]
pub struct ImageCopyCapture {
    sessions: Vec<ExtImageCopyCaptureSessionV1>,
    pending: Vec<ExtImageCopyCaptureFrameV1>,
}

impl ImageCopyCapture {
    pub fn new(dh: &DisplayHandle) -> Self {
        dh.create_global::<Heapland, ExtOutputImageCaptureSourceManagerV1, ()>(1, ());
        dh.create_global::<Heapland, ExtImageCopyCaptureManagerV1, ()>(1, ());
        ImageCopyCapture::default()
    }

    /// `output` drew a changed picture: its sessions' next frames are due,
    /// and sessions learn a new layout if its mode, scale or transform
    /// changed.
    pub fn output_damaged(&mut self, output: &Output) {
        self.sessions.retain(Resource::is_alive);
        for session in &self.sessions {
            let Some(data) = session.data::<SessionData>() else {
                continue;
            };
            if data.output.as_ref() != Some(output) || data.stopped.load(Ordering::Relaxed) {
                continue;
            }
            data.changed.store(true, Ordering::Relaxed);
            update_constraints(session, data, output);
        }
    }

    /// `output` is gone: its sessions stop.
    pub fn output_removed(&mut self, output: &Output) {
        self.sessions.retain(|session| {
            let of_output = session
                .data::<SessionData>()
                .is_some_and(|d| d.output.as_ref() == Some(output));
            if of_output {
                stop(session);
            }
            session.is_alive() && !of_output
        });
    }
}

/// What a capture source is: an output, or nothing (it was gone when the
/// source was made).
#[derive(Debug)]
pub struct SourceData {
    output: Option<Output>,
}

/// A session of one output.
#[derive(Debug)]
pub struct SessionData {
    /// `None`: stopped from the start (unknown output, cursor session).
    output: Option<Output>,
    cursor: bool,
    /// The picture size the constraints were last sent for.
    offered: Mutex<Option<Size<i32, Physical>>>,
    /// Whether a frame was copied (the first one does not wait).
    copied_one: AtomicBool,
    /// Whether a frame of this session exists (one at a time).
    has_frame: AtomicBool,
    /// Whether the output changed since the last frame was copied (true
    /// until the first one).
    changed: AtomicBool,
    stopped: AtomicBool,
}

/// A frame: its buffer, once attached, and whether `capture` was sent.
#[derive(Debug)]
pub struct FrameData {
    session: ExtImageCopyCaptureSessionV1,
    buffer: Mutex<Option<WlBuffer>>,
    captured: AtomicBool,
}

/// Sends `session` new constraints if `output`'s picture changed size
/// since they were last sent; whether it did.
fn update_constraints(
    session: &ExtImageCopyCaptureSessionV1,
    data: &SessionData,
    output: &Output,
) -> bool {
    let now = output_size(output);
    let Ok(mut offered) = data.offered.lock() else {
        return false;
    };
    if *offered == now {
        return false;
    }
    *offered = now;
    drop(offered);
    send_constraints(session, output);
    true
}

/// Sends `session` the layout `output` is offered in now.
fn send_constraints(session: &ExtImageCopyCaptureSessionV1, output: &Output) -> bool {
    let Some(size) = output_size(output) else {
        return false;
    };
    session.buffer_size(size.w as u32, size.h as u32);
    session.shm_format(FORMAT);
    session.done();
    true
}

impl GlobalDispatch<ExtOutputImageCaptureSourceManagerV1, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ExtOutputImageCaptureSourceManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

impl Dispatch<ExtOutputImageCaptureSourceManagerV1, ()> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _manager: &ExtOutputImageCaptureSourceManagerV1,
        request: ext_output_image_capture_source_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let ext_output_image_capture_source_manager_v1::Request::CreateSource {
            source,
            output,
        } = request
        {
            data_init.init(
                source,
                SourceData {
                    output: Output::from_resource(&output),
                },
            );
        }
    }
}

impl Dispatch<ExtImageCaptureSourceV1, SourceData> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        _source: &ExtImageCaptureSourceV1,
        _request: ext_image_capture_source_v1::Request,
        _data: &SourceData,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
    }
}

impl GlobalDispatch<ExtImageCopyCaptureManagerV1, ()> for Heapland {
    fn bind(
        _state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ExtImageCopyCaptureManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        data_init.init(resource, ());
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        !is_sandboxed(&client)
    }
}

/// A session that is stopped from the start.
fn stopped_session() -> SessionData {
    SessionData {
        output: None,
        cursor: false,
        offered: Mutex::new(None),
        copied_one: AtomicBool::new(false),
        has_frame: AtomicBool::new(false),
        changed: AtomicBool::new(false),
        stopped: AtomicBool::new(true),
    }
}

impl Dispatch<ExtImageCopyCaptureManagerV1, ()> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        manager: &ExtImageCopyCaptureManagerV1,
        request: ext_image_copy_capture_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        match request {
            ext_image_copy_capture_manager_v1::Request::CreateSession {
                session,
                source,
                options,
            } => {
                let cursor = match options {
                    WEnum::Value(o) => o.contains(Options::PaintCursors),
                    WEnum::Unknown(bits) => {
                        manager.post_error(
                            ext_image_copy_capture_manager_v1::Error::InvalidOption,
                            format!("unknown options {bits:#x}"),
                        );
                        return;
                    }
                };
                let output = source
                    .data::<SourceData>()
                    .and_then(|s| s.output.clone())
                    .filter(|o| state.outputs.contains(o));
                let data = SessionData {
                    offered: Mutex::new(output.as_ref().and_then(output_size)),
                    copied_one: AtomicBool::new(false),
                    output: output.clone(),
                    cursor,
                    has_frame: AtomicBool::new(false),
                    changed: AtomicBool::new(true),
                    stopped: AtomicBool::new(false),
                };
                let session = data_init.init(session, data);
                match output {
                    Some(output) if send_constraints(&session, &output) => {
                        state.image_copy_capture.sessions.push(session);
                    }
                    _ => stop(&session),
                }
            }
            ext_image_copy_capture_manager_v1::Request::CreatePointerCursorSession {
                session,
                ..
            } => {
                data_init.init(session, AtomicBool::new(false));
            }
            _ => {}
        }
    }
}

/// Ends `session` (once): it captures nothing more.
fn stop(session: &ExtImageCopyCaptureSessionV1) {
    let already = session
        .data::<SessionData>()
        .is_some_and(|d| d.stopped.swap(true, Ordering::Relaxed));
    if !already {
        session.stopped();
    }
}

/// Cursor sessions: their one capture session is stopped at once.
impl Dispatch<ExtImageCopyCaptureCursorSessionV1, AtomicBool> for Heapland {
    fn request(
        _state: &mut Self,
        _client: &Client,
        cursor_session: &ExtImageCopyCaptureCursorSessionV1,
        request: ext_image_copy_capture_cursor_session_v1::Request,
        got_session: &AtomicBool,
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let ext_image_copy_capture_cursor_session_v1::Request::GetCaptureSession { session } =
            request
        {
            if got_session.swap(true, Ordering::Relaxed) {
                cursor_session.post_error(
                    ext_image_copy_capture_cursor_session_v1::Error::DuplicateSession,
                    "this cursor session already has a capture session",
                );
                return;
            }
            let session = data_init.init(session, stopped_session());
            session.stopped();
        }
    }
}

impl Dispatch<ExtImageCopyCaptureSessionV1, SessionData> for Heapland {
    /// Its frames still end: pending ones fail as stopped.
    fn destroyed(
        state: &mut Self,
        _client: smithay::reexports::wayland_server::backend::ClientId,
        session: &ExtImageCopyCaptureSessionV1,
        data: &SessionData,
    ) {
        data.stopped.store(true, Ordering::Relaxed);
        state.image_copy_capture.sessions.retain(|s| s != session);
        let (ended, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut state.image_copy_capture.pending)
                .into_iter()
                .partition(|f| f.data::<FrameData>().is_some_and(|d| d.session == *session));
        state.image_copy_capture.pending = waiting;
        for frame in ended.iter().filter(|f| f.is_alive()) {
            frame.failed(FailureReason::Stopped);
        }
    }

    fn request(
        _state: &mut Self,
        _client: &Client,
        session: &ExtImageCopyCaptureSessionV1,
        request: ext_image_copy_capture_session_v1::Request,
        data: &SessionData,
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        if let ext_image_copy_capture_session_v1::Request::CreateFrame { frame } = request {
            if data.has_frame.swap(true, Ordering::Relaxed) {
                session.post_error(
                    ext_image_copy_capture_session_v1::Error::DuplicateFrame,
                    "this session already has a frame",
                );
                return;
            }
            data_init.init(
                frame,
                FrameData {
                    session: session.clone(),
                    buffer: Mutex::new(None),
                    captured: AtomicBool::new(false),
                },
            );
        }
    }
}

impl Dispatch<ExtImageCopyCaptureFrameV1, FrameData> for Heapland {
    fn request(
        state: &mut Self,
        _client: &Client,
        frame: &ExtImageCopyCaptureFrameV1,
        request: ext_image_copy_capture_frame_v1::Request,
        data: &FrameData,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use ext_image_copy_capture_frame_v1::{Error, Request};
        match request {
            Request::AttachBuffer { .. } | Request::DamageBuffer { .. }
                if data.captured.load(Ordering::Relaxed) =>
            {
                frame.post_error(
                    Error::AlreadyCaptured,
                    "the frame's buffer cannot change once it is captured",
                );
            }
            Request::AttachBuffer { buffer } => {
                if let Ok(mut attached) = data.buffer.lock() {
                    *attached = Some(buffer);
                }
            }
            // The whole picture is always written: the damage only has to
            // be valid.
            Request::DamageBuffer {
                x,
                y,
                width,
                height,
            } if x < 0 || y < 0 || width <= 0 || height <= 0 => {
                frame.post_error(
                    Error::InvalidBufferDamage,
                    format!("damage {x},{y} {width}x{height} is not a rectangle in the buffer"),
                );
            }
            Request::Capture => {
                if data.captured.swap(true, Ordering::Relaxed) {
                    frame.post_error(Error::AlreadyCaptured, "this frame was already captured");
                    return;
                }
                let attached = data.buffer.lock().ok().and_then(|b| b.clone());
                if attached.is_none() {
                    frame.post_error(Error::NoBuffer, "capture without an attached buffer");
                    return;
                }
                state.image_copy_capture.pending.push(frame.clone());
            }
            Request::Destroy => {}
            _ => {}
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: smithay::reexports::wayland_server::backend::ClientId,
        frame: &ExtImageCopyCaptureFrameV1,
        data: &FrameData,
    ) {
        if let Some(session) = data.session.data::<SessionData>() {
            session.has_frame.store(false, Ordering::Relaxed);
        }
        state.image_copy_capture.pending.retain(|f| f != frame);
    }
}

impl Heapland {
    /// Copies the captured frames that are due: a session's first, and
    /// later ones once their output changed. Frames of sessions whose
    /// output went, turned off or changed layout fail now. Called at the
    /// end of each turn of the event loop, after drawing.
    pub fn finish_image_copies(&mut self) {
        if self.image_copy_capture.pending.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.image_copy_capture.pending);
        for frame in frames {
            if !frame.is_alive() {
                continue;
            }
            let Some(data) = frame.data::<FrameData>() else {
                continue;
            };
            let Some(session) = data.session.data::<SessionData>() else {
                continue;
            };
            let Some(output) = session.output.clone() else {
                frame.failed(FailureReason::Stopped);
                continue;
            };
            if session.stopped.load(Ordering::Relaxed) {
                frame.failed(FailureReason::Stopped);
                continue;
            }
            if !self.outputs.contains(&output) {
                stop(&data.session);
                frame.failed(FailureReason::Stopped);
                continue;
            }
            if update_constraints(&data.session, session, &output) {
                // The picture changed size under the frame: the session is
                // told the new constraints; the client reallocates.
                frame.failed(FailureReason::BufferConstraints);
                continue;
            }
            // Later frames wait for a change, and an output that is off
            // shows none; the first is copied at once, whatever the output
            // shows (capture draws it offscreen).
            let first = !session.copied_one.load(Ordering::Relaxed);
            if !first
                && (self.output_power.is_off(&output) || !session.changed.load(Ordering::Relaxed))
            {
                self.image_copy_capture.pending.push(frame);
                continue;
            }
            self.copy_frame(&frame, data, session, &output);
        }
    }

    fn copy_frame(
        &mut self,
        frame: &ExtImageCopyCaptureFrameV1,
        data: &FrameData,
        session: &SessionData,
        output: &Output,
    ) {
        let Some(size) = output_size(output) else {
            frame.failed(FailureReason::Unknown);
            return;
        };
        let Some(buffer) = data.buffer.lock().ok().and_then(|b| b.clone()) else {
            frame.failed(FailureReason::Unknown);
            return;
        };
        if check_buffer(&buffer, size).is_err() {
            frame.failed(FailureReason::BufferConstraints);
            return;
        }
        let region = Rectangle::<i32, Physical>::from_size(size);
        let (backend, scene) = self.split_for_frame();
        let written = backend
            .capture(output, &scene, session.cursor, region)
            .map_err(|e| e.to_string())
            .and_then(|pixels| write_into(&buffer, &pixels));
        match written {
            Ok(()) => {
                session.changed.store(false, Ordering::Relaxed);
                session.copied_one.store(true, Ordering::Relaxed);
                // The picture as the display's pixels lie: the output's
                // transform turns it upright.
                frame.transform(output.current_transform().into());
                frame.damage(0, 0, size.w, size.h);
                let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                let secs = now.tv_sec as u64;
                frame.presentation_time((secs >> 32) as u32, secs as u32, now.tv_nsec as u32);
                frame.ready();
            }
            Err(err) => {
                warn!(output = %output.name(), "ext-image-copy-capture failed: {err}");
                frame.failed(FailureReason::Unknown);
            }
        }
    }
}
