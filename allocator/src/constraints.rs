//! What each device needs from memory, what a buffer shared by several
//! devices needs (the intersection), and which heap to take.
//!
//! A device's needs are read from the heaps it links to: the kernel links a
//! device to a heap only if the heap's memory is what the device needs or
//! more (kernel/ABI.md), so the device needs contiguous memory if every
//! heap it links to is contiguous, and reaches at least as far as the
//! farthest-reaching of them. A device that links to no heap is unknown,
//! not unconstrained: a display without an IOMMU refuses scattered memory,
//! and nothing here could tell, so no heap is proven to fit it. Callers add
//! what sysfs cannot know (pitch alignment, maximum width) by editing the
//! [`Constraints`] before intersecting.
//!
//! The choice among fitting heaps follows the links, because their order is
//! the kernel's, made knowing where each kind of memory lies and which is
//! scarce: the first heap in the first device's order that every other
//! device links to too. Heaps no device links to are fallbacks after them.

use std::fmt::Write as _;

use crate::{
    device::DeviceInfo,
    discovery::{HeapInfo, HeapKind},
    Error, Result,
};

/// Default pitch alignment: 64 bytes suits every scanout engine and GPU we
/// know of for linear buffers, and every listed format's 1080p and 720p
/// pitches are already multiples of it.
pub const DEFAULT_PITCH_ALIGNMENT: u32 = 64;

/// Default plane offset alignment: a page, so that each plane of a
/// multi-planar buffer can be mapped on its own.
pub const DEFAULT_OFFSET_ALIGNMENT: u32 = 4096;

/// What one device needs from a buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// Who needs this (a device name such as `vivid.0`, or `cpu`): used in
    /// explanations.
    pub device: String,
    /// The memory must be physically contiguous.
    pub contiguous: bool,
    /// The device can only address memory below `2^dma_mask_bits`.
    pub dma_mask_bits: u32,
    /// The memory must be CPU-coherent (no cache maintenance possible).
    pub coherent: bool,
    /// Required alignment of each plane's pitch, in bytes.
    pub pitch_alignment: u32,
    /// Required alignment of each plane's offset, in bytes.
    pub offset_alignment: u32,
    /// Required alignment of the buffer's start, in bytes.
    pub base_alignment: u64,
    /// Largest width in pixels, if limited.
    pub max_width: Option<u32>,
    /// Largest height in pixels, if limited.
    pub max_height: Option<u32>,
    /// Largest buffer in bytes, if limited.
    pub max_size: Option<u64>,
    /// The needs above are known. `false` for a device no device heap
    /// describes: then no heap fits it.
    pub known: bool,
}

impl Constraints {
    /// A device that can use any memory.
    pub fn unconstrained(device: impl Into<String>) -> Self {
        Self {
            device: device.into(),
            contiguous: false,
            dma_mask_bits: 64,
            coherent: false,
            pitch_alignment: DEFAULT_PITCH_ALIGNMENT,
            offset_alignment: DEFAULT_OFFSET_ALIGNMENT,
            base_alignment: 1,
            max_width: None,
            max_height: None,
            max_size: None,
            known: true,
        }
    }

    /// A device whose needs nothing describes (it links to no heap).
    pub fn unknown(device: impl Into<String>) -> Self {
        Self {
            known: false,
            ..Self::unconstrained(device)
        }
    }

    /// The needs of `device`, read from the heaps it links to (`serving`, as
    /// [`crate::Discovery::heaps_serving`] returns them): every one gives
    /// memory the device can use. A device linking to no heap whose memory
    /// is known is [unknown](Self::unknown).
    pub fn for_device(device: &DeviceInfo, serving: &[&HeapInfo]) -> Self {
        let known: Vec<&HeapInfo> = serving
            .iter()
            .copied()
            .filter(|h| h.properties_known())
            .collect();
        if known.is_empty() {
            return Self::unknown(device.name.clone());
        }
        let mut c = Self::unconstrained(device.name.clone());
        c.contiguous = known.iter().all(|h| h.properties.contiguous);
        c.dma_mask_bits = known
            .iter()
            .filter_map(|h| reach_of_linker(h))
            .max()
            .unwrap_or(64);
        c
    }

    fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.known {
            out.push("needs unknown (it links to no heap)".to_owned());
        }
        if self.contiguous {
            out.push("contiguous".to_owned());
        }
        if self.dma_mask_bits < 64 {
            out.push(format!("DMA mask {}", self.dma_mask_bits));
        }
        if self.coherent {
            out.push("coherent".to_owned());
        }
        if self.base_alignment > 4096 {
            out.push(format!("alignment {}", self.base_alignment));
        }
        if let Some(s) = self.max_size {
            out.push(format!("max {s} bytes"));
        }
        out
    }
}

/// The needs of a buffer shared by several devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intersection {
    /// The constraints that were intersected, in order.
    pub parts: Vec<Constraints>,
    /// Some device needs contiguous memory.
    pub contiguous: bool,
    /// The narrowest DMA mask.
    pub dma_mask_bits: u32,
    /// Some device needs coherent memory.
    pub coherent: bool,
    /// Least common multiple of the pitch alignments.
    pub pitch_alignment: u32,
    /// Least common multiple of the offset alignments.
    pub offset_alignment: u32,
    /// Least common multiple of the base alignments.
    pub base_alignment: u64,
    /// Smallest width limit.
    pub max_width: Option<u32>,
    /// Smallest height limit.
    pub max_height: Option<u32>,
    /// Smallest size limit.
    pub max_size: Option<u64>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

pub(crate) fn lcm(a: u64, b: u64) -> u64 {
    let (a, b) = (a.max(1), b.max(1));
    (a / gcd(a, b)).saturating_mul(b)
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Intersects the needs of every device that will touch a buffer.
pub fn intersect(parts: &[Constraints]) -> Intersection {
    let mut i = Intersection {
        parts: parts.to_vec(),
        contiguous: false,
        dma_mask_bits: 64,
        coherent: false,
        pitch_alignment: 1,
        offset_alignment: 1,
        base_alignment: 1,
        max_width: None,
        max_height: None,
        max_size: None,
    };
    for c in parts {
        i.contiguous |= c.contiguous;
        i.dma_mask_bits = i.dma_mask_bits.min(c.dma_mask_bits);
        i.coherent |= c.coherent;
        i.pitch_alignment = u32::try_from(lcm(i.pitch_alignment.into(), c.pitch_alignment.into()))
            .unwrap_or(u32::MAX);
        i.offset_alignment =
            u32::try_from(lcm(i.offset_alignment.into(), c.offset_alignment.into()))
                .unwrap_or(u32::MAX);
        i.base_alignment = lcm(i.base_alignment, c.base_alignment);
        i.max_width = min_opt(i.max_width, c.max_width);
        i.max_height = min_opt(i.max_height, c.max_height);
        i.max_size = min_opt(i.max_size, c.max_size);
    }
    i
}

/// How far a device that links to `heap` reaches, in bits of physical
/// address, where the link says.
///
/// The module caps a heap's `dma_mask_bits` at the last byte of RAM, so
/// that a device reaching all of RAM may see, say, 33: what it needs is
/// then all of RAM, which the kernel's `system` heap (64) gives too. Hence
/// 64 for the heaps that serve only devices reaching all of RAM: the
/// kernel's `system` and CMA heaps, and the module's heaps whose name
/// carries no limit (`system`, `system-contiguous`: "anywhere in RAM").
fn reach_of_linker(heap: &HeapInfo) -> Option<u32> {
    match heap.kind {
        HeapKind::System | HeapKind::Cma => Some(64),
        HeapKind::Device if matches!(heap.name.as_str(), "system" | "system-contiguous") => {
            Some(64)
        }
        _ => heap.properties.dma_mask_bits,
    }
}

/// How well a fitting heap suits the devices, higher is better: devices
/// linking to it; the earliest of them (`u32::MAX - position`); its rank
/// there (`u32::MAX - rank`); its kind; thrift.
type Preference = (u32, u32, u32, u32, u32);

/// Why one heap does not fit an intersection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// The heap's name.
    pub heap: String,
    /// What it lacks, with the device that needs it, e.g.
    /// `not contiguous (needed by vivid.0)`.
    pub reasons: Vec<String>,
}

/// What [`Intersection::rank`] says of one heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The heap [`Intersection::select`] returns.
    Chosen,
    /// It fits every device, but the chosen heap suits them better; the
    /// sentence says in what way, e.g. `fits, but system-contiguous is rank
    /// 0 for vkms, this heap rank 1`.
    Outranked(String),
    /// It does not fit: what it lacks, with the devices that need it.
    Unmet(Vec<String>),
}

