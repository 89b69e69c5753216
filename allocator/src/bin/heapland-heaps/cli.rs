//! Command line of `heapland-heaps`: options, the help text, exit statuses.
//!
//! The long help is the manual: `allocator/heapland-heaps.1` is written from
//! the same text, and a test checks that every option here appears there.

use std::{fmt, path::PathBuf, str::FromStr};

use clap::{Args, Parser, Subcommand};
use heapland_allocator::{
    drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier},
    format_by_name, DeviceNumber,
};

/// Exit statuses, as `--help` documents them.
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Anything else went wrong: a device sysfs does not know, output that
    /// could not be written.
    pub const FAILURE: u8 = 1;
    /// A bad command line (clap's own status for usage errors).
    pub const USAGE: u8 = 2;
    /// This system has no heap at all.
    pub const NO_HEAPS: u8 = 3;
    /// No heap serves every device given to `for`.
    pub const NO_FIT: u8 = 4;
}

const LONG_ABOUT: &str = "\
Which DMA-BUF heaps this system has, and which one heapland-allocator would \
choose for a set of devices.

A DMA-BUF heap (/dev/dma_heap/NAME) hands out memory that devices can share: \
a camera writes a frame, a GPU or a display reads it, with no copy. Which heap \
to use depends on the devices: some need physically contiguous memory, some can \
only reach memory below 4 GiB. device_heap.ko makes a heap for each kind of \
memory its devices need (system-32bit-contiguous, system-contiguous, \
system-32bit, AREA-contiguous), shared by every device it suits, and publishes \
its guarantees in sysfs; the kernel adds the system heap and, where a CMA area \
exists, CMA heaps; /dev/udmabuf is a last resort. Every device the module \
serves links to the heaps that serve it, best first (its dma_heaps/ directory \
in sysfs), the kernel's heaps included.

heapland-heaps list (the default) shows every heap: its kind, node, backing, \
contiguity, DMA reach, largest allocation, alignment, whether its memory is \
charged to the allocating process's memory cgroup, how much one user may pin \
in it, where its memory comes from, and the devices that link to it: name, \
bus, driver, the heap's rank among the device's heaps, bus path and /dev \
nodes.

heapland-heaps for DEVICE... shows the heap and the buffer layout \
heapland-allocator chooses for a buffer those devices all touch, by the \
library's own code, and why every other heap was passed over. The choice \
follows the links: the first heap in the first DEVICE's order that every \
other DEVICE links to too and that fits the buffer; heaps no DEVICE links to \
are fallbacks after those.";

const AFTER_LONG_HELP: &str = "\
EXAMPLES:
    heapland-heaps
        List every heap of this system.

    heapland-heaps for /dev/video0 /dev/dri/card0 --format NV12 --size 1920x1080
        Which heap a 1080p NV12 buffer shared by a camera and a display
        comes from, its planes, and why the other heaps were passed over.

    heapland-heaps for 226:0 --json
        The same for a device named by its device number, for scripts.

    heapland-heaps --json | jq -r '.heaps[] | select(.accounting == \"memcg\") | .dev_path'
        The heaps whose memory is charged to the allocating process.

EXIT STATUS:
    0   success
    1   another failure: a device sysfs does not know, output that cannot be
        written
    2   bad command line: unknown option, bad --format, --size or --modifier,
        a DEVICE that is neither a character device nor MAJ:MIN
    3   this system has no heaps (no /dev/dma_heap and no /dev/udmabuf, or
        none usable); the message says why
    4   no heap serves every DEVICE given to `for` (or none within a size
        limit, or the modifiers cannot be produced)

