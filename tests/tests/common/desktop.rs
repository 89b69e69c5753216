//! The test client's side of the desktop protocols: decorations, layer
//! shell, pointer constraints, shortcut inhibition, single-pixel buffers,
//! cursor shapes, activation, selections, idleness.

use wayland_client::{
    protocol::{
        wl_data_device::WlDataDevice,
        wl_data_device_manager::WlDataDeviceManager,
        wl_data_source::WlDataSource,
        wl_keyboard::WlKeyboard,
        wl_pointer::{self, WlPointer},
        wl_region::WlRegion,
    },
    Connection, Dispatch, Proxy, QueueHandle,
};
use wayland_protocols::{
    ext::idle_notify::v1::client::{
        ext_idle_notification_v1::{self, ExtIdleNotificationV1},
        ext_idle_notifier_v1::ExtIdleNotifierV1,
    },
    ext::image_capture_source::v1::client::{
        ext_image_capture_source_v1::ExtImageCaptureSourceV1,
        ext_output_image_capture_source_manager_v1::ExtOutputImageCaptureSourceManagerV1,
    },
    ext::image_copy_capture::v1::client::{
        ext_image_copy_capture_cursor_session_v1::ExtImageCopyCaptureCursorSessionV1,
        ext_image_copy_capture_frame_v1::{self, ExtImageCopyCaptureFrameV1},
        ext_image_copy_capture_manager_v1::ExtImageCopyCaptureManagerV1,
        ext_image_copy_capture_session_v1::{self, ExtImageCopyCaptureSessionV1},
    },
    ext::session_lock::v1::client::{
        ext_session_lock_manager_v1::ExtSessionLockManagerV1,
        ext_session_lock_surface_v1::{self, ExtSessionLockSurfaceV1},
        ext_session_lock_v1::{self, ExtSessionLockV1},
    },
    wp::{
        cursor_shape::v1::client::{
            wp_cursor_shape_device_v1::WpCursorShapeDeviceV1,
            wp_cursor_shape_manager_v1::WpCursorShapeManagerV1,
        },
        idle_inhibit::zv1::client::{
            zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1,
            zwp_idle_inhibitor_v1::ZwpIdleInhibitorV1,
        },
        keyboard_shortcuts_inhibit::zv1::client::{
            zwp_keyboard_shortcuts_inhibit_manager_v1::ZwpKeyboardShortcutsInhibitManagerV1,
            zwp_keyboard_shortcuts_inhibitor_v1::{self, ZwpKeyboardShortcutsInhibitorV1},
        },
        pointer_constraints::zv1::client::{
            zwp_confined_pointer_v1::ZwpConfinedPointerV1,
            zwp_locked_pointer_v1::ZwpLockedPointerV1,
            zwp_pointer_constraints_v1::ZwpPointerConstraintsV1,
        },
        primary_selection::zv1::client::{
            zwp_primary_selection_device_manager_v1::ZwpPrimarySelectionDeviceManagerV1,
            zwp_primary_selection_device_v1::ZwpPrimarySelectionDeviceV1,
            zwp_primary_selection_source_v1::ZwpPrimarySelectionSourceV1,
        },
        relative_pointer::zv1::client::{
            zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1,
            zwp_relative_pointer_v1::ZwpRelativePointerV1,
        },
        single_pixel_buffer::v1::client::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1,
    },
    xdg::{
        activation::v1::client::{
            xdg_activation_token_v1::{self, XdgActivationTokenV1},
            xdg_activation_v1::XdgActivationV1,
        },
        decoration::zv1::client::{
            zxdg_decoration_manager_v1::ZxdgDecorationManagerV1,
            zxdg_toplevel_decoration_v1::{self, ZxdgToplevelDecorationV1},
        },
    },
};
use wayland_protocols_wlr::{
    foreign_toplevel::v1::client::{
        zwlr_foreign_toplevel_handle_v1::{self, ZwlrForeignToplevelHandleV1},
        zwlr_foreign_toplevel_manager_v1::{self, ZwlrForeignToplevelManagerV1},
    },
    layer_shell::v1::client::{
        zwlr_layer_shell_v1::ZwlrLayerShellV1,
        zwlr_layer_surface_v1::{self, ZwlrLayerSurfaceV1},
    },
    output_management::v1::client::{
        zwlr_output_configuration_head_v1::ZwlrOutputConfigurationHeadV1,
        zwlr_output_configuration_v1::ZwlrOutputConfigurationV1,
        zwlr_output_head_v1::{self, ZwlrOutputHeadV1},
        zwlr_output_manager_v1::{self, ZwlrOutputManagerV1},
        zwlr_output_mode_v1::ZwlrOutputModeV1,
    },
    output_power_management::v1::client::{
        zwlr_output_power_manager_v1::ZwlrOutputPowerManagerV1,
        zwlr_output_power_v1::{self, ZwlrOutputPowerV1},
    },
    screencopy::v1::client::{
        zwlr_screencopy_frame_v1::{self, ZwlrScreencopyFrameV1},
        zwlr_screencopy_manager_v1::ZwlrScreencopyManagerV1,
    },
};

