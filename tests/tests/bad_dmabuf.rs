//! Every malformed `zwp_linux_buffer_params_v1` gets the exact protocol
//! error; only the offending client is disconnected, and a second client
//! keeps being served (it maps a window and gets frame callbacks).
//!
//! There are no dma-bufs on the host: planes are memfds. Size checks come
//! first, so they are exercised with memfds; a well-formed request on a
//! memfd is then refused as "not a dma-buf" (`invalid_wl_buffer` for
//! create_immed, the `failed` event for create).

mod common;

use std::{os::fd::AsFd, time::Duration};

use common::{Client, Compositor};
use rustix::fs::MemfdFlags;
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_buffer_params_v1::{Error, Flags, ZwpLinuxBufferParamsV1},
    zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
};

const XR24: u32 = u32::from_le_bytes(*b"XR24");
const NV12: u32 = u32::from_le_bytes(*b"NV12");
const LINEAR: u64 = 0;
/// I915_FORMAT_MOD_X_TILED: a real modifier the compositor never advertises.
const X_TILED: u64 = 0x0100_0000_0000_0001;

/// A memfd of `size` bytes standing in for a buffer.
fn memfd(size: u64) -> std::os::fd::OwnedFd {
    let fd = rustix::fs::memfd_create("heapland-test-plane", MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, size).expect("ftruncate");
    fd
}

fn add(
    params: &ZwpLinuxBufferParamsV1,
    fd: &std::os::fd::OwnedFd,
    idx: u32,
    offset: u32,
    stride: u32,
    modifier: u64,
) {
    params.add(
        fd.as_fd(),
        idx,
        offset,
        stride,
        (modifier >> 32) as u32,
        modifier as u32,
    );
}

/// Runs one bad request sequence and checks the error and the bystander.
fn case(expected: Error, bad: impl FnOnce(&Client, &ZwpLinuxBufferParamsV1)) -> String {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut bystander = comp.connect();
    bystander.roundtrip().expect("bystander connects");

    let mut client = comp.connect();
    // Version 3: what every machine offers (4 needs a render node).
    let dmabuf: ZwpLinuxDmabufV1 = client.bind(3);
    let params = dmabuf.create_params(&client.qh, ());
    bad(&client, &params);
    let message = client.expect_error("zwp_linux_buffer_params_v1", expected as u32);
    assert!(!message.is_empty());

    comp.assert_alive();
    // The other client is unaffected: it maps a window and is told to draw.
    let (surface, _toplevel) = bystander.map_toplevel(32, 32, 0x0000_ff00);
    surface.frame(&bystander.qh, ());
    surface.commit();
    assert!(
        bystander.dispatch_until(Duration::from_secs(10), |r| r.frames_done >= 1),
        "bystander got no frame callback after another client's error"
    );
    // And a new client can still connect.
    comp.connect().roundtrip().expect("new client after error");
    message
}

#[test]
fn no_planes_is_incomplete() {
    case(Error::Incomplete, |c, p| {
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
}

#[test]
fn plane_index_4_is_plane_idx() {
    case(Error::PlaneIdx, |_, p| {
        add(p, &memfd(16384), 4, 0, 256, LINEAR);
    });
}

#[test]
fn duplicate_plane_is_plane_set() {
    case(Error::PlaneSet, |_, p| {
        let fd = memfd(16384);
        add(p, &fd, 0, 0, 256, LINEAR);
        add(p, &fd, 0, 0, 256, LINEAR);
    });
}

#[test]
fn zero_stride_is_out_of_bounds() {
    let msg = case(Error::OutOfBounds, |c, p| {
        add(p, &memfd(16384), 0, 0, 0, LINEAR);
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
    assert!(msg.contains("stride"), "{msg}");
}

#[test]
fn offset_plus_stride_overflow_is_out_of_bounds() {
    case(Error::OutOfBounds, |_, p| {
        add(p, &memfd(16384), 0, 0xffff_0000, 0x0002_0000, LINEAR);
    });
}

#[test]
fn stride_times_height_overflow_is_out_of_bounds() {
    let msg = case(Error::OutOfBounds, |c, p| {
        add(p, &memfd(16384), 0, 0, 0x1000_0000, LINEAR);
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
    assert!(msg.contains("overflows 32 bits"), "{msg}");
}

#[test]
fn buffer_beyond_fd_size_is_out_of_bounds() {
    let msg = case(Error::OutOfBounds, |c, p| {
        // 64 rows of 256 bytes need 16384 bytes; the fd has 8192.
        add(p, &memfd(8192), 0, 0, 256, LINEAR);
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
    assert!(msg.contains("beyond"), "{msg}");
}

#[test]
fn unadvertised_format_is_invalid_format() {
    case(Error::InvalidFormat, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, LINEAR);
        p.create_immed(64, 64, NV12, Flags::empty(), &c.qh, ());
    });
}

#[test]
fn garbage_fourcc_is_invalid_format() {
    case(Error::InvalidFormat, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, LINEAR);
        p.create_immed(64, 64, 0x1234_5678, Flags::empty(), &c.qh, ());
    });
}

#[test]
fn unadvertised_modifier_is_invalid_format() {
    let msg = case(Error::InvalidFormat, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, X_TILED);
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
    assert!(msg.contains("modifier"), "{msg}");
}

#[test]
fn zero_width_is_invalid_dimensions() {
    case(Error::InvalidDimensions, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, LINEAR);
        p.create_immed(0, 64, XR24, Flags::empty(), &c.qh, ());
    });
}

#[test]
fn second_create_is_already_used() {
    case(Error::AlreadyUsed, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, LINEAR);
        p.create(64, 64, XR24, Flags::empty());
        p.create(64, 64, XR24, Flags::empty());
        let _ = c;
    });
}

#[test]
fn memfd_with_create_immed_is_invalid_wl_buffer() {
    case(Error::InvalidWlBuffer, |c, p| {
        add(p, &memfd(16384), 0, 0, 256, LINEAR);
        p.create_immed(64, 64, XR24, Flags::empty(), &c.qh, ());
    });
}

#[test]
fn memfd_with_create_gets_failed_and_the_client_survives() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut client = comp.connect();
    // Version 3: what every machine offers (4 needs a render node).
    let dmabuf: ZwpLinuxDmabufV1 = client.bind(3);
    let params = dmabuf.create_params(&client.qh, ());
    add(&params, &memfd(16384), 0, 0, 256, LINEAR);
    params.create(64, 64, XR24, Flags::empty());
    assert!(
        client.dispatch_until(Duration::from_secs(10), |r| r.params_failed == 1),
        "no failed event for a memfd buffer"
    );
    assert_eq!(client.rec.params_created, 0);
    params.destroy();
    // Still connected and served.
    let (surface, _t) = client.map_toplevel(16, 16, 0x00ff_0000);
    surface.frame(&client.qh, ());
    surface.commit();
    assert!(client.dispatch_until(Duration::from_secs(10), |r| r.frames_done >= 1));
    comp.assert_alive();
}
