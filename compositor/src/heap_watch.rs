//! Noticing heaps and devices come and go while heapland runs, from
//! uevents, so that heap choices follow them.
//!
//! What changes a choice (kernel/ABI.md): a heap made or removed (a
//! `device_heap` or `dma_heap` class device added or removed: the module
//! loaded or unloaded, a device served or not any more), a device's
//! `dma_heaps/` links changed (a "change" uevent with `DMA_HEAPS=1`), a
//! device bound, unbound, added or removed (a device number may now be
//! another device's). Any of these rescans the heaps
//! ([`Heapland::rescan_heaps`]) once the burst of uevents is over (one
//! sysfs write may make a heap and relink several devices); batches are
//! sent again only if the rescan found a change.
//!
//! Where udevd runs, heapland listens to what udevd sends once its rules
//! ran: a new heap's node then has the permissions and ACLs the rules give
//! it, so heapland (running as the seat's user) can open it. Elsewhere (a
//! minimal guest, a container) it listens to the kernel's own group. Only
//! root may send to either group. A socket that overflowed lost events: it
//! rescans too.

use std::{
    os::fd::OwnedFd,
    path::Path,
    time::{Duration, Instant},
};

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

/// The multicast groups of `NETLINK_KOBJECT_UEVENT`: the kernel's, and
/// udevd's (events after its rules ran).
const KERNEL_GROUP: u32 = 1;
const UDEV_GROUP: u32 = 2;

/// Where udevd listens for control messages while it runs.
const UDEVD_CONTROL: &str = "/run/udev/control";

/// Largest uevent: the kernel's `UEVENT_BUFFER_SIZE` of environment and
/// the `ACTION@DEVPATH` header; udevd's are smaller than its own 8 KiB
/// buffer too.
const UEVENT_MAX: usize = 8192;

/// udevd's messages: "libudev\0", a big-endian magic, then (host order)
/// the header's size and where the properties are.
const UDEV_PREFIX: &[u8] = b"libudev\0";
const UDEV_MAGIC: u32 = 0xfeed_cafe;

/// One uevent, what of it concerns heaps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent<'a> {
    pub action: &'a str,
    pub subsystem: &'a str,
    /// `DMA_HEAPS=1`: the device's `dma_heaps/` links changed.
    pub dma_heaps: bool,
}

impl<'a> Uevent<'a> {
    /// Parses a uevent datagram: the kernel's (`ACTION@DEVPATH`, then
    /// `KEY=VALUE` strings, each ended by a NUL) or udevd's (a header,
    /// then the same strings). `None` for anything else.
    pub fn parse(datagram: &'a [u8]) -> Option<Uevent<'a>> {
        let (action, properties) = match datagram.strip_prefix(UDEV_PREFIX) {
            Some(_) => (None, udev_properties(datagram)?),
            None => {
                let end = datagram.iter().position(|b| *b == 0)?;
                let header = std::str::from_utf8(&datagram[..end]).ok()?;
                let (action, _devpath) = header.split_once('@')?;
                (Some(action), &datagram[end + 1..])
            }
        };
        let mut event = Uevent {
            action: action.unwrap_or_default(),
            ..Uevent::default()
        };
        let fields = properties
            .split(|b| *b == 0)
            .filter_map(|f| std::str::from_utf8(f).ok());
        for field in fields {
            match field.split_once('=') {
                Some(("ACTION", value)) if action.is_none() => event.action = value,
                Some(("SUBSYSTEM", value)) => event.subsystem = value,
                Some(("DMA_HEAPS", "1")) => event.dma_heaps = true,
                _ => {}
            }
        }
        (!event.action.is_empty()).then_some(event)
    }

    /// Whether the event may change which heap serves which devices
    /// (module docs).
    pub fn concerns_heaps(&self) -> bool {
        self.dma_heaps
            || matches!(self.subsystem, "device_heap" | "dma_heap")
            || matches!(self.action, "add" | "remove" | "bind" | "unbind")
    }
}

/// The properties of a udevd message, checked against its header.
fn udev_properties(datagram: &[u8]) -> Option<&[u8]> {
    let word = |at: usize| -> Option<[u8; 4]> { datagram.get(at..at + 4)?.try_into().ok() };
    if u32::from_be_bytes(word(8)?) != UDEV_MAGIC {
        return None;
    }
    let off = usize::try_from(u32::from_ne_bytes(word(16)?)).ok()?;
    let len = usize::try_from(u32::from_ne_bytes(word(20)?)).ok()?;
    datagram.get(off..off.checked_add(len)?)
}

/// Watches uevents on `handle`'s loop and rescans heaps after each burst
/// that concerns them.
pub fn watch(handle: &LoopHandle<'static, Heapland>) -> Result<(), String> {
    let (group, source) = match Path::new(UDEVD_CONTROL).exists() {
        true => (UDEV_GROUP, "udevd's"),
        false => (KERNEL_GROUP, "the kernel's"),
    };
    let socket = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(netlink::KOBJECT_UEVENT),
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    bind(&socket, &netlink::SocketAddrNetlink::new(0, group))
        .map_err(|e| format!("binding to {source} uevent group: {e}"))?;
    handle
        .insert_source(
            Generic::new(socket, Interest::READ, Mode::Level),
            |_, socket, state| {
                let read = read_uevents(socket);
                if read.concerns_heaps {
                    state.schedule_heap_rescan();
                }
                Ok(match read.failed {
                    false => PostAction::Continue,
                    true => PostAction::Remove,
                })
            },
        )
        .map_err(|e| format!("watching uevents: {e}"))?;
    info!("following heaps and devices through {source} uevents");
    Ok(())
}

/// What one read of the socket found.
struct Read {
    concerns_heaps: bool,
    /// The socket failed for good: heaps are not followed any more.
    failed: bool,
}

/// Reads every uevent queued.
fn read_uevents(socket: &OwnedFd) -> Read {
    let mut buf = vec![0u8; UEVENT_MAX];
    let mut read = Read {
        concerns_heaps: false,
        failed: false,
    };
    loop {
        // TRUNC: the length returned is the datagram's, even if longer.
        match recv(socket, &mut buf[..], RecvFlags::DONTWAIT | RecvFlags::TRUNC) {
            Ok((len, _)) if len > buf.len() => {
                debug!("a uevent of {len} bytes was cut short: rescanning heaps");
                read.concerns_heaps = true;
            }
            Ok((len, _)) => {
                if let Some(event) = Uevent::parse(&buf[..len]).filter(Uevent::concerns_heaps) {
                    debug!(?event, "uevent");
                    read.concerns_heaps = true;
                }
            }
            Err(Errno::AGAIN) => return read,
            Err(Errno::NOBUFS) => {
                debug!("uevents were lost (the socket overflowed): rescanning heaps");
                read.concerns_heaps = true;
            }
            Err(Errno::INTR) => {}
            Err(err) => {
                warn!("reading uevents: {err}; heaps coming and going are not followed any more");
                read.failed = true;
                return read;
            }
        }
    }
}

impl Heapland {
    /// Rescans heaps [`SETTLE`] after the last uevent of a burst.
    pub fn schedule_heap_rescan(&mut self) {
        let due = Instant::now() + SETTLE;
        if self.heap_rescan_due.replace(due).is_some() {
            // The timer pending finds the new time.
            return;
        }
        let scheduled =
            self.loop_handle
                .insert_source(Timer::from_duration(SETTLE), |_, _, state| {
                    match state.heap_rescan_due {
                        Some(due) if due > Instant::now() => TimeoutAction::ToInstant(due),
                        _ => {
                            state.heap_rescan_due = None;
                            state.rescan_heaps();
                            TimeoutAction::Drop
                        }
                    }
                });
        if let Err(err) = scheduled {
            warn!("cannot schedule a heap rescan ({err}): rescanning now");
            self.heap_rescan_due = None;
            self.rescan_heaps();
        }
    }

