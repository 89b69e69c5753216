//! Noticing heaps and devices come and go while heapland runs, from the
//! kernel's uevents, so that heap choices follow them.
//!
//! What changes a choice (kernel/ABI.md): a heap made or removed (a
//! `device_heap` or `dma_heap` class device added or removed: the module
//! loaded or unloaded, a device served or not any more), a device's
//! `dma_heaps/` links made again (a "change" uevent with `DMA_HEAPS=1`), or a
//! DRM or V4L2 node coming or going (a device number may now be another
//! device's). Any of these rescans the heaps ([`Heapland::rescan_heaps`])
//! once the burst of uevents is over: one sysfs write may make a heap and
//! relink every served device.
//!
//! The uevents are read from the kernel's own netlink group, not udevd's:
//! heapland may run where no udevd does (a minimal guest, a container), and
//! any process may listen to the kernel's group. A socket that overflowed
//! lost events: it rescans too.

use std::{os::fd::OwnedFd, time::Duration};

use rustix::{
    io::Errno,
    net::{bind, netlink, recv, socket_with, AddressFamily, RecvFlags, SocketFlags, SocketType},
};
use smithay::reexports::calloop::{
    generic::Generic,
    timer::{TimeoutAction, Timer},
    Interest, LoopHandle, Mode, PostAction,
};
use tracing::{debug, info, warn};

use crate::state::Heapland;

/// How long after the last uevent of a burst heapland rescans.
const SETTLE: Duration = Duration::from_millis(100);

/// The kernel's multicast group of `NETLINK_KOBJECT_UEVENT` (udevd
/// re-broadcasts on group 2).
const KERNEL_GROUP: u32 = 1;

/// Largest uevent the kernel sends (`UEVENT_BUFFER_SIZE` of environment
/// and the `ACTION@DEVPATH` header).
const UEVENT_MAX: usize = 8192;

/// One kernel uevent, what of it concerns heaps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent<'a> {
    pub action: &'a str,
    pub subsystem: &'a str,
    /// `DMA_HEAPS=1`: the device's `dma_heaps/` links changed.
    pub dma_heaps: bool,
}

