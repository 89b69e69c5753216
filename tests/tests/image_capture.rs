//! `ext-image-copy-capture-v1` with an output as the source: the session
//! offers the output's layout, a frame copies what the output shows (pixel
//! for pixel heapland's own screenshot), the next one waits for a change,
//! and bad clients get the protocol's errors while others are served.

mod common;

use std::time::Duration;

use common::{desktop::CaptureEvent, Client, Compositor};
use wayland_client::{
    protocol::{wl_output::WlOutput, wl_shm::WlShm},
    Proxy,
};
use wayland_protocols::ext::{
    image_capture_source::v1::client::ext_output_image_capture_source_manager_v1::ExtOutputImageCaptureSourceManagerV1,
    image_copy_capture::v1::client::{
        ext_image_copy_capture_frame_v1::{self, ExtImageCopyCaptureFrameV1},
        ext_image_copy_capture_manager_v1::{ExtImageCopyCaptureManagerV1, Options},
        ext_image_copy_capture_session_v1::{self, ExtImageCopyCaptureSessionV1},
    },
};

const WAIT: Duration = Duration::from_secs(10);
const RED: u32 = 0x00ff_0000;
const RED_RGB: [u8; 3] = [255, 0, 0];
const BLUE: u32 = 0x0000_00ff;
const BLUE_RGB: [u8; 3] = [0, 0, 255];
/// wl_shm.format xrgb8888.
const XRGB8888: u32 = 1;

/// A session on the client's first output, once its constraints are done.
fn open_session(client: &mut Client) -> (ExtImageCopyCaptureSessionV1, Vec<CaptureEvent>) {
    let sources: ExtOutputImageCaptureSourceManagerV1 = client.bind(1);
    let manager: ExtImageCopyCaptureManagerV1 = client.bind(1);
    let output: WlOutput = client.bind(4);
    let source = sources.create_source(&output, &client.qh, ());
    let session = manager.create_session(&source, Options::empty(), &client.qh, ());
    let id = session.id();
    let done = |r: &common::Recorder| {
        r.captures
            .get(&id)
            .is_some_and(|e| e.contains(&CaptureEvent::Done) || e.contains(&CaptureEvent::Stopped))
    };
    assert!(client.dispatch_until(WAIT, done), "no done");
    let events = client.rec.captures.get(&id).cloned().unwrap_or_default();
    (session, events)
}

/// Waits until `frame` is ready or failed; returns its events.
fn frame_result(
    client: &mut Client,
    frame: &ExtImageCopyCaptureFrameV1,
    timeout: Duration,
) -> Vec<CaptureEvent> {
    let id = frame.id();
    client.dispatch_until(timeout, |r| {
        r.captures.get(&id).is_some_and(|e| {
            e.contains(&CaptureEvent::Ready)
                || e.iter().any(|e| matches!(e, CaptureEvent::Failed(_)))
        })
    });
    client.rec.captures.get(&id).cloned().unwrap_or_default()
}