use wayland_protocols::xdg::shell::client::{
    xdg_popup::{self, XdgPopup},
    xdg_positioner::XdgPositioner,
};

use super::Recorder;

/// One event of an ext_image_copy_capture session or frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureEvent {
    BufferSize(u32, u32),
    ShmFormat(u32),
    Done,
    Stopped,
    Transform(u32),
    Damage(i32, i32, i32, i32),
    PresentationTime,
    Ready,
    Failed(u32),
}

impl Dispatch<ExtImageCopyCaptureSessionV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        session: &ExtImageCopyCaptureSessionV1,
        e: ext_image_copy_capture_session_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use ext_image_copy_capture_session_v1::Event;
        let event = match e {
            Event::BufferSize { width, height } => CaptureEvent::BufferSize(width, height),
            Event::ShmFormat { format } => CaptureEvent::ShmFormat(match format {
                wayland_client::WEnum::Value(f) => u32::from(f),
                wayland_client::WEnum::Unknown(f) => f,
            }),
            Event::Done => CaptureEvent::Done,
            Event::Stopped => CaptureEvent::Stopped,
            _ => return,
        };
        s.captures.entry(session.id()).or_default().push(event);
    }
}

impl Dispatch<ExtImageCopyCaptureFrameV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        frame: &ExtImageCopyCaptureFrameV1,
        e: ext_image_copy_capture_frame_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use ext_image_copy_capture_frame_v1::Event;
        let event = match e {
            Event::Transform { transform } => CaptureEvent::Transform(match transform {
                wayland_client::WEnum::Value(t) => u32::from(t),
                wayland_client::WEnum::Unknown(t) => t,
            }),
            Event::Damage {
                x,
                y,
                width,
                height,
            } => CaptureEvent::Damage(x, y, width, height),
            Event::PresentationTime { .. } => CaptureEvent::PresentationTime,
            Event::Ready => CaptureEvent::Ready,
            Event::Failed { reason } => CaptureEvent::Failed(match reason {
                wayland_client::WEnum::Value(r) => u32::from(r),
                wayland_client::WEnum::Unknown(r) => r,
            }),
            _ => return,
        };
        s.captures.entry(frame.id()).or_default().push(event);
    }
}

/// One event of a zwlr_screencopy_frame_v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEvent {
    /// The wl_shm layout offered: format, width, height, stride.
    Buffer(u32, u32, u32, u32),
    BufferDone,
    Damage(u32, u32, u32, u32),
    Flags(u32),
    Ready,
    Failed,
}