/// One heap and what [`Intersection::rank`] says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked<'a> {
    /// The heap.
    pub heap: &'a HeapInfo,
    /// Chosen, outranked or unfit, and why.
    pub verdict: Verdict,
}

/// Every heap judged for one buffer, in the order they were given: the
/// choice of [`Intersection::select`] and the reason each other heap was
/// passed over. `select` is this and nothing else, so that an explanation
/// can never disagree with the choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking<'a> {
    /// Every heap with its verdict.
    pub heaps: Vec<Ranked<'a>>,
}

impl<'a> Ranking<'a> {
    /// The chosen heap, if any fits.
    pub fn chosen(&self) -> Option<&'a HeapInfo> {
        self.heaps
            .iter()
            .find(|r| r.verdict == Verdict::Chosen)
            .map(|r| r.heap)
    }

    /// The heaps that do not fit, with what each lacks.
    pub fn unmet(&self) -> Vec<Unmet> {
        self.heaps
            .iter()
            .filter_map(|r| match &r.verdict {
                Verdict::Unmet(reasons) => Some(Unmet {
                    heap: r.heap.name.clone(),
                    reasons: reasons.clone(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// Says what a heap is, in a preference sentence.
fn kind_phrase(heap: &HeapInfo) -> String {
    match heap.kind {
        HeapKind::System => "the system heap".to_owned(),
        HeapKind::Device if heap.served.is_empty() => {
            "a heap of device_heap serving no device now".to_owned()
        }
        HeapKind::Device => format!("a heap serving {}", heap.served_names()),
        HeapKind::Cma => "a CMA heap (contiguous memory is scarce)".to_owned(),
        HeapKind::Udmabuf => "udmabuf, the last resort".to_owned(),
        HeapKind::Other => "a heap of unknown kind".to_owned(),
    }
}

impl Intersection {
    fn who(&self, pred: impl Fn(&Constraints) -> bool) -> String {
        let names: Vec<&str> = self
            .parts
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.device.as_str())
            .collect();
        names.join(", ")
    }

    /// Devices that take part, by name.
    pub fn device_names(&self) -> Vec<&str> {
        self.parts.iter().map(|c| c.device.as_str()).collect()
    }

    /// Checks one heap against the intersection for a buffer of `size` bytes.
    ///
    /// A heap whose DMA reach is unknown (CMA) fits only devices that can
    /// address all memory: for any narrower DMA mask it is not proven to
    /// serve them. A heap of unknown kind never fits.
    pub fn check(&self, heap: &HeapInfo, size: u64) -> Result<(), Unmet> {
        let p = &heap.properties;
        let mut reasons = Vec::new();
        if !heap.properties_known() {
            reasons.push(
                "memory properties unknown (not a device heap, the system heap, a CMA heap \
                 or udmabuf)"
                    .to_owned(),
            );
        }
        let unknown = self.who(|c| !c.known);
        if !unknown.is_empty() {
            reasons.push(format!(
                "nothing describes the memory {unknown} needs (it links to no heap: serve \
                 it with modprobe device_heap devices=<bus>/<device>)"
            ));
        }
        if self.contiguous && !p.contiguous {
            reasons.push(format!(
                "not contiguous (needed by {})",
                self.who(|c| c.contiguous)
            ));
        }
        match p.dma_mask_bits {
            Some(bits) if bits > self.dma_mask_bits => reasons.push(format!(
                "memory up to {} bits, beyond DMA mask {} of {}",
                bits,
                self.dma_mask_bits,
                self.who(|c| c.dma_mask_bits == self.dma_mask_bits)
            )),
            None if self.dma_mask_bits < 64 => reasons.push(format!(
                "DMA reach unknown, not proven below DMA mask {} of {}",
                self.dma_mask_bits,
                self.who(|c| c.dma_mask_bits == self.dma_mask_bits)
            )),
            _ => {}
        }
        if self.coherent && !p.coherent {
            reasons.push(format!(
                "not coherent (needed by {})",
                self.who(|c| c.coherent)
            ));
        }
        if self.base_alignment > p.alignment_bytes {
            reasons.push(format!(
                "aligned to {} bytes, {} needed by {}",
                p.alignment_bytes,
                self.base_alignment,
                self.who(|c| c.base_alignment > p.alignment_bytes)
            ));
        }
        if size > p.max_alloc_bytes {
            reasons.push(format!(
                "max allocation {} bytes < {} needed",
                p.max_alloc_bytes, size
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Unmet {
                heap: heap.name.clone(),
                reasons,
            })
        }
    }

    /// How well a fitting heap suits `devices`; see [`Intersection::select`].
    fn preference(&self, heap: &HeapInfo, devices: &[DeviceInfo]) -> Preference {
        let served = devices.iter().filter(|d| heap.serves(d)).count() as u32;
        // Devices come in priority order (a tranche's target device first):
        // between heaps linked from as many devices, the earliest device's
        // order decides, by rank.
        let (first, rank) = devices
            .iter()
            .enumerate()
            .find_map(|(p, d)| d.rank_of(&heap.name).map(|r| (p, r)))
            .filter(|_| heap.kind != HeapKind::Udmabuf)
            .map_or((0, 0), |(p, r)| {
                (
                    u32::MAX - p as u32,
                    u32::MAX - u32::try_from(r).unwrap_or(u32::MAX),
                )
            });
        // Fallbacks, which no device links to: the system heap's scattered
        // pages are the natural home of a buffer no device constrains; then
        // a heap of the module; udmabuf; CMA memory last, being scarce and
        // of unknown reach (only where contiguity is needed and nothing else
        // has it: udmabuf, never contiguous, cannot compete there).
        let kind_rank = match heap.kind {
            HeapKind::System => 3,
            HeapKind::Device => 2,
            HeapKind::Udmabuf => 1,
            HeapKind::Cma | HeapKind::Other => 0,
        };
        let thrift = u32::from(self.contiguous || !heap.properties.contiguous);
        (served, first, rank, kind_rank, thrift)
    }

    /// Why `heap` (preference `mine`) lost to `chosen` (preference `best`).
    fn outranked(
        &self,
        heap: &HeapInfo,
        mine: Preference,
        chosen: &HeapInfo,
        best: Preference,
        devices: &[DeviceInfo],
    ) -> String {
        // "vkms (rank 0), vgem (rank 2)": the devices linking to `h`.
        let linked_by = |h: &HeapInfo| -> Vec<String> {
            devices
                .iter()
                .filter(|d| h.serves(d))
                .filter_map(|d| d.rank_of(&h.name).map(|r| format!("{} (rank {r})", d.name)))
                .collect()
        };
        // The earliest device linking to `h`, and `h`'s rank there.
        let first = |h: &HeapInfo| {
            devices
                .iter()
                .filter(|_| h.kind != HeapKind::Udmabuf)
                .find_map(|d| d.rank_of(&h.name).map(|r| (d.name.as_str(), r)))
                .unwrap_or(("", 0))
        };
        if mine.0 < best.0 {
            let theirs = linked_by(chosen).join(", ");
            let ours = linked_by(heap);
            return if ours.is_empty() {
                format!(
                    "fits, but {} serves {theirs}, and none of these devices links to this \
                     heap ({})",
                    chosen.name,
                    kind_phrase(heap)
                )
            } else {
                format!(
                    "fits, but {} serves {theirs}, this heap only {}",
                    chosen.name,
                    ours.join(", ")
                )
            };
        }
        if mine.1 < best.1 {
            let (theirs, rank) = first(chosen);
            return format!(
                "fits, but {} is rank {rank} for {theirs}, listed before {}",
                chosen.name,
                first(heap).0
            );
        }
        if mine.2 < best.2 {
            let (device, rank) = first(chosen);
            return format!(
                "fits, but {} is rank {rank} for {device}, this heap rank {}",
                chosen.name,
                first(heap).1
            );
        }
        if mine.3 < best.3 {
            return format!(
                "fits, but {} ({}) is preferred to {}",
                chosen.name,
                kind_phrase(chosen),
                kind_phrase(heap)
            );
        }
        if mine.4 < best.4 {
            return format!(
                "fits, but its memory is contiguous, which is scarce and not needed; {} is not",
                chosen.name
            );
        }
        format!("fits as well, but {} comes first", chosen.name)
    }

    /// Judges every heap for a buffer of `size` bytes shared by `devices`
    /// (resolved, in priority order): which one [`Intersection::select`]
    /// picks, and why each other one was passed over. Fails only when the
    /// size exceeds a limit of the devices themselves, before any heap is
    /// looked at.
    pub fn rank<'a>(
        &self,
        heaps: &'a [HeapInfo],
        devices: &[DeviceInfo],
        size: u64,
    ) -> Result<Ranking<'a>> {
        if let Some(max) = self.max_size {
            if size > max {
                return Err(Error::TooLarge {
                    what: "buffer size",
                    needed: size,
                    limit: max,
                    by: self.who(|c| c.max_size == Some(max)),
                });
            }
        }
        let mut judged: Vec<Result<Preference, Vec<String>>> = Vec::with_capacity(heaps.len());
        let mut best: Option<(usize, Preference)> = None;
        for (i, heap) in heaps.iter().enumerate() {
            match self.check(heap, size) {
                Ok(()) => {
                    let score = self.preference(heap, devices);
                    // Strictly better only: among equals the first wins.
                    if !matches!(best, Some((_, b)) if b >= score) {
                        best = Some((i, score));
                    }
                    judged.push(Ok(score));
                }
                Err(unmet) => judged.push(Err(unmet.reasons)),
            }
        }
        let heaps = heaps
            .iter()
            .zip(judged)
            .enumerate()
            .map(|(i, (heap, judged))| {
                let verdict = match (judged, best) {
                    (Err(reasons), _) => Verdict::Unmet(reasons),
                    (Ok(_), Some((b, _))) if b == i => Verdict::Chosen,
                    (Ok(mine), Some((b, score))) => {
                        Verdict::Outranked(self.outranked(heap, mine, &heaps[b], score, devices))
                    }
                    // A heap that fits makes `best` Some.
                    (Ok(_), None) => Verdict::Chosen,
                };
                Ranked { heap, verdict }
            })
            .collect();
        Ok(Ranking { heaps })
    }

    /// Picks the heap that satisfies every device, following the devices'
    /// links, for a buffer of `size` bytes: [`Intersection::rank`]'s choice.
    ///
    /// Preference among the heaps that fit: one more of the taking-part
    /// devices (`devices`, resolved, in priority order) link to first; among
    /// those, the one the earliest device links to, and of its links the
    /// best ranked. So for one device, the first heap in its links that
    /// fits; for several, the first in the first device's links that every
    /// other device links to too. Then the heaps no device links to:
    /// `system`, a heap of `device_heap`, udmabuf, a CMA heap (only ever fit
    /// when contiguity is needed and no device needs a DMA mask below 64
    /// bits). Among those, a heap that is not contiguous when contiguity is
    /// not needed, because contiguous memory is scarce; then the first.
    ///
    /// On failure the error names the devices with their needs and why each
    /// heap was rejected: "no heap satisfies vivid.0 (contiguous) and vgem
    /// (DMA mask 32): ...".
    pub fn select<'a>(
        &self,
        heaps: &'a [HeapInfo],
        devices: &[DeviceInfo],
        size: u64,
    ) -> Result<&'a HeapInfo> {
        let ranking = self.rank(heaps, devices, size)?;
        self.pick(&ranking)
    }

    /// The chosen heap of a [`Ranking`] made by [`Intersection::rank`], or
    /// the error [`Intersection::select`] gives when none fits.
    pub fn pick<'a>(&self, ranking: &Ranking<'a>) -> Result<&'a HeapInfo> {
        ranking.chosen().ok_or_else(|| Error::NoHeap {
            explanation: self.explain(&ranking.unmet(), ranking.heaps.is_empty()),
        })
    }

    fn explain(&self, unmet: &[Unmet], no_heaps: bool) -> String {
        let needs: Vec<String> = self
            .parts
            .iter()
            .map(|c| {
                let d = c.describe();
                if d.is_empty() {
                    c.device.clone()
                } else {
                    format!("{} ({})", c.device, d.join(", "))
                }
            })
            .collect();
        let mut s = String::from("no heap satisfies ");
        match needs.len() {
            0 => s.push_str("an empty device set"),
            1 => s.push_str(&needs[0]),
            n => {
                s.push_str(&needs[..n - 1].join(", "));
                s.push_str(" and ");
                s.push_str(&needs[n - 1]);
            }
        }
        if no_heaps {
            s.push_str(": no heaps were found");
        }
        for u in unmet {
            let _ = write!(s, "; {}: {}", u.heap, u.reasons.join(", "));
        }
        s
    }
}
