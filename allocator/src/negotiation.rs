//! From linux-dmabuf v4 feedback to a heap, a format, a modifier and a layout.
//!
//! The compositor sends tranches in its order of preference; the scanout
//! tranche, when there is one, lets a buffer go to a plane without a copy.
//! A tranche can be used when some heap satisfies every device that will
//! touch the buffer (its target device, the main device that composites it
//! when it is not scanned out, and any extra device of the request), and it
//! offers a wanted format with a modifier heaps can produce: heaps produce
//! linear memory, so `LINEAR`, or `INVALID` (implicit) when the tranche
//! accepts it and no CPU access depends on knowing the layout.

use drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier};

use crate::{
    constraints::{intersect, Constraints, Intersection, Ranking},
    device::{DeviceInfo, DeviceNumber},
    discovery::{Discovery, HeapInfo},
    layout::{Alignment, Layout},
    Error, Result,
};

/// One entry of the feedback's format table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormatEntry {
    /// DRM fourcc code.
    pub format: u32,
    /// DRM format modifier.
    pub modifier: u64,
}

/// `ZWP_LINUX_DMABUF_FEEDBACK_V1_TRANCHE_FLAGS_SCANOUT`.
pub const TRANCHE_FLAG_SCANOUT: u32 = 1;

/// `ZWP_LINUX_DMABUF_FEEDBACK_V1_TRANCHE_FLAGS_SAMPLING` (version 6).
pub const TRANCHE_FLAG_SAMPLING: u32 = 2;

/// One feedback tranche.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tranche {
    /// The device the buffer goes to in this tranche.
    pub target_device: DeviceNumber,
    /// Format/modifier pairs the tranche accepts.
    pub formats: Vec<FormatEntry>,
    /// The tranche is for direct scanout.
    pub scanout: bool,
}

/// Complete linux-dmabuf feedback (version 4 or later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The compositor's main (compositing) device: `main_device` before
    /// version 6, the target of the first sampling tranche from version 6
    /// on (which deprecates `main_device` for it).
    pub main_device: DeviceNumber,
    /// Tranches in the compositor's order of preference.
    pub tranches: Vec<Tranche>,
}

/// One tranche as the protocol sends it, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct WireTranche<'a> {
    /// `tranche_target_device`: a `dev_t` array.
    pub target_device: &'a [u8],
    /// `tranche_formats`: native-endian u16 indices into the format table.
    pub formats: &'a [u8],
    /// `tranche_flags`.
    pub flags: u32,
}

impl Feedback {
    /// Decodes feedback as received on the wire: the `main_device` array
    /// (empty from version 6 on, which sends none), the mapped format
    /// table (16 bytes per entry: u32 format, 4 bytes padding, u64
    /// modifier, native endian) and the tranches. Malformed sizes and
    /// out-of-range indices are errors, never panics; so is feedback with
    /// neither a main device nor a sampling tranche.
    pub fn from_wire(
        main_device: &[u8],
        format_table: &[u8],
        tranches: &[WireTranche<'_>],
    ) -> Result<Self> {
        if !format_table.chunks_exact(16).remainder().is_empty() {
            return Err(Error::BadFeedback(format!(
                "format table of {} bytes is not a multiple of 16",
                format_table.len()
            )));
        }
        let table: Vec<FormatEntry> = format_table
            .chunks_exact(16)
            .map(|e| FormatEntry {
                format: u32::from_ne_bytes([e[0], e[1], e[2], e[3]]),
                modifier: u64::from_ne_bytes([
                    e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15],
                ]),
            })
            .collect();
        let mut out = Vec::with_capacity(tranches.len());
        for (n, t) in tranches.iter().enumerate() {
            if !t.formats.chunks_exact(2).remainder().is_empty() {
                return Err(Error::BadFeedback(format!(
                    "tranche {n}: formats array of odd length {}",
                    t.formats.len()
                )));
            }
            let mut formats = Vec::with_capacity(t.formats.len() / 2);
            for idx in t.formats.chunks_exact(2) {
                let idx = usize::from(u16::from_ne_bytes([idx[0], idx[1]]));
                let entry = table.get(idx).ok_or_else(|| {
                    Error::BadFeedback(format!(
                        "tranche {n}: index {idx} beyond the format table of {} entries",
                        table.len()
                    ))
                })?;
                formats.push(*entry);
            }
            out.push(Tranche {
                target_device: DeviceNumber::from_feedback_bytes(t.target_device)?,
                formats,
                scanout: t.flags & TRANCHE_FLAG_SCANOUT != 0,
            });
        }
        let main_device = if main_device.is_empty() {
            // Version 6: the most preferred sampling device composites.
            let sampling = tranches
                .iter()
                .zip(&out)
                .find(|(wire, _)| wire.flags & TRANCHE_FLAG_SAMPLING != 0)
                .map(|(_, t)| t.target_device);
            sampling.ok_or_else(|| {
                Error::BadFeedback("neither a main_device nor a sampling tranche".into())
            })?
        } else {
            DeviceNumber::from_feedback_bytes(main_device)?
        };
        Ok(Feedback {
            main_device,
            tranches: out,
        })
    }
}