FILES:
    /dev/dma_heap/NAME
        The heaps' nodes.
    /dev/udmabuf
        udmabuf, which turns memfd pages into dma-bufs.
    /sys/class/device_heap/NAME/
        A device heap's guarantees: backing, contiguous, coherent,
        dma_mask_bits, max_alloc_bytes, alignment_bytes, contig_source,
        accounting, max_user_bytes; served/BUS:DEVICE links to the devices
        it serves (kernel/ABI.md of heapland).
    /sys/devices/.../DEVICE/dma_heaps/RANK
        The heaps serving a device, best first (0, 1, ...), linking to
        /sys/devices/virtual/device_heap/NAME or, for the kernel's heaps,
        /sys/devices/virtual/dma_heap/NAME.
    /sys/class/dma_heap/NAME/
        Heaps of the kernel's heap core (6.18 and later list every heap).
    /sys/kernel/mm/cma/AREA/
        CMA areas, behind the CMA heaps.
    /sys/module/dma_heap/parameters/mem_accounting
        Y where the system heap charges the allocating process's memory
        cgroup (boot with dma_heap.mem_accounting=1).
    /sys/dev/char/MAJ:MIN
        From a device node to the device; its dma_heaps/, or its nearest
        parent's, lists the heaps that serve it.

JSON OUTPUT:
    --json prints one JSON object (version 2) on standard output, also when
    the exit status is 1, 3 or 4 (then \"error\" says why); usage errors
    (status 2) print text on standard error only.
    list: {\"version\": 2, \"heaps\": [HEAP...], \"skipped\": [{\"name\", \"reason\"}],
           \"error\": ERROR or null}
    for:  {\"version\": 2, \"devices\": [DEVICE...], \"needs\": NEEDS or null,
           \"buffer\": BUFFER or null, \"heap\": HEAP or null,
           \"passed_over\": [{\"name\", \"kind\", \"fits\", \"reasons\": [...]}],
           \"error\": ERROR or null}
    HEAP: {\"name\", \"kind\" (device|system|cma|udmabuf|other), \"dev_path\",
           \"properties_known\" (false for kind other: then backing, contiguous,
           coherent, dma_mask_bits and max_alloc_bytes are null), \"backing\"
           (contig|sg), \"contiguous\", \"coherent\", \"dma_mask_bits\" (null:
           unknown), \"dma_reach\" (for people), \"max_alloc_bytes\" (null: no
           limit but memory), \"alignment_bytes\", \"accounting\" (memcg|none),
           \"max_user_bytes\" (most bytes one user may pin across the module's
           heaps; null: nothing bounds it), \"contig_source\" (sources in the
           order tried, separated by spaces: cma:AREA, buddy, migrate; or
           null), \"served\": [SERVED...]}
    SERVED: {\"bus\", \"name\", \"driver\", \"sysfs_path\", \"rank\" (the heap's
           rank among the device's heaps, 0 the best; null: unknown),
           \"nodes\": [{\"path\", \"dev\", \"sysfs_path\"}]}
    DEVICE: {\"arg\", \"dev\" (MAJ:MIN), \"name\", \"sysfs_path\", \"heaps_from\"
           (the directory whose dma_heaps/ was read, or null), \"heaps\": [NAME...]
           (best first: heaps[RANK]), \"needs\": NEEDS}
    NEEDS: {\"contiguous\", \"dma_mask_bits\", \"coherent\", \"pitch_alignment\",
           \"offset_alignment\", \"base_alignment\"}
    BUFFER: {\"format\", \"fourcc\", \"width\", \"height\", \"modifier\",
           \"planes\": [{\"offset\", \"pitch\", \"size\"}], \"size\", \"alloc_size\"}
    ERROR: {\"status\" (the exit status), \"kind\" (failure|no-heaps|no-fit),
           \"message\"}
    Fields are only ever added within a version.";

/// Which DMA-BUF heaps this system has, and which one heapland-allocator
/// would choose for a set of devices.
#[derive(Debug, Parser)]
#[command(
    name = "heapland-heaps",
    version,
    about = "Which DMA-BUF heaps this system has, and which one heapland-allocator would \
             choose for a set of devices",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    after_help = "See --help for examples, exit statuses and the JSON shape."
)]
pub struct Cli {
    /// What to show (default: list).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
}

/// Options of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON object for scripts instead of text (shape under JSON
    /// OUTPUT in --help).
    #[arg(long, global = true)]
    pub json: bool,

    /// Read sysfs here instead of /sys (for tests on a fake tree).
    #[arg(long, value_name = "DIR", global = true, default_value = "/sys")]
    pub sysfs_root: PathBuf,

    /// Look for device nodes here instead of /dev (for tests on a fake
    /// tree).
    #[arg(long, value_name = "DIR", global = true, default_value = "/dev")]
    pub dev_root: PathBuf,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every heap of the system (the default).
    List,
    /// Show the heap and layout heapland-allocator chooses for a buffer
    /// shared by DEVICE..., and why every other heap was passed over.
    For(For),
}

/// Options of `for`.
#[derive(Debug, Args)]
pub struct For {
    /// The devices that will touch the buffer, in priority order: character
    /// device nodes (/dev/video0, /dev/dri/card0, /dev/dri/renderD128) or
    /// device numbers as MAJ:MIN (226:0). The first device's heap order
    /// decides among the heaps they all link to.
    #[arg(value_name = "DEVICE", required = true)]
    pub devices: Vec<DeviceArg>,

    /// Pixel format, by DRM name or fourcc: XRGB8888, ARGB8888, XBGR8888,
    /// ABGR8888, XRGB2101010, RGB565, NV12, NV16, YUV420, YUYV, P010.
    #[arg(long, value_name = "FORMAT", default_value = "XRGB8888")]
    pub format: FormatArg,

    /// Buffer size in pixels, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "1920x1080")]
    pub size: SizeArg,

    /// A modifier the devices accept: LINEAR, INVALID (implicit) or a
    /// number (0x...); repeatable. Heaps make LINEAR buffers: LINEAR is
    /// chosen when listed or when none is given, INVALID when it is the
    /// only one acceptable.
    #[arg(long = "modifier", value_name = "MODIFIER")]
    pub modifiers: Vec<ModifierArg>,
}

/// A device named on the command line.
#[derive(Debug, Clone)]
pub enum DeviceArg {
    /// A device number given as MAJ:MIN.
    Number(DeviceNumber),
    /// A path to a character device node.
    Path(PathBuf),
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((major, minor)) = s.split_once(':') {
            if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                return Ok(DeviceArg::Number(DeviceNumber::new(major, minor)));
            }
        }
        if s.is_empty() {
            return Err("an empty device".into());
        }
        Ok(DeviceArg::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceArg::Number(n) => write!(f, "{n}"),
            DeviceArg::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A pixel format heapland lays out.
#[derive(Debug, Clone, Copy)]
pub struct FormatArg {
    /// The format.
    pub fourcc: Fourcc,
    /// Its DRM name (`NV12`).
    pub name: &'static str,
}

impl FromStr for FormatArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let info = format_by_name(s).ok_or_else(|| {
            let known: Vec<&str> = heapland_allocator::layout::FORMATS
                .iter()
                .map(|f| f.name)
                .collect();
            format!(
                "unknown format {s:?}; heapland lays out {}",
                known.join(", ")
            )
        })?;
        Ok(FormatArg {
            fourcc: info.fourcc,
            name: info.name,
        })
    }
}

/// WIDTHxHEIGHT, both non-zero.
#[derive(Debug, Clone, Copy)]
pub struct SizeArg {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FromStr for SizeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected WIDTHxHEIGHT such as 1920x1080, got {s:?}");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if width == 0 || height == 0 {
            return Err(format!("width and height must be non-zero, got {s:?}"));
        }
        Ok(SizeArg { width, height })
    }
}

/// A DRM format modifier.
#[derive(Debug, Clone, Copy)]
pub struct ModifierArg(pub Modifier);

impl FromStr for ModifierArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let value = if s.eq_ignore_ascii_case("linear") {
            u64::from(Modifier::Linear)
        } else if s.eq_ignore_ascii_case("invalid") {
            u64::from(Modifier::Invalid)
        } else if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).map_err(|_| format!("bad modifier {s:?}"))?
        } else {
            s.parse().map_err(|_| {
                format!("bad modifier {s:?}: expected LINEAR, INVALID or a number such as 0x0")
            })?
        };
        Ok(ModifierArg(Modifier::from(value)))
    }
}

/// How people write a modifier: `LINEAR`, `INVALID`, else its value in hex.
pub fn modifier_name(m: Modifier) -> String {
    match m {
        Modifier::Linear => "LINEAR".into(),
        Modifier::Invalid => "INVALID".into(),
        other => format!("{:#x}", u64::from(other)),
    }
}