    /// Scans heaps again; if anything changed, tells heap feedback objects
    /// of the heaps gone and sends every heap batch again.
    pub fn rescan_heaps(&mut self) {
        let rescan = self.heaps.rescan();
        if !rescan.changed {
            debug!("heaps rescanned: no change");
            return;
        }
        info!(
            gone = ?rescan.gone,
            "heaps or their devices changed: DMA-BUF heaps now {}",
            self.heaps.names().join(", ")
        );
        crate::heap_protocol_v2::remove_heaps(self, &rescan.gone);
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
        let battery = b"change@/devices/LNXSYSTM:00/PNP0C0A:00/power_supply/BAT0\0\
ACTION=change\0SUBSYSTEM=power_supply\0SEQNUM=9\0";
        assert!(!Uevent::parse(battery).unwrap().concerns_heaps());
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
                &b"unbind@/devices/platform/vivid.0\0SUBSYSTEM=platform\0"[..],
                true,
            ),
            (
                &b"change@/devices/platform/vivid.0\0SUBSYSTEM=platform\0"[..],
                false,
            ),
        ] {
            let event = Uevent::parse(msg).unwrap();
            assert_eq!(event.concerns_heaps(), concerns, "{event:?}");
        }
    }

    /// A udevd message: its header (40 bytes), then the properties.
    fn udev_message(properties: &[u8], magic: u32) -> Vec<u8> {
        let mut m = b"libudev\0".to_vec();
        m.extend_from_slice(&magic.to_be_bytes());
        for word in [40u32, 40, properties.len() as u32, 0, 0, 0, 0] {
            m.extend_from_slice(&word.to_ne_bytes());
        }
        m.extend_from_slice(properties);
        m
    }

    #[test]
    fn udevd_messages_are_parsed_from_their_properties() {
        let props = b"ACTION=change\0DEVPATH=/devices/platform/vivid.0\0\
SUBSYSTEM=platform\0DMA_HEAPS=1\0SEQNUM=12\0";
        let message = udev_message(props, UDEV_MAGIC);
        assert_eq!(
            Uevent::parse(&message),
            Some(Uevent {
                action: "change",
                subsystem: "platform",
                dma_heaps: true
            })
        );
        assert_eq!(Uevent::parse(&udev_message(props, 0xdead_beef)), None);
        // Properties beyond the datagram.
        let mut short = udev_message(props, UDEV_MAGIC);
        short.truncate(50);
        assert_eq!(Uevent::parse(&short), None);
    }

    #[test]
    fn garbage_is_not_a_uevent() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"\xff\xff@x\0SUBSYSTEM=drm\0"), None);
        assert_eq!(Uevent::parse(b"no header\0SUBSYSTEM=drm\0"), None);
    }
}