heapland_test_client::ignore_events!(
    Recorder:    ExtOutputImageCaptureSourceManagerV1,
    ExtImageCaptureSourceV1,
    ExtImageCopyCaptureManagerV1,
    ExtImageCopyCaptureCursorSessionV1,
    ZxdgDecorationManagerV1,
    ZwlrLayerShellV1,
    ZwpPointerConstraintsV1,
    ZwpLockedPointerV1,
    ZwpConfinedPointerV1,
    ZwpRelativePointerManagerV1,
    ZwpRelativePointerV1,
    ZwpKeyboardShortcutsInhibitManagerV1,
    WpSinglePixelBufferManagerV1,
    WpCursorShapeManagerV1,
    WpCursorShapeDeviceV1,
    XdgActivationV1,
    WlDataDeviceManager,
    WlDataDevice,
    WlDataSource,
    ZwpPrimarySelectionDeviceManagerV1,
    ZwpPrimarySelectionDeviceV1,
    ZwpPrimarySelectionSourceV1,
    WlRegion,
    ExtSessionLockManagerV1,
    ExtIdleNotifierV1,
    ZwpIdleInhibitManagerV1,
    ZwpIdleInhibitorV1,
    ZwlrScreencopyManagerV1,
    ZwlrOutputPowerManagerV1,
    ZwlrOutputModeV1,
    ZwlrOutputConfigurationV1,
    ZwlrOutputConfigurationHeadV1,
    XdgPositioner
);

/// What one zwlr_foreign_toplevel_handle_v1 said, as of its last `done`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForeignWindow {
    pub title: String,
    pub app_id: String,
    pub states: Vec<u32>,
    pub outputs: usize,
    pub closed: bool,
}

impl Dispatch<ZwlrForeignToplevelManagerV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwlrForeignToplevelManagerV1,
        e: zwlr_foreign_toplevel_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwlr_foreign_toplevel_manager_v1::Event::Toplevel { toplevel } = e {
            s.foreign_windows.push((toplevel, ForeignWindow::default()));
        }
    }

    wayland_client::event_created_child!(Recorder, ZwlrForeignToplevelManagerV1, [
        zwlr_foreign_toplevel_manager_v1::EVT_TOPLEVEL_OPCODE => (ZwlrForeignToplevelHandleV1, ()),
    ]);
}

impl Dispatch<ZwlrForeignToplevelHandleV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        handle: &ZwlrForeignToplevelHandleV1,
        e: zwlr_foreign_toplevel_handle_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwlr_foreign_toplevel_handle_v1::Event;
        let done = matches!(e, Event::Done | Event::Closed);
        let pending = s.foreign_pending.entry(handle.id()).or_default();
        match e {
            Event::Title { title } => pending.title = title,
            Event::AppId { app_id } => pending.app_id = app_id,
            Event::State { state } => {
                pending.states = state
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            Event::OutputEnter { .. } => pending.outputs += 1,
            Event::OutputLeave { .. } => pending.outputs = pending.outputs.saturating_sub(1),
            Event::Closed => pending.closed = true,
            _ => {}
        }
        if done {
            let now = pending.clone();
            if let Some((_, told)) = s.foreign_windows.iter_mut().find(|(h, _)| h == handle) {
                *told = now;
            }
        }
    }
}

impl Dispatch<XdgPopup, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &XdgPopup,
        e: xdg_popup::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_popup::Event::Configure {
            x,
            y,
            width,
            height,
        } = e
        {
            s.popup_configures.push((x, y, width, height));
        }
    }
}

impl Dispatch<ZwlrOutputManagerV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwlrOutputManagerV1,
        e: zwlr_output_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwlr_output_manager_v1::Event::Head { head } => s.output_heads.push((head, Vec::new())),
            zwlr_output_manager_v1::Event::Done { serial } => s.output_serial = Some(serial),
            _ => {}
        }
    }

    wayland_client::event_created_child!(Recorder, ZwlrOutputManagerV1, [
        zwlr_output_manager_v1::EVT_HEAD_OPCODE => (ZwlrOutputHeadV1, ()),
    ]);
}

impl Dispatch<ZwlrOutputHeadV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        head: &ZwlrOutputHeadV1,
        e: zwlr_output_head_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwlr_output_head_v1::Event::Mode { mode } = e {
            if let Some((_, modes)) = s.output_heads.iter_mut().find(|(h, _)| h == head) {
                modes.push(mode);
            }
        }
    }

    wayland_client::event_created_child!(Recorder, ZwlrOutputHeadV1, [
        zwlr_output_head_v1::EVT_MODE_OPCODE => (ZwlrOutputModeV1, ()),
    ]);
}

/// One event of a zwlr_output_power_v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// 0 off, 1 on.
    Mode(u32),
    Failed,
}