/// What the buffer will be used for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// It should be scanned out directly: scanout tranches are tried first.
    pub scanout: bool,
    /// A GPU renders into or samples from it.
    pub render: bool,
    /// A camera or decoder writes it (pass that device in
    /// [`Request::extra_devices`]).
    pub capture: bool,
    /// The CPU reads or writes it: only `LINEAR` is acceptable, since with
    /// an implicit modifier the CPU cannot know the layout.
    pub cpu: bool,
}

/// A buffer to negotiate for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Formats the producer can write, most preferred first.
    pub formats: Vec<Fourcc>,
    /// How it will be used.
    pub usage: Usage,
    /// Devices beyond the feedback's that touch the buffer (e.g. a camera).
    pub extra_devices: Vec<DeviceNumber>,
    /// Needs that sysfs cannot tell (pitch alignment, maximum sizes), added
    /// to the intersection as they are.
    pub extra_constraints: Vec<Constraints>,
}

impl Request {
    /// A request for `width` x `height` in one of `formats`, no extras.
    pub fn new(width: u32, height: u32, formats: Vec<Fourcc>, usage: Usage) -> Self {
        Self {
            width,
            height,
            formats,
            usage,
            extra_devices: Vec::new(),
            extra_constraints: Vec::new(),
        }
    }
}

/// The outcome of a negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The heap to allocate from.
    pub heap: HeapInfo,
    /// The format.
    pub fourcc: Fourcc,
    /// `LINEAR`, or `INVALID` when the tranche takes implicit modifiers only.
    pub modifier: Modifier,
    /// Planes and size.
    pub layout: Layout,
    /// Index of the chosen tranche in the feedback.
    pub tranche: usize,
    /// The chosen tranche is a scanout tranche.
    pub scanout: bool,
    /// The devices that take part.
    pub devices: Vec<DeviceInfo>,
    /// Their intersected needs.
    pub intersection: Intersection,
    /// Why each tranche tried before the chosen one was passed over (the
    /// fallback path).
    pub passed_over: Vec<String>,
}

/// The needs of a set of devices, resolved through `discovery`.
pub fn device_constraints(discovery: &Discovery, devices: &[DeviceInfo]) -> Vec<Constraints> {
    devices
        .iter()
        .map(|d| Constraints::for_device(d, &discovery.heaps_serving(d)))
        .collect()
}

/// Resolves `numbers` (deduplicated, order kept).
pub fn resolve_devices(discovery: &Discovery, numbers: &[DeviceNumber]) -> Result<Vec<DeviceInfo>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for n in numbers {
        if seen.contains(n) {
            continue;
        }
        seen.push(*n);
        out.push(discovery.resolve(*n)?);
    }
    Ok(out)
}

/// A choice of heap with everything behind it: the layout, the devices'
/// intersected needs, and the verdict on every heap. What [`choose`] decides
/// from, so that a tool explaining a choice and the choice itself cannot
/// disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained<'a> {
    /// Planes and size of the buffer.
    pub layout: Layout,
    /// The devices' intersected needs.
    pub intersection: Intersection,
    /// Every heap of the discovery, chosen, outranked or unfit, and why.
    pub ranking: Ranking<'a>,
}

impl<'a> Explained<'a> {
    /// The chosen heap, or the error [`choose`] gives when none fits.
    pub fn heap(&self) -> Result<&'a HeapInfo> {
        self.intersection.pick(&self.ranking)
    }

    /// An allocator of the chosen heap, with the devices' alignments: every
    /// buffer it makes comes from that heap, so a swapchain made with it
    /// never mixes memories. Fails as [`Self::heap`] does, or when the heap
    /// cannot be opened.
    #[cfg(feature = "smithay")]
    pub fn allocator(&self) -> Result<crate::DmaHeapAllocator> {
        let heap = self.heap()?.open()?;
        Ok(crate::DmaHeapAllocator::with_alignment(
            heap,
            mappable(&self.intersection),
        ))
    }
}

