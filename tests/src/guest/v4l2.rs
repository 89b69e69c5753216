//! The slice of the V4L2 uapi (`<linux/videodev2.h>`) the capture tests use, as repr(C)
//! structs with the x86_64 layout, driven through rustix ioctls.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, Getter, Opcode, Setter, Updater};

pub const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const MEMORY_MMAP: u32 = 1;
pub const MEMORY_DMABUF: u32 = 4;
pub const FIELD_NONE: u32 = 1;
pub const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const CAP_STREAMING: u32 = 0x0400_0000;

pub const fn fourcc(s: &[u8; 4]) -> u32 {
    (s[0] as u32) | (s[1] as u32) << 8 | (s[2] as u32) << 16 | (s[3] as u32) << 24
}
pub const PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
pub const PIX_FMT_XBGR32: u32 = fourcc(b"XR24");

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format`: the union is 200 bytes, at offset 8 on 64-bit, 4 on 32-bit
/// (it holds pointers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Format {
    pub type_: u32,
    /// The union holds pointers: 8-aligned on 64-bit only.
    #[cfg(target_pointer_width = "64")]
    pub pad: u32,
    pub pix: PixFormat,
    pub rest: [u8; 200 - 48],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestBuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct v4l2_buffer` with a 64-bit timeval (16 bytes, 8-aligned), as 64-bit kernels
/// and 32-bit kernels for time64 userspace take it; the `m` union is an
/// `unsigned long`: 88 bytes on 64-bit, 80 on 32-bit (armhf).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub pad0: u32,
    pub tv_sec: i64,
    pub tv_usec: i64,
    pub timecode: [u32; 4],
    pub sequence: u32,
    pub memory: u32,
    /// union { offset; userptr; planes; fd }: fd/offset in the low 32 bits.
    pub m: usize,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
    #[cfg(target_pointer_width = "64")]
    pub pad1: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportBuffer {
    pub type_: u32,
    pub index: u32,
    pub plane: u32,
    pub flags: u32,
    pub fd: i32,
    pub reserved: [u32; 11],
}

/// struct v4l2_control.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Control {
    pub id: u32,
    pub value: i32,
}

/// vivid's "Timestamp Source" control: 0 end of frame, 1 start of exposure.
pub const VIVID_CID_TSTAMP_SRC: u32 = 0x00f0_f000 + 24;

const _: () = assert!(std::mem::size_of::<Capability>() == 104);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Format>() == 208);
#[cfg(target_pointer_width = "32")]
const _: () = assert!(std::mem::size_of::<Format>() == 204);
const _: () = assert!(std::mem::size_of::<RequestBuffers>() == 20);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Buffer>() == 88);
#[cfg(target_pointer_width = "32")]
const _: () = assert!(std::mem::size_of::<Buffer>() == 80);
const _: () = assert!(std::mem::size_of::<ExportBuffer>() == 64);

const VIDIOC_QUERYCAP: Opcode = opcode::read::<Capability>(b'V', 0);
const VIDIOC_G_FMT: Opcode = opcode::read_write::<Format>(b'V', 4);
const VIDIOC_S_FMT: Opcode = opcode::read_write::<Format>(b'V', 5);
const VIDIOC_REQBUFS: Opcode = opcode::read_write::<RequestBuffers>(b'V', 8);
const VIDIOC_QUERYBUF: Opcode = opcode::read_write::<Buffer>(b'V', 9);
const VIDIOC_QBUF: Opcode = opcode::read_write::<Buffer>(b'V', 15);
const VIDIOC_EXPBUF: Opcode = opcode::read_write::<ExportBuffer>(b'V', 16);
const VIDIOC_DQBUF: Opcode = opcode::read_write::<Buffer>(b'V', 17);
const VIDIOC_STREAMON: Opcode = opcode::write::<i32>(b'V', 18);
const VIDIOC_STREAMOFF: Opcode = opcode::write::<i32>(b'V', 19);
const VIDIOC_S_CTRL: Opcode = opcode::read_write::<Control>(b'V', 28);

pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// An open V4L2 video node.
pub struct Video {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl AsFd for Video {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Video {
    pub fn open(path: &Path) -> Result<Self, String> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| format!("open {}: {e}", path.display()))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn querycap(&self) -> Result<Capability, Errno> {
        // SAFETY: Capability matches struct v4l2_capability.
        unsafe { ioctl(&self.fd, Getter::<VIDIOC_QUERYCAP, Capability>::new()) }
    }

    /// Driver name from QUERYCAP.
    pub fn driver(&self) -> Result<String, String> {
        let c = self
            .querycap()
            .map_err(|e| format!("VIDIOC_QUERYCAP: {e}"))?;
        Ok(cstr(&c.driver))
    }

    /// S_FMT for single-planar capture; returns what the driver chose.
    pub fn set_format(
        &self,
        width: u32,
        height: u32,
        pixelformat: u32,
    ) -> Result<PixFormat, String> {
        let mut f = Format {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            #[cfg(target_pointer_width = "64")]
            pad: 0,
            pix: PixFormat {
                width,
                height,
                pixelformat,
                field: FIELD_NONE,
                ..Default::default()
            },
            rest: [0; 152],
        };
        // SAFETY: Format matches struct v4l2_format on x86_64.
        unsafe { ioctl(&self.fd, Updater::<VIDIOC_S_FMT, Format>::new(&mut f)) }
            .map_err(|e| format!("VIDIOC_S_FMT {width}x{height}: {e}"))?;
        Ok(f.pix)
    }

    pub fn get_format(&self) -> Result<PixFormat, String> {
        let mut f = Format {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            #[cfg(target_pointer_width = "64")]
            pad: 0,
            pix: PixFormat::default(),
            rest: [0; 152],
        };
        // SAFETY: as above.
        unsafe { ioctl(&self.fd, Updater::<VIDIOC_G_FMT, Format>::new(&mut f)) }
            .map_err(|e| format!("VIDIOC_G_FMT: {e}"))?;
        Ok(f.pix)
    }

