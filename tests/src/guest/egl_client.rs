//! `heapland-egl-client`: a client that renders with the GPU API into memory
//! the compositor's heap protocol gave it, as the mission says a client
//! should. It asks `xx_dmabuf_heaps_v1` for the heap of the default
//! tranche, allocates one buffer from it, renders into that buffer with
//! GLES (Smithay's `GlesRenderer` over EGL on the display's GBM, the buffer
//! imported as an EGL image), attaches it with linux-dmabuf and shows it.
//!
//! A glibc program (EGL is loaded from Mesa at run time); in the guest it
//! runs on Mesa 26.1 like heapland's own GLES (see `gles`). It prints
//! `EGL-CLIENT shown inode=N heap=NAME` once the compositor has shown the
//! buffer, then stays until killed. What it draws: [`BACKGROUND_RGB`]
//! everywhere, and a [`SQUARE_RGB`] square in the middle half.

use std::{
    io::Write,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use smithay::{
    backend::{
        allocator::{
            dmabuf::{Dmabuf, DmabufFlags},
            gbm::GbmDevice,
            Fourcc, Modifier,
        },
        egl::{EGLContext, EGLDisplay},
        renderer::{gles::GlesRenderer, Bind, Color32F, Frame, Renderer},
    },
    utils::{DeviceFd, Rectangle, Transform},
};
use wayland_client::protocol::wl_compositor::WlCompositor;
use wayland_protocols::{
    wp::linux_dmabuf::zv1::client::{
        zwp_linux_buffer_params_v1::Flags, zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
    },
    xdg::shell::client::xdg_wm_base::XdgWmBase,
};

use heapland_protocols::v2::client::xx_dmabuf_heap_manager_v2::XxDmabufHeapManagerV2;

use super::{
    compositor::{self, feedback_scope, State, XR24},
    dma_buf, dma_heap,
};

pub const WIDTH: i32 = 256;
pub const HEIGHT: i32 = 192;
pub const BACKGROUND_RGB: [u8; 3] = [0x30, 0x60, 0xf0];
pub const SQUARE_RGB: [u8; 3] = [0xf0, 0xd0, 0x10];

fn colour([r, g, b]: [u8; 3]) -> Color32F {
    Color32F::new(
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
        1.0,
    )
}

/// Runs the client against `$WAYLAND_DISPLAY`, rendering with EGL on the
/// DRM device `card` (the display's node).
pub fn run(card: &Path) -> Result<(), String> {
    let (conn, globals, mut queue) = compositor::connect()?;
    let qh = queue.handle();
    let wl_compositor: WlCompositor = compositor::bind(&globals, &qh, 4..=5)?;
    let wm: XdgWmBase = compositor::bind(&globals, &qh, 1..=1)?;
    let dmabuf: ZwpLinuxDmabufV1 = compositor::bind(&globals, &qh, 4..=4)?;
    let heaps: XxDmabufHeapManagerV2 = compositor::bind(&globals, &qh, 1..=1)?;
    let mut st = State::default();

    // The heap of the default tranche.
    let (_feedback, _heap_feedback) = feedback_scope(&mut st, &qh, &dmabuf, &heaps, None);
    while !st.heap_done {
        queue
            .blocking_dispatch(&mut st)
            .map_err(|e| format!("waiting for the heap batch: {e}"))?;
        if let Some(err) = &st.feedback_error {
            return Err(err.clone());
        }
    }
    let heap_fd = match (st.heap_fd.take(), &st.no_heap) {
        (Some(fd), _) => fd,
        (None, reason) => return Err(format!("no heap for the default tranche: {reason:?}")),
    };
    let heap_name = st.heap_name.clone();

    // One buffer from it, rendered into by the GPU.
    let stride = (WIDTH * 4) as u32;
    let len = u64::from(stride) * HEIGHT as u64;
    let buffer_fd = dma_heap::alloc(heap_fd.as_fd(), len)
        .map_err(|e| format!("DMA_HEAP_IOCTL_ALLOC from {heap_name}: {e}"))?;
    dma_buf::set_name(buffer_fd.as_fd(), "heapland-egl-client")?;
    render(card, &buffer_fd, stride)?;

    let params = dmabuf.create_params(&qh, ());
    params.add(buffer_fd.as_fd(), 0, 0, stride, 0, 0);
    let buffer = params.create_immed(WIDTH, HEIGHT, XR24, Flags::empty(), &qh, 1);
    let surface = wl_compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let _toplevel = xdg.get_toplevel(&qh, ());
    surface.commit();
    while !st.configured {
        queue
            .blocking_dispatch(&mut st)
            .map_err(|e| format!("waiting for configure: {e}"))?;
    }
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, WIDTH, HEIGHT);
    surface.frame(&qh, ());
    surface.commit();
    while !st.frame_done {
        queue
            .blocking_dispatch(&mut st)
            .map_err(|e| format!("waiting for the frame callback: {e}"))?;
    }
    let inode = dma_buf::inode(buffer_fd.as_fd())?;
    let mut out = std::io::stdout();
    writeln!(out, "EGL-CLIENT shown inode={inode} heap={heap_name}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    // Shown until killed.
    loop {
        queue
            .blocking_dispatch(&mut st)
            .map_err(|e| format!("connection: {e}"))?;
        let _ = &conn;
    }
}

/// Renders the picture into the dma-buf `fd` with GLES on `card`.
fn render(card: &Path, fd: &OwnedFd, stride: u32) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(card)
        .map_err(|e| format!("open {}: {e}", card.display()))?;
    let gbm = GbmDevice::new(DeviceFd::from(OwnedFd::from(file)))
        .map_err(|e| format!("GBM on {}: {e}", card.display()))?;
    // SAFETY: the display keeps the GBM device; nothing else terminates it.
    let display = unsafe { EGLDisplay::new(gbm) }.map_err(|e| format!("EGL display: {e}"))?;
    let context = EGLContext::new(&display).map_err(|e| format!("EGL context: {e}"))?;
    // SAFETY: a new context, current on no other thread.
    let mut renderer =
        unsafe { GlesRenderer::new(context) }.map_err(|e| format!("GLES renderer: {e}"))?;

    let mut builder = Dmabuf::builder(
        (WIDTH, HEIGHT),
        Fourcc::Xrgb8888,
        Modifier::Linear,
        DmabufFlags::empty(),
    );
    let plane = fd
        .try_clone()
        .map_err(|e| format!("dup the buffer fd: {e}"))?;
    builder.add_plane(plane, 0, 0, stride);
    let mut dmabuf = builder.build().ok_or("a dma-buf with no plane")?;

    let size = (WIDTH, HEIGHT).into();
    let whole = Rectangle::from_size(size);
    let square = Rectangle::new(
        (WIDTH / 4, HEIGHT / 4).into(),
        (WIDTH / 2, HEIGHT / 2).into(),
    );
    let mut target = renderer
        .bind(&mut dmabuf)
        .map_err(|e| format!("EGL cannot render into the heap buffer: {e}"))?;
    let mut frame = renderer
        .render(&mut target, size, Transform::Normal)
        .map_err(|e| format!("begin a frame: {e}"))?;
    frame
        .clear(colour(BACKGROUND_RGB), &[whole])
        .map_err(|e| format!("clear: {e}"))?;
    frame
        // The damage is relative to the destination.
        .draw_solid(
            square,
            &[Rectangle::from_size(square.size)],
            colour(SQUARE_RGB),
        )
        .map_err(|e| format!("draw: {e}"))?;
    let sync = frame.finish().map_err(|e| format!("finish: {e}"))?;
    sync.wait()
        .map_err(|_| "interrupted waiting for the GPU".to_owned())?;
    Ok(())
}
