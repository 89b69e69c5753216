//! What the feedback collectors' tests send: device numbers, a format
//! table in a memfd, as a compositor would put them on the wire.

use std::{io::Write, os::fd::OwnedFd};

use wayland_client::WEnum;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::{
    Event, TrancheFlags,
};

pub const RENDER: u64 = (226 << 8) | 128;
pub const DISPLAY: u64 = 226 << 8;
pub const XR24: u32 = u32::from_le_bytes(*b"XR24");
pub const AR24: u32 = u32::from_le_bytes(*b"AR24");

/// A `dev_t` array.
pub fn dev(d: u64) -> Vec<u8> {
    d.to_ne_bytes().to_vec()
}

/// A memfd holding `data`.
pub fn memfd(data: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("table", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(data).unwrap();
    f.into()
}

/// A format table of XR24 and AR24, both LINEAR, and its size.
pub fn table() -> (OwnedFd, u32) {
    let mut t = Vec::new();
    for f in [XR24, AR24] {
        t.extend_from_slice(&f.to_ne_bytes());
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(&0u64.to_ne_bytes());
    }
    let len = t.len() as u32;
    (memfd(&t), len)
}

/// The events of one linux-dmabuf batch: `main_device` (RENDER) below
/// version 6, the format table when `with_table`, then (target, scanout,
/// format indices) per tranche, RENDER's tranches flagged `sampling` at
/// version 6, and `done`.
pub fn dmabuf_batch(
    version6: bool,
    with_table: bool,
    tranches: &[(u64, bool, &[u16])],
) -> Vec<Event> {
    let mut events = Vec::new();
    if !version6 {
        events.push(Event::MainDevice {
            device: dev(RENDER),
        });
    }
    if with_table {
        let (fd, size) = table();
        events.push(Event::FormatTable { fd, size });
    }
    for (target, scanout, indices) in tranches {
        events.push(Event::TrancheTargetDevice {
            device: dev(*target),
        });
        let indices: Vec<u8> = indices.iter().flat_map(|i| i.to_ne_bytes()).collect();
        events.push(Event::TrancheFormats { indices });
        let mut flags = TrancheFlags::empty();
        if *scanout {
            flags |= TrancheFlags::Scanout;
        }
        if version6 && *target == RENDER {
            flags |= TrancheFlags::Sampling;
        }
        events.push(Event::TrancheFlags {
            flags: WEnum::Value(flags),
        });
        events.push(Event::TrancheDone);
    }
    events.push(Event::Done);
    events
}

/// The tranche-order cases both collectors refuse, by name: what their
/// events are is the caller's (`layout`, a `no_heap` with a message, a
/// device).
pub fn out_of_order_tranches<E>(
    layout: impl Fn() -> E,
    no_heap: impl Fn(&str) -> E,
    device: impl Fn() -> E,
) -> Vec<(&'static str, Vec<E>)> {
    vec![
        ("device after layout", vec![layout(), device()]),
        ("layout twice", vec![layout(), layout()]),
        ("heap before layout", vec![no_heap("none")]),
        ("two heap parts", vec![layout(), no_heap("a"), no_heap("b")]),
        ("no_heap without a message", vec![layout(), no_heap("")]),
    ]
}

/// Feeds `events` to `feed`: every one but the last is taken, the last is
/// refused as malformed.
pub fn assert_last_malformed<E>(
    what: &str,
    events: Vec<E>,
    mut feed: impl FnMut(E) -> Result<(), heapland_allocator::feedback_client::FeedbackError>,
) {
    let mut events = events.into_iter();
    let last = events.next_back().expect("an event");
    for e in events {
        feed(e).unwrap_or_else(|err| panic!("{what}: an event before the last refused: {err}"));
    }
    let err = feed(last);
    assert!(
        matches!(
            err,
            Err(heapland_allocator::feedback_client::FeedbackError::Malformed { .. })
        ),
        "{what}: {err:?}"
    );
}