    /// REQBUFS; returns the count the driver granted.
    pub fn reqbufs(&self, count: u32, memory: u32) -> Result<u32, String> {
        let mut r = RequestBuffers {
            count,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory,
            ..Default::default()
        };
        // SAFETY: RequestBuffers matches struct v4l2_requestbuffers.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<VIDIOC_REQBUFS, RequestBuffers>::new(&mut r),
            )
        }
        .map_err(|e| format!("VIDIOC_REQBUFS count={count} memory={memory}: {e}"))?;
        Ok(r.count)
    }

    /// REQBUFS, retried for up to two seconds while the queue is busy (EBUSY:
    /// the camera's last user has not let go of its buffers yet).
    pub fn reqbufs_when_free(&self, count: u32, memory: u32) -> Result<u32, String> {
        let mut tries = 0;
        loop {
            match self.reqbufs(count, memory) {
                Err(e) if e.contains("os error 16") && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn buf_ioctl<const OP: Opcode>(&self, b: &mut Buffer) -> Result<(), Errno> {
        // SAFETY: Buffer matches struct v4l2_buffer on x86_64.
        unsafe { ioctl(&self.fd, Updater::<OP, Buffer>::new(b)) }
    }

    /// QBUF of buffer `index` backed by the dma-buf `fd` of `length` bytes.
    pub fn qbuf_dmabuf(&self, index: u32, fd: BorrowedFd<'_>, length: u32) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let mut b = Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory: MEMORY_DMABUF,
            m: fd.as_raw_fd() as u32 as usize,
            length,
            ..Default::default()
        };
        self.buf_ioctl::<VIDIOC_QBUF>(&mut b)
            .map_err(|e| format!("VIDIOC_QBUF dmabuf index {index}: {e}"))
    }

    pub fn qbuf_mmap(&self, index: u32) -> Result<(), String> {
        let mut b = Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory: MEMORY_MMAP,
            ..Default::default()
        };
        self.buf_ioctl::<VIDIOC_QBUF>(&mut b)
            .map_err(|e| format!("VIDIOC_QBUF mmap index {index}: {e}"))
    }

    pub fn querybuf(&self, index: u32, memory: u32) -> Result<Buffer, String> {
        let mut b = Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory,
            ..Default::default()
        };
        self.buf_ioctl::<VIDIOC_QUERYBUF>(&mut b)
            .map_err(|e| format!("VIDIOC_QUERYBUF {index}: {e}"))?;
        Ok(b)
    }

    /// Waits up to `timeout_ms` for a filled buffer and dequeues it.
    pub fn dqbuf(&self, memory: u32, timeout_ms: i32) -> Result<Buffer, String> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: (timeout_ms / 1000) as i64,
            tv_nsec: ((timeout_ms % 1000) as i64) * 1_000_000,
        };
        let n = poll(&mut fds, Some(&ts)).map_err(|e| format!("poll: {e}"))?;
        if n == 0 {
            return Err(format!("no frame within {timeout_ms} ms"));
        }
        let mut b = Buffer {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory,
            ..Default::default()
        };
        self.buf_ioctl::<VIDIOC_DQBUF>(&mut b)
            .map_err(|e| format!("VIDIOC_DQBUF: {e}"))?;
        Ok(b)
    }

    pub fn expbuf(&self, index: u32) -> Result<OwnedFd, String> {
        let mut e = ExportBuffer {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            index,
            flags: 0o2 | 0o2_000_000,
            ..Default::default()
        };
        // SAFETY: ExportBuffer matches struct v4l2_exportbuffer.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<VIDIOC_EXPBUF, ExportBuffer>::new(&mut e),
            )
        }
        .map_err(|e| format!("VIDIOC_EXPBUF {index}: {e}"))?;
        // SAFETY: the kernel returned a new fd.
        Ok(unsafe { OwnedFd::from_raw_fd(e.fd) })
    }

    /// VIDIOC_S_CTRL.
    pub fn set_control(&self, id: u32, value: i32) -> Result<(), String> {
        let mut c = Control { id, value };
        // SAFETY: Control matches struct v4l2_control.
        unsafe { ioctl(&self.fd, Updater::<VIDIOC_S_CTRL, Control>::new(&mut c)) }
            .map_err(|e| format!("VIDIOC_S_CTRL {id:#x}={value}: {e}"))
    }

    pub fn streamon(&self) -> Result<(), String> {
        // SAFETY: the argument is an int buffer type.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<VIDIOC_STREAMON, i32>::new(BUF_TYPE_VIDEO_CAPTURE as i32),
            )
        }
        .map_err(|e| format!("VIDIOC_STREAMON: {e}"))
    }

    pub fn streamoff(&self) -> Result<(), String> {
        // SAFETY: as above.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<VIDIOC_STREAMOFF, i32>::new(BUF_TYPE_VIDEO_CAPTURE as i32),
            )
        }
        .map_err(|e| format!("VIDIOC_STREAMOFF: {e}"))
    }
}

/// The first /dev/videoN of `driver` that does single-planar streaming capture.
pub fn find_capture(driver: &str) -> Result<(PathBuf, Video), String> {
    let mut nodes: Vec<PathBuf> = fs::read_dir("/dev")
        .map_err(|e| format!("/dev: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    nodes.sort_by_key(|p| {
        p.to_string_lossy()
            .trim_start_matches("/dev/video")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    let mut seen = Vec::new();
    for p in nodes {
        let v = Video::open(&p)?;
        let c = v
            .querycap()
            .map_err(|e| format!("QUERYCAP {}: {e}", p.display()))?;
        let caps = c.device_caps;
        seen.push(format!("{}={}:{caps:#x}", p.display(), cstr(&c.driver)));
        if cstr(&c.driver) == driver && caps & CAP_VIDEO_CAPTURE != 0 && caps & CAP_STREAMING != 0 {
            return Ok((p, v));
        }
    }
    Err(format!(
        "no {driver} capture node (seen: {})",
        seen.join(" ")
    ))
}
