//! 1000 clients connect, use every protocol object that holds server-side
//! resources (surfaces, toplevels, shm pools and buffers, linux-dmabuf and
//! heap feedback with their fds, pending frame callbacks and params with
//! fds) and vanish without cleaning up, many of them mid-frame. The
//! compositor's open fd count must come back to where it was and its RSS
//! may grow only by a small margin.

mod common;

use std::{os::fd::AsFd, time::Duration};

use common::Compositor;
use heapland_protocols::client::xx_dmabuf_heap_manager_v1::XxDmabufHeapManagerV1;
use wayland_client::protocol::{wl_compositor::WlCompositor, wl_shm::WlShm};
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

const CYCLES: usize = 1000;
const WARMUP: usize = 100;
/// RSS growth tolerated over the 900 measured cycles (allocator slack).
const RSS_MARGIN_KIB: u64 = 3 * 1024;

fn one_client(comp: &Compositor, i: usize) {
    let mut c = comp.connect();
    let compositor: WlCompositor = c.bind(5);
    let wm: XdgWmBase = c.bind(1);
    let shm: WlShm = c.bind(1);
    // Feedback objects exist from version 4, which needs a render node.
    let feedback = common::render_node().is_some();
    let dmabuf: ZwpLinuxDmabufV1 = c.bind(if feedback { 4 } else { 3 });
    let heaps: XxDmabufHeapManagerV1 = c.bind(1);
    let surface = compositor.create_surface(&c.qh, ());
    let xdg = wm.get_xdg_surface(&surface, &c.qh, ());
    let _toplevel = xdg.get_toplevel(&c.qh, ());
    if feedback {
        let _fb = dmabuf.get_surface_feedback(&surface, &c.qh, ());
        let _dfb = dmabuf.get_default_feedback(&c.qh, ());
    }
    let _hfb = heaps.get_surface_feedback(&surface, &c.qh, ());
    let _hdfb = heaps.get_default_feedback(&c.qh, ());
    // Params holding an fd, never used.
    let params = dmabuf.create_params(&c.qh, ());
    let fd = rustix::fs::memfd_create("leak-plane", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    params.add(fd.as_fd(), 0, 0, 64, 0, 0);
    surface.commit();
    if i.is_multiple_of(2) {
        // Map a buffer and die mid-frame, with a frame callback pending.
        c.roundtrip().expect("configure");
        let buffer = c.shm_buffer(&shm, 16, 16, 0x00ff_00ff);
        surface.attach(Some(&buffer), 0, 0);
        surface.frame(&c.qh, ());
        surface.commit();
    }
    c.conn.flush().expect("flush");
    // Dropping the client closes the socket without any destroy request.
}

#[test]
fn thousand_connect_disconnect_cycles_leak_neither_fds_nor_memory() {
    let mut comp = Compositor::start_with(320, 240, &[]);
    let mut probe = comp.connect();
    let mut baseline = None;
    for i in 0..CYCLES {
        one_client(&comp, i);
        if i % 50 == 49 {
            // Let the compositor process the disconnects and render a frame.
            probe.roundtrip().expect("probe roundtrip");
            std::thread::sleep(Duration::from_millis(40));
            probe.roundtrip().expect("probe roundtrip");
            comp.assert_alive();
        }
        if i + 1 == WARMUP {
            baseline = Some((comp.fd_count(), comp.rss_kib()));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    probe.roundtrip().expect("probe roundtrip");
    let (fds0, rss0) = baseline.unwrap();
    let (fds1, rss1) = (comp.fd_count(), comp.rss_kib());
    eprintln!(
        "after {WARMUP} cycles: {fds0} fds, {rss0} KiB; after {CYCLES}: {fds1} fds, {rss1} KiB"
    );
    assert!(fds1 <= fds0, "fd count grew from {fds0} to {fds1}");
    assert!(
        rss1 <= rss0 + RSS_MARGIN_KIB,
        "RSS grew from {rss0} KiB to {rss1} KiB over {} cycles",
        CYCLES - WARMUP
    );
    comp.assert_alive();
}