/// The allocator of the heap every one of `devices` (device numbers, e.g.
/// the display's and the camera's) can use for `width`x`height` buffers of
/// `fourcc`: [`resolve_devices`], [`explain_choice`], then
/// [`Explained::allocator`]. Buffers of other sizes come from the same heap,
/// and fail there if it cannot hold them.
#[cfg(feature = "smithay")]
pub fn allocator_for(
    discovery: &Discovery,
    devices: &[DeviceNumber],
    fourcc: Fourcc,
    width: u32,
    height: u32,
) -> Result<crate::DmaHeapAllocator> {
    let devices = resolve_devices(discovery, devices)?;
    explain_choice(discovery, &devices, &[], fourcc, width, height)?.allocator()
}

/// The devices' alignments, with plane offsets at least a page apart: a
/// plane is mapped from its offset (`mmap` takes page-aligned offsets), so
/// the CPU can reach every plane of the layouts handed out.
fn mappable(intersection: &Intersection) -> Alignment {
    let page = u32::try_from(rustix::param::page_size()).unwrap_or(4096);
    Alignment {
        pitch: intersection.pitch_alignment,
        offset: u32::try_from(crate::constraints::lcm(
            intersection.offset_alignment.max(1).into(),
            page.into(),
        ))
        .unwrap_or(u32::MAX),
    }
}

/// Judges every heap for a buffer touched by `devices` (and any `extra`
/// constraints) and lays it out, without failing when no heap fits: the
/// [`Explained::ranking`] then says why each was passed over. Fails when
/// there are no heaps at all, when the format or size cannot be laid out,
/// and when the size exceeds a limit of the devices themselves.
pub fn explain_choice<'a>(
    discovery: &'a Discovery,
    devices: &[DeviceInfo],
    extra: &[Constraints],
    fourcc: Fourcc,
    width: u32,
    height: u32,
) -> Result<Explained<'a>> {
    explain_choice_among(
        discovery,
        discovery.heaps(),
        devices,
        extra,
        fourcc,
        width,
        height,
    )
}

/// [`explain_choice`] over `heaps` only (some of `discovery`'s): what a
/// compositor decides for a client that may be handed those heaps alone.
/// The devices' needs still come from every heap of `discovery` (what
/// their links say does not depend on who asks).
pub fn explain_choice_among<'a>(
    discovery: &Discovery,
    heaps: &'a [HeapInfo],
    devices: &[DeviceInfo],
    extra: &[Constraints],
    fourcc: Fourcc,
    width: u32,
    height: u32,
) -> Result<Explained<'a>> {
    if discovery.is_empty() {
        return Err(Error::NoHeaps {
            reason: discovery.empty_reason().unwrap_or_default(),
        });
    }
    let mut parts = device_constraints(discovery, devices);
    parts.extend(extra.iter().cloned());
    let intersection = intersect(&parts);
    if let Some(max) = intersection.max_width {
        if width > max {
            return Err(Error::TooLarge {
                what: "width",
                needed: width.into(),
                limit: max.into(),
                by: parts
                    .iter()
                    .find(|c| c.max_width == Some(max))
                    .map(|c| c.device.clone())
                    .unwrap_or_default(),
            });
        }
    }
    if let Some(max) = intersection.max_height {
        if height > max {
            return Err(Error::TooLarge {
                what: "height",
                needed: height.into(),
                limit: max.into(),
                by: parts
                    .iter()
                    .find(|c| c.max_height == Some(max))
                    .map(|c| c.device.clone())
                    .unwrap_or_default(),
            });
        }
    }
    let layout = Layout::new(fourcc, width, height, mappable(&intersection))?;
    let ranking = intersection.rank(heaps, devices, layout.alloc_size())?;
    Ok(Explained {
        layout,
        intersection,
        ranking,
    })
}

/// Chooses a heap for a buffer touched by `devices` (and any `extra`
/// constraints), and lays it out: the feedback-free path, used by
/// [`negotiate`] for each tranche and directly by allocators. The choice is
/// [`explain_choice`]'s.
pub fn choose(
    discovery: &Discovery,
    devices: &[DeviceInfo],
    extra: &[Constraints],
    fourcc: Fourcc,
    width: u32,
    height: u32,
) -> Result<(HeapInfo, Layout, Intersection)> {
    let explained = explain_choice(discovery, devices, extra, fourcc, width, height)?;
    let heap = explained.heap()?.clone();
    Ok((heap, explained.layout, explained.intersection))
}