/// The session offers 320x240 XRGB8888; the first frame is the output's
/// picture at once (transform normal, all damaged, a presentation time);
/// the second waits while nothing changes and comes when a window does.
#[test]
fn a_session_copies_the_output_and_then_waits_for_changes() {
    let mut comp = Compositor::start();
    let mut app = comp.connect();
    let (surface, _toplevel) = app.map_toplevel(60, 40, RED);
    comp.wait_for_picture(WAIT, |p| p.count(0, 0, 320, 240, RED_RGB) >= 2400);

    let mut grabber = comp.connect();
    let shm: WlShm = grabber.bind(1);
    let (session, offered) = open_session(&mut grabber);
    assert_eq!(
        offered,
        vec![
            CaptureEvent::BufferSize(320, 240),
            CaptureEvent::ShmFormat(XRGB8888),
            CaptureEvent::Done
        ]
    );
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0x00ff_00ff);
    let frame = session.create_frame(&grabber.qh, ());
    frame.attach_buffer(&buffer);
    frame.damage_buffer(0, 0, 320, 240);
    frame.capture();
    let events = frame_result(&mut grabber, &frame, WAIT);
    assert_eq!(
        events,
        vec![
            CaptureEvent::Transform(0),
            CaptureEvent::Damage(0, 0, 320, 240),
            CaptureEvent::PresentationTime,
            CaptureEvent::Ready
        ]
    );
    let shown = comp.screenshot().expect("screenshot");
    assert!(
        common::rgb_of(&file, 320, 240).rgb == shown.rgb,
        "the frame differs from the output's picture"
    );

    // One frame at a time: the next after this one is destroyed.
    frame.destroy();
    let (buffer, file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0);
    let frame = session.create_frame(&grabber.qh, ());
    frame.attach_buffer(&buffer);
    frame.capture();
    let events = frame_result(&mut grabber, &frame, Duration::from_millis(500));
    assert!(
        !events.contains(&CaptureEvent::Ready),
        "a frame of an unchanged output: {events:?}"
    );
    let shm_app: WlShm = app.bind(1);
    let blue = app.shm_buffer(&shm_app, 60, 40, BLUE);
    surface.attach(Some(&blue), 0, 0);
    surface.damage_buffer(0, 0, 60, 40);
    surface.commit();
    app.roundtrip().expect("roundtrip");
    let events = frame_result(&mut grabber, &frame, WAIT);
    assert!(
        events.contains(&CaptureEvent::Ready),
        "no frame after the change: {events:?}"
    );
    assert_eq!(
        common::rgb_of(&file, 320, 240).count(0, 0, 320, 240, BLUE_RGB),
        2400
    );

    // A frame waiting for a change ends as stopped with its session.
    frame.destroy();
    let (buffer, _file) = grabber.shm_buffer_in_file(&shm, 320, 240, 0);
    let frame = session.create_frame(&grabber.qh, ());
    frame.attach_buffer(&buffer);
    frame.capture();
    grabber.roundtrip().expect("roundtrip");
    session.destroy();
    let events = frame_result(&mut grabber, &frame, WAIT);
    assert_eq!(
        events,
        vec![CaptureEvent::Failed(
            ext_image_copy_capture_frame_v1::FailureReason::Stopped as u32
        )]
    );
    comp.assert_alive();
}

/// What a bad client does with a session.
type Misuse = fn(&Client, &ExtImageCopyCaptureSessionV1);

/// A buffer of another size fails the frame with buffer_constraints (and
/// the session goes on); capture without a buffer is no_buffer, twice is
/// already_captured, a second frame duplicate_frame, negative damage
/// invalid_buffer_damage; a well-behaved client is served after each.
#[test]
fn bad_frames_fail_or_get_the_protocols_errors() {
    let mut comp = Compositor::start();

    let mut small = comp.connect();
    let shm: WlShm = small.bind(1);
    let (session, _) = open_session(&mut small);
    let frame = session.create_frame(&small.qh, ());
    let buffer = small.shm_buffer(&shm, 100, 100, 0);
    frame.attach_buffer(&buffer);
    frame.capture();
    let events = frame_result(&mut small, &frame, WAIT);
    assert_eq!(
        events,
        vec![CaptureEvent::Failed(
            ext_image_copy_capture_frame_v1::FailureReason::BufferConstraints as u32
        )]
    );
    frame.destroy();
    let (buffer, _file) = small.shm_buffer_in_file(&shm, 320, 240, 0);
    let frame = session.create_frame(&small.qh, ());
    frame.attach_buffer(&buffer);
    frame.capture();
    assert!(frame_result(&mut small, &frame, WAIT).contains(&CaptureEvent::Ready));

    let cases: [(&str, u32, Misuse); 5] = [
        (
            "ext_image_copy_capture_frame_v1",
            ext_image_copy_capture_frame_v1::Error::NoBuffer as u32,
            |c, s| s.create_frame(&c.qh, ()).capture(),
        ),
        (
            "ext_image_copy_capture_frame_v1",
            ext_image_copy_capture_frame_v1::Error::AlreadyCaptured as u32,
            |c, s| {
                let shm: WlShm = c.bind(1);
                let buffer = c.shm_buffer(&shm, 320, 240, 0);
                let frame = s.create_frame(&c.qh, ());
                frame.attach_buffer(&buffer);
                frame.capture();
                frame.capture();
            },
        ),
        (
            "ext_image_copy_capture_frame_v1",
            ext_image_copy_capture_frame_v1::Error::AlreadyCaptured as u32,
            |c, s| {
                let shm: WlShm = c.bind(1);
                let buffer = c.shm_buffer(&shm, 320, 240, 0);
                let frame = s.create_frame(&c.qh, ());
                frame.attach_buffer(&buffer);
                frame.capture();
                frame.attach_buffer(&buffer);
            },
        ),
        (
            "ext_image_copy_capture_session_v1",
            ext_image_copy_capture_session_v1::Error::DuplicateFrame as u32,
            |c, s| {
                let _first = s.create_frame(&c.qh, ());
                let _second = s.create_frame(&c.qh, ());
            },
        ),
        (
            "ext_image_copy_capture_frame_v1",
            ext_image_copy_capture_frame_v1::Error::InvalidBufferDamage as u32,
            |c, s| s.create_frame(&c.qh, ()).damage_buffer(0, 0, -5, 10),
        ),
    ];
    for (interface, code, misuse) in cases {
        let mut bad = comp.connect();
        let (session, _) = open_session(&mut bad);
        misuse(&bad, &session);
        bad.expect_error(interface, code);
        comp.assert_alive();
        let mut good = comp.connect();
        let shm: WlShm = good.bind(1);
        let (session, _) = open_session(&mut good);
        let (buffer, _file) = good.shm_buffer_in_file(&shm, 320, 240, 0);
        let frame = session.create_frame(&good.qh, ());
        frame.attach_buffer(&buffer);
        frame.capture();
        assert!(
            frame_result(&mut good, &frame, WAIT).contains(&CaptureEvent::Ready),
            "a good client is not served after {interface}#{code}"
        );
    }
}