impl<'a> Uevent<'a> {
    /// Parses a kernel uevent datagram: `ACTION@DEVPATH`, then `KEY=VALUE`
    /// strings, each ended by a NUL. `None` for anything else (udevd's
    /// messages start with `libudev`).
    pub fn parse(datagram: &'a [u8]) -> Option<Uevent<'a>> {
        let mut fields = datagram
            .split(|b| *b == 0)
            .filter_map(|f| std::str::from_utf8(f).ok());
        let header = fields.next()?;
        let (action, _devpath) = header.split_once('@')?;
        let mut event = Uevent {
            action,
            ..Uevent::default()
        };
        for field in fields {
            match field.split_once('=') {
                Some(("SUBSYSTEM", value)) => event.subsystem = value,
                Some(("DMA_HEAPS", "1")) => event.dma_heaps = true,
                _ => {}
            }
        }
        Some(event)
    }

    /// Whether the event may change which heap serves which devices
    /// (module docs).
    pub fn concerns_heaps(&self) -> bool {
        let comes_or_goes = matches!(self.action, "add" | "remove");
        self.dma_heaps
            || matches!(self.subsystem, "device_heap" | "dma_heap")
            || (comes_or_goes && matches!(self.subsystem, "drm" | "video4linux"))
    }
}

/// Watches the kernel's uevents on `handle`'s loop and rescans heaps after
/// each burst that concerns them.
pub fn watch(handle: &LoopHandle<'static, Heapland>) -> Result<(), String> {
    let socket = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(netlink::KOBJECT_UEVENT),
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    bind(&socket, &netlink::SocketAddrNetlink::new(0, KERNEL_GROUP))
        .map_err(|e| format!("binding to the kernel's uevent group: {e}"))?;
    handle
        .insert_source(
            Generic::new(socket, Interest::READ, Mode::Level),
            |_, socket, state| {
                if read_uevents(socket) {
                    state.schedule_heap_rescan();
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| format!("watching uevents: {e}"))?;
    Ok(())
}

/// Reads every uevent queued; whether one concerns heaps.
fn read_uevents(socket: &OwnedFd) -> bool {
    let mut buf = vec![0u8; UEVENT_MAX];
    let mut concerns = false;
    loop {
        match recv(socket, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((len, _)) => {
                let datagram = &buf[..len.min(buf.len())];
                if let Some(event) = Uevent::parse(datagram).filter(Uevent::concerns_heaps) {
                    debug!(?event, "uevent");
                    concerns = true;
                }
            }
            Err(Errno::AGAIN) => return concerns,
            Err(Errno::NOBUFS) => {
                debug!("uevents were lost (the socket overflowed): rescanning heaps");
                concerns = true;
            }
            Err(Errno::INTR) => {}
            Err(err) => {
                warn!("reading uevents: {err}");
                return concerns;
            }
        }
    }
}

impl Heapland {
    /// Rescans heaps [`SETTLE`] from now, unless a rescan is pending.
    pub fn schedule_heap_rescan(&mut self) {
        if self.heap_rescan_pending {
            return;
        }
        let scheduled =
            self.loop_handle
                .insert_source(Timer::from_duration(SETTLE), |_, _, state| {
                    state.heap_rescan_pending = false;
                    state.rescan_heaps();
                    TimeoutAction::Drop
                });
        match scheduled {
            Ok(_) => self.heap_rescan_pending = true,
            Err(err) => {
                warn!("cannot schedule a heap rescan ({err}): rescanning now");
                self.rescan_heaps();
            }
        }
    }

    /// Scans heaps again, tells heap feedback objects of the heaps gone
    /// and sends every heap batch again.
    pub fn rescan_heaps(&mut self) {
        let gone = self.heaps.rescan();
        info!(
            gone = ?gone,
            "heaps or their devices changed: DMA-BUF heaps now {}",
            self.heaps.names().join(", ")
        );
        crate::heap_protocol_v2::remove_heaps(self, &gone);
        crate::heap_protocol::resend_all(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_removed_is_parsed_and_concerns_heaps() {
        let msg = b"remove@/devices/virtual/device_heap/system-32bit\0ACTION=remove\0\
DEVPATH=/devices/virtual/device_heap/system-32bit\0SUBSYSTEM=device_heap\0\
MAJOR=250\0MINOR=1\0DEVNAME=dma_heap/system-32bit\0SEQNUM=2345\0";
        let event = Uevent::parse(msg).unwrap();
        assert_eq!(
            event,
            Uevent {
                action: "remove",
                subsystem: "device_heap",
                dma_heaps: false
            }
        );
        assert!(event.concerns_heaps());
    }

    #[test]
    fn relinked_devices_concern_heaps_other_changes_do_not() {
        let relinked = b"change@/devices/platform/vivid.0\0ACTION=change\0\
DEVPATH=/devices/platform/vivid.0\0SUBSYSTEM=platform\0DMA_HEAPS=1\0SEQNUM=7\0";
        assert!(Uevent::parse(relinked).unwrap().concerns_heaps());
        // A connector hot-plug: a "change" of the card.
        let hotplug = b"change@/devices/faux/vkms/drm/card0\0ACTION=change\0\
SUBSYSTEM=drm\0HOTPLUG=1\0SEQNUM=8\0";
        assert!(!Uevent::parse(hotplug).unwrap().concerns_heaps());
        let usb = b"add@/devices/pci0000:00/usb1/1-1\0ACTION=add\0SUBSYSTEM=usb\0SEQNUM=9\0";
        assert!(!Uevent::parse(usb).unwrap().concerns_heaps());
    }

    #[test]
    fn nodes_coming_and_going_concern_heaps() {
        for (msg, concerns) in [
            (
                &b"add@/devices/platform/vivid.0/video4linux/video3\0SUBSYSTEM=video4linux\0"[..],
                true,
            ),
            (
                &b"remove@/devices/faux/vgem/drm/renderD128\0SUBSYSTEM=drm\0"[..],
                true,
            ),
            (
                &b"add@/devices/virtual/dma_heap/system\0SUBSYSTEM=dma_heap\0"[..],
                true,
            ),
            (
                &b"bind@/devices/platform/vivid.0\0SUBSYSTEM=platform\0"[..],
                false,
            ),
        ] {
            let event = Uevent::parse(msg).unwrap();
            assert_eq!(event.concerns_heaps(), concerns, "{event:?}");
        }
    }

    #[test]
    fn udevd_messages_and_garbage_are_not_uevents() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"\xff\xff@x\0SUBSYSTEM=drm\0"), None);
    }
}