fn fourcc_name(code: u32) -> String {
    Fourcc::try_from(code)
        .map(|f| f.to_string())
        .unwrap_or_else(|_| format!("{code:#010x}"))
}

/// Picks the format and modifier of `tranche` for `request`, or says why none.
fn pick_format(tranche: &Tranche, request: &Request) -> Result<(Fourcc, Modifier), String> {
    let linear = u64::from(Modifier::Linear);
    let invalid = u64::from(Modifier::Invalid);
    let mut notes = Vec::new();
    for &fourcc in &request.formats {
        let code = fourcc as u32;
        let mods: Vec<u64> = tranche
            .formats
            .iter()
            .filter(|e| e.format == code)
            .map(|e| e.modifier)
            .collect();
        if mods.contains(&linear) {
            return Ok((fourcc, Modifier::Linear));
        }
        if mods.contains(&invalid) {
            if !request.usage.cpu {
                return Ok((fourcc, Modifier::Invalid));
            }
            notes.push(format!(
                "{fourcc} only with implicit modifiers, unusable for CPU access"
            ));
        } else if mods.is_empty() {
            notes.push(format!("no {fourcc}"));
        } else {
            let list: Vec<String> = mods.iter().map(|m| format!("{m:#x}")).collect();
            notes.push(format!(
                "{fourcc} only with modifiers [{}], heaps produce LINEAR",
                list.join(", ")
            ));
        }
    }
    if request.formats.is_empty() {
        notes.push("the request names no format".into());
    }
    let offered: Vec<String> = tranche
        .formats
        .iter()
        .map(|e| e.format)
        .fold(Vec::new(), |mut v, f| {
            if !v.contains(&f) {
                v.push(f);
            }
            v
        })
        .into_iter()
        .map(fourcc_name)
        .collect();
    Err(format!(
        "{} (offers {})",
        notes.join(", "),
        offered.join(" ")
    ))
}

/// Negotiates `request` against `feedback`.
///
/// Tranches are tried in the compositor's order, scanout tranches first when
/// the usage asks for scanout. Each tranche passed over leaves a line in
/// [`Negotiated::passed_over`]; if none fits, [`Error::Negotiation`] carries
/// one line per tranche.
pub fn negotiate(
    discovery: &Discovery,
    feedback: &Feedback,
    request: &Request,
) -> Result<Negotiated> {
    let mut order: Vec<usize> = (0..feedback.tranches.len()).collect();
    if request.usage.scanout {
        // Stable: among scanout tranches, and among the others, the
        // compositor's order is kept.
        order.sort_by_key(|&i| !feedback.tranches[i].scanout);
    }
    let mut passed_over = Vec::new();
    for i in order {
        let tranche = &feedback.tranches[i];
        let label = format!(
            "tranche {i} ({}{})",
            tranche.target_device,
            if tranche.scanout { ", scanout" } else { "" }
        );
        let (fourcc, modifier) = match pick_format(tranche, request) {
            Ok(fm) => fm,
            Err(why) => {
                passed_over.push(format!("{label}: {why}"));
                continue;
            }
        };
        let mut numbers = vec![tranche.target_device, feedback.main_device];
        numbers.extend(request.extra_devices.iter().copied());
        let devices = match resolve_devices(discovery, &numbers) {
            Ok(d) => d,
            Err(err) => {
                passed_over.push(format!("{label}: {err}"));
                continue;
            }
        };
        match choose(
            discovery,
            &devices,
            &request.extra_constraints,
            fourcc,
            request.width,
            request.height,
        ) {
            Ok((heap, layout, intersection)) => {
                if !passed_over.is_empty() {
                    tracing::info!(?passed_over, chosen = i, "negotiation fell back");
                }
                return Ok(Negotiated {
                    heap,
                    fourcc,
                    modifier,
                    layout,
                    tranche: i,
                    scanout: tranche.scanout,
                    devices,
                    intersection,
                    passed_over,
                });
            }
            Err(err) => passed_over.push(format!("{label}: {err}")),
        }
    }
    if feedback.tranches.is_empty() {
        passed_over.push("the feedback has no tranches".into());
    }
    Err(Error::Negotiation {
        reasons: passed_over,
    })
}