/// A new mode (Debian's wlr-randr) gives the session the new layout; a
/// frame with a buffer of the old one fails with buffer_constraints, and
/// one of the new size is the new picture.
#[test]
fn a_mode_change_sends_new_constraints() {
    let mut comp = Compositor::start();
    let mut grabber = comp.connect();
    let shm: WlShm = grabber.bind(1);
    let (session, _) = open_session(&mut grabber);
    let (ok, _, err) = common::wlr_randr(
        &comp,
        &["--output", "HEADLESS-1", "--custom-mode", "400x300"],
    );
    assert!(ok, "wlr-randr: {err}");
    let id = session.id();
    let resized = |r: &common::Recorder| {
        r.captures
            .get(&id)
            .is_some_and(|e| e.contains(&CaptureEvent::BufferSize(400, 300)))
    };
    assert!(
        grabber.dispatch_until(WAIT, resized),
        "no new buffer size: {:?}\n{}",
        grabber.rec.captures.get(&id),
        comp.log_text()
    );
    let events = grabber.rec.captures.get(&id).cloned().unwrap_or_default();
    assert!(
        events.ends_with(&[
            CaptureEvent::BufferSize(400, 300),
            CaptureEvent::ShmFormat(XRGB8888),
            CaptureEvent::Done
        ]),
        "{events:?}"
    );
    let old = grabber.shm_buffer(&shm, 320, 240, 0);
    let frame = session.create_frame(&grabber.qh, ());
    frame.attach_buffer(&old);
    frame.capture();
    assert_eq!(
        frame_result(&mut grabber, &frame, WAIT),
        vec![CaptureEvent::Failed(
            ext_image_copy_capture_frame_v1::FailureReason::BufferConstraints as u32
        )]
    );
    frame.destroy();
    let (new, file) = grabber.shm_buffer_in_file(&shm, 400, 300, 0x00ff_00ff);
    let frame = session.create_frame(&grabber.qh, ());
    frame.attach_buffer(&new);
    frame.capture();
    assert!(frame_result(&mut grabber, &frame, WAIT).contains(&CaptureEvent::Ready));
    let pic = common::rgb_of(&file, 400, 300);
    assert_eq!(
        pic.count(0, 0, 400, 300, common::BACKGROUND),
        400 * 300,
        "the 400x300 frame is not the empty output"
    );
    comp.assert_alive();
}