impl Dispatch<ZwlrOutputPowerV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        power: &ZwlrOutputPowerV1,
        e: zwlr_output_power_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let event = match e {
            zwlr_output_power_v1::Event::Mode { mode } => PowerEvent::Mode(u32::from(mode)),
            zwlr_output_power_v1::Event::Failed => PowerEvent::Failed,
            _ => return,
        };
        s.power.entry(power.id()).or_default().push(event);
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        frame: &ZwlrScreencopyFrameV1,
        e: zwlr_screencopy_frame_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwlr_screencopy_frame_v1::Event;
        let event = match e {
            Event::Buffer {
                format,
                width,
                height,
                stride,
            } => CopyEvent::Buffer(u32::from(format), width, height, stride),
            Event::BufferDone => CopyEvent::BufferDone,
            Event::Damage {
                x,
                y,
                width,
                height,
            } => CopyEvent::Damage(x, y, width, height),
            Event::Flags { flags } => CopyEvent::Flags(u32::from(flags)),
            Event::Ready { .. } => CopyEvent::Ready,
            Event::Failed => CopyEvent::Failed,
            _ => return,
        };
        s.copies.entry(frame.id()).or_default().push(event);
    }
}

impl Dispatch<WlKeyboard, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WlKeyboard,
        e: wayland_client::protocol::wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wayland_client::protocol::wl_keyboard::Event::Enter {
            surface, serial, ..
        } = e
        {
            s.keyboard_enters.push(surface.id());
            s.keyboard_enter_serials.push(serial);
        }
    }
}

impl Dispatch<ExtSessionLockV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ExtSessionLockV1,
        e: ext_session_lock_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            ext_session_lock_v1::Event::Locked => s.lock_answer = Some(true),
            ext_session_lock_v1::Event::Finished => s.lock_answer = Some(false),
            _ => {}
        }
    }
}

impl Dispatch<ExtSessionLockSurfaceV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        lock_surface: &ExtSessionLockSurfaceV1,
        e: ext_session_lock_surface_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let ext_session_lock_surface_v1::Event::Configure {
            serial,
            width,
            height,
        } = e
        {
            lock_surface.ack_configure(serial);
            s.lock_configures.push((serial, width, height));
        }
    }
}

impl Dispatch<ExtIdleNotificationV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ExtIdleNotificationV1,
        e: ext_idle_notification_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            ext_idle_notification_v1::Event::Idled => s.idle_events.push(true),
            ext_idle_notification_v1::Event::Resumed => s.idle_events.push(false),
            _ => {}
        }
    }
}

impl Dispatch<ZxdgToplevelDecorationV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZxdgToplevelDecorationV1,
        e: zxdg_toplevel_decoration_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zxdg_toplevel_decoration_v1::Event::Configure { mode } = e {
            s.decoration_modes.push(mode.into());
        }
    }
}

impl Dispatch<ZwlrLayerSurfaceV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        layer: &ZwlrLayerSurfaceV1,
        e: zwlr_layer_surface_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwlr_layer_surface_v1::Event::Configure {
                serial,
                width,
                height,
            } => {
                layer.ack_configure(serial);
                s.layer_configures.push((serial, width, height));
            }
            zwlr_layer_surface_v1::Event::Closed => s.layer_closed = true,
            _ => {}
        }
    }
}

impl Dispatch<WlPointer, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &WlPointer,
        e: wl_pointer::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_pointer::Event::Enter { serial, .. } = e {
            s.pointer_enters.push(serial);
        }
    }
}

impl Dispatch<ZwpKeyboardShortcutsInhibitorV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &ZwpKeyboardShortcutsInhibitorV1,
        e: zwp_keyboard_shortcuts_inhibitor_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match e {
            zwp_keyboard_shortcuts_inhibitor_v1::Event::Active => s.inhibitor_active = true,
            zwp_keyboard_shortcuts_inhibitor_v1::Event::Inactive => s.inhibitor_active = false,
            _ => {}
        }
    }
}

impl Dispatch<XdgActivationTokenV1, ()> for Recorder {
    fn event(
        s: &mut Self,
        _: &XdgActivationTokenV1,
        e: xdg_activation_token_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_activation_token_v1::Event::Done { token } = e {
            s.activation_tokens.push(token);
        }
    }
}
