//! The results of every boot, read from `BENCH` / `WARN` lines, and
//! docs/performance.md written from them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use heapland_tests::bench::{Line, GOAL_SIZES};

const USAGE: &str = "\
usage: heapland-plot [--md PATH] [--png PATH] [--command TEXT] [--font PATH] FILE...
  FILE           guest console logs, or files of their BENCH and WARN lines (one or
                 more boots each; tests/vm/run --bench writes tests/vm/out/bench-<boot>.txt)
  --md PATH      the report to write (default docs/performance.md)
  --png PATH     the plot to write (default docs/performance.png)
  --command TEXT the command that produced the numbers, quoted in the report
                 (default: tests/vm/run --bench)
  --font PATH    a TrueType font for the plot's text
                 (default /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf, fonts-dejavu-core)";

pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Goal: a device heap's median at most this times the system heap's...
pub const GOAL_X_SYSTEM: f64 = 1.0;
/// ...and at most this times the memset floor's.
pub const GOAL_X_MEMSET: f64 = 1.5;

/// One boot's results.
#[derive(Debug, Default)]
pub struct Boot {
    pub name: String,
    pub machine: Option<Line>,
    pub host: Option<Line>,
    /// Sizes and candidates in the order the bench printed them.
    pub sizes: Vec<String>,
    pub candidates: Vec<String>,
    /// (size, candidate) -> its line.
    pub results: BTreeMap<(String, String), Line>,
    pub agree: Vec<Line>,
    pub warns: Vec<String>,
    /// `steady` lines: the compositor's steady state, per case.
    pub steady: Vec<Line>,
    /// `camera` lines: camera to display, per path.
    pub camera: Vec<Line>,
    /// `peer` lines: heapland, weston and sway side by side, per compositor.
    pub peers: Vec<Line>,
    pub done: bool,
}

impl Boot {
    pub fn result(&self, size: &str, candidate: &str) -> Option<&Line> {
        self.results.get(&(size.to_owned(), candidate.to_owned()))
    }

    /// The pass a candidate ran in: `None` for the main pass, `Some("uncached")`
    /// for the pass with the module's block cache off.
    pub fn pass(&self, candidate: &str) -> Option<&str> {
        self.sizes
            .iter()
            .find_map(|s| self.result(s, candidate))
            .and_then(|l| l.get("pass"))
    }

    /// Median of the first candidate of `kind` at `size` in `pass`.
    pub fn median_of_kind(&self, size: &str, kind: &str, pass: Option<&str>) -> Option<f64> {
        self.candidates
            .iter()
            .filter_map(|c| self.result(size, c))
            .find(|l| l.get("kind") == Some(kind) && l.get("pass") == pass)
            .and_then(|l| l.num("median"))
    }

    /// A candidate's median over the median of the reference `kind` of its own
    /// pass at `size`.
    pub fn ratio(&self, size: &str, candidate: &str, kind: &str) -> Option<f64> {
        let m = self.result(size, candidate)?.num("median")?;
        let r = self.median_of_kind(size, kind, self.pass(candidate))?;
        (r > 0.0).then_some(m / r)
    }

    /// `min` or `p90` of a candidate over its pass's system heap median.
    pub fn spread_ratio(&self, size: &str, candidate: &str, key: &str) -> Option<f64> {
        let v = self.result(size, candidate)?.num(key)?;
        let r = self.median_of_kind(size, "system", self.pass(candidate))?;
        (r > 0.0).then_some(v / r)
    }

    /// The candidates the plot shows: all but the references of the uncached
    /// pass, which only set that pass's ratios.
    pub fn plotted(&self) -> Vec<&String> {
        self.candidates
            .iter()
            .filter(|c| !(self.pass(c).is_some() && self.kind(c) != Some("device")))
            .collect()
    }

    pub fn kind(&self, candidate: &str) -> Option<&str> {
        self.sizes
            .iter()
            .find_map(|s| self.result(s, candidate))
            .and_then(|l| l.get("kind"))
    }

    pub fn kernel(&self) -> &str {
        self.machine
            .as_ref()
            .and_then(|m| m.get("kernel"))
            .unwrap_or("?")
    }

    pub fn accel(&self) -> &str {
        self.host
            .as_ref()
            .and_then(|h| h.get("accel"))
            .unwrap_or("?")
    }
}

/// Reads the boots out of `texts`, in the order they first appear.
pub fn parse(texts: &[String]) -> Vec<Boot> {
    let mut boots: Vec<Boot> = Vec::new();
    fn boot<'a>(boots: &'a mut Vec<Boot>, name: &str) -> &'a mut Boot {
        if let Some(i) = boots.iter().position(|b| b.name == name) {
            return &mut boots[i];
        }
        boots.push(Boot {
            name: name.to_owned(),
            ..Boot::default()
        });
        boots.last_mut().unwrap()
    }
    for text in texts {
        for raw in text.lines() {
            let raw = raw.trim_end_matches('\r');
            if let Some(rest) = raw.strip_prefix("WARN ") {
                if let Some((name, what)) = rest.split_once(' ') {
                    boot(&mut boots, name).warns.push(what.to_owned());
                }
                continue;
            }
            let Some(line) = Line::parse(raw) else {
                continue;
            };
            let Some(name) = line.words.first().cloned() else {
                continue;
            };
            let b = boot(&mut boots, &name);
            match line.words.get(1).map(String::as_str) {
                Some("machine") => b.machine = Some(line),
                Some("host") => b.host = Some(line),
                Some("done") => b.done = true,
                Some("agree") => b.agree.push(line),
                Some("steady") => b.steady.push(line),
                Some("camera") => b.camera.push(line),
                Some("peer") => b.peers.push(line),
                Some("failed") => {
                    let why = line.get("error").unwrap_or("?");
                    b.warns
                        .push(format!("the bench failed before measuring: {why}"));
                }
                Some(size) if line.words.len() == 3 => {
                    let size = size.to_owned();
                    let cand = line.words[2].clone();
                    if !b.sizes.contains(&size) {
                        b.sizes.push(size.clone());
                    }
                    if !b.candidates.contains(&cand) {
                        b.candidates.push(cand.clone());
                    }
                    b.results.insert((size, cand), line);
                }
                _ => {}
            }
        }
    }
    boots
}

/// `1920x1080-XRGB8888` as `1920x1080 XRGB8888`.
pub fn size_label(size: &str) -> String {
    size.replace('-', " ")
}

fn two(x: f64) -> String {
    format!("{x:.2}")
}

/// Compared as shown: two decimals.
fn within(x: f64, limit: f64) -> bool {
    (x * 100.0).round() / 100.0 <= limit + 1e-9
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A table cell of at most about 200 characters: a failure's first words
/// say what failed; the whole message is in the bench's output.
fn short_cell(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{} …", md_cell(&s[..at])),
        None => md_cell(s),
    }
}

/// Today's date (UTC), for the report.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The goal check of one device heap in one boot: the cells of its row and
/// whether it meets every part.
fn goal_row(b: &Boot, heap: &str) -> (Vec<String>, Result<(), Vec<String>>) {
    let mut cells = Vec::new();
    let mut misses = Vec::new();
    for (kind, limit, what) in [
        ("system", GOAL_X_SYSTEM, "x system"),
        ("memset", GOAL_X_MEMSET, "x memset"),
    ] {
        for size in GOAL_SIZES {
            match b.ratio(size, heap, kind) {
                Some(x) => {
                    let ok = within(x, limit);
                    cells.push(format!(
                        "{} {}",
                        two(x),
                        if ok { "met" } else { "**not met**" }
                    ));
                    if !ok {
                        misses.push(format!(
                            "{} {what} {} > {}",
                            size_label(size),
                            two(x),
                            two(limit)
                        ));
                    }
                }
                None => {
                    let why = b
                        .result(size, heap)
                        .and_then(|l| l.get("error"))
                        .map(|_| "heap failed")
                        .unwrap_or("no numbers");
                    cells.push(format!("{why}: not met"));
                    misses.push(format!("{} {what}: {why}", size_label(size)));
                }
            }
        }
    }
    (
        cells,
        if misses.is_empty() {
            Ok(())
        } else {
            Err(misses)
        },
    )
}

/// docs/performance.md.
pub fn markdown(boots: &[Boot], command: &str, png: Option<&str>) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "# Performance: what a buffer costs, what the compositor spends, how fast a camera frame shows\n"
    );
    let _ = writeln!(
        w,
        "<!-- Generated by heapland-plot (tests/src/bin/heapland-plot.rs) from the BENCH lines \
         of the command below. Do not edit: run the command again. -->\n"
    );
    let _ = writeln!(
        w,
        "The benchmarks of issue 10, item 4, side by side in one QEMU guest per boot. Produced \
         on {} by\n",
        today()
    );
    let _ = writeln!(w, "    {command}\n");
    let _ = writeln!(
        w,
        "which boots each kernel in QEMU, runs `heapland-bench` in the guest \
         (tests/src/bin/heapland-bench.rs) and then `heapland-plot` on the host over the \
         `BENCH` lines of every boot. Three parts:\n\n\
         1. **Allocation**: every memory source heapland can give a client, one buffer from \
         allocation to free, as ratios to the system heap and a memset floor.\n\
         2. **The compositor's steady state**: one full-screen client redrawing every frame; \
         buffers heapland allocates per frame (must be 0) and its CPU time per frame, \
         headless and on vkms.\n\
         3. **Camera to display**: vivid's capture timestamp to the page flip that shows the \
         frame, zero-copy heap path against a copy into GBM buffers, and bytes copied per \
         frame.\n"
    );
    if let Some(png) = png {
        let _ = writeln!(
            w,
            "![Median time per buffer relative to the system heap, per candidate, size and \
             boot; whiskers from min to p90]({png})\n"
        );
    }

    // --- goals
    let _ = writeln!(w, "## The goals, met or not\n");
    let _ = writeln!(
        w,
        "Goal of issue 10: every device heap allocation at most {:.1}x the system heap at \
         1920x1080 XRGB8888 and at 1280x720 NV12, and within {:.1}x of the memset floor \
         (checked at the same two sizes). Ratios of medians, compared as shown (two \
         decimals).\n",
        GOAL_X_SYSTEM, GOAL_X_MEMSET
    );
    let uncached = boots.iter().any(|b| {
        b.candidates
            .iter()
            .any(|c| b.pass(c) == Some("uncached") && b.kind(c) == Some("device"))
    });
    if uncached {
        let _ = writeln!(
            w,
            "### The first buffer of a size (the module's block cache off)\n\n\
             What a buffer costs when nothing of its size was freed a moment ago: the \
             contiguous heaps with `cache_mb=0` and the cache emptied, interleaved with a \
             system heap and memset floor of their own (the `pass=uncached` rows). This is \
             the verdict of the goal.\n"
        );
        goal_table(w, boots, true, "device heap, cache off");
        let _ = writeln!(
            w,
            "### Reallocating a size freed a moment ago (the block cache on)\n\n\
             device_heap.ko keeps a freed contiguous block for `cache_ms` (2 s) and gives it \
             to the next buffer of its size from the same heap, cleared \
             (kernel/heap_cache.c): what a compositor pays when it reallocates a swapchain \
             of a size it had, or a camera pipeline on stream restart. The main pass \
             allocates and frees one size round after round, so after its first round every \
             contiguous heap not backed by CMA hits the cache (blocks of a CMA area are \
             never kept: other drivers allocate from the area too). At 3840x2160 the three \
             heaps' 32 MiB blocks do not fit in `cache_mb` (64 MiB) together: they evict \
             each other, and most rounds miss.\n"
        );
    }
    goal_table(w, boots, !uncached, "device heap");
    steady_section(w, boots);
    camera_section(w, boots);
    peers_section(w, boots);

    // --- meaning
    let _ = writeln!(w, "## What the numbers mean\n");
    let _ = writeln!(
        w,
        "- **What is timed**: one buffer from allocation to free, the same steps for every \
         candidate: allocate, mmap the whole buffer, write one byte in every page (inside a \
         `DMA_BUF_IOCTL_SYNC` start/end bracket where the source is a dma-buf), munmap, free \
         (close the last fd, or destroy the DRM/GBM object). This is what a client pays for a \
         fresh buffer it fills from the CPU: the kernel's allocation and zeroing, building \
         the page tables, and the faults if the mapping is not populated at mmap time.\n\
         - **Candidates**: every device heap of `device_heap.ko` (named for its memory: \
         `system-contiguous`, `system-32bit-contiguous` below 4 GiB; the note says backing, \
         contig_source and DMA reach); the kernel's `system` heap; `udmabuf` (a sealed memfd turned into a \
         dma-buf); `dumb@vkms`, DRM dumb buffers on vkms (`CREATE_DUMB` + `MAP_DUMB`); \
         `gbm@vkms`, Mesa's GBM on vkms (kms_swrast), a LINEAR buffer object mapped with \
         `gbm_bo_map`, timed by a glibc helper (heapland-bench-gbm) the static bench drives \
         over a pipe; `memset`, the floor.\n\
         - **The floor (`memset`)**: an anonymous private mapping of the same size, every \
         byte written with memset, unmapped: the cheapest way for a process to get that many \
         fresh bytes and write them all, and so more work per byte than the other candidates, \
         which write one byte per page (the kernel has zeroed every byte for them). A heap \
         at 1.0x the floor costs what a process pays to fill a buffer of its own once. \
         Where transparent huge pages are `always` (Debian's default; the THP column below), \
         the floor's mapping is partly made of 2 MiB pages, with far fewer faults than any \
         dma-buf mapping can have.\n\
         - **NV12** is one buffer of width x height x 1.5 bytes (heapland-allocator's layout, \
         planes page-aligned); dumb buffers and GBM (where kms_swrast cannot map a linear \
         NV12 whole) allocate it as an 8 bpp buffer of height x 3/2 rows, as their note says.\n\
         - **Rounds**: the candidates run interleaved, each round running every candidate \
         once in an order rotated by one each round, after warm-up rounds that are not \
         counted; so a slow phase of the host hits every candidate alike instead of one \
         block. **median**, **min** and **p90** (nearest rank) are milliseconds per buffer \
         over the counted rounds; **x system** and **x memset** are ratios of medians to the \
         system heap's and the floor's in the same boot and size (lower is better).\n\
         - **Same code path**: device heaps with the same backing and contig_source run the \
         same kernel code; their medians should agree within the bench's tolerance, and \
         where they do not the bench printed a WARN line (listed per boot below): noise, or \
         a real difference the code path does not show (e.g. a 32-bit DMA mask searches \
         other zones).\n\
         - **Clearing**: every candidate hands out zeroed memory, cleared in one of two \
         ways. The page allocator clears page by page (`clear_page`): for `__GFP_ZERO`, and \
         on init_on_alloc kernels (Debian's default, the 7 boots) for every page it hands \
         out, whole power-of-two blocks included. device_heap.ko clears with one memset over \
         the buffer wherever the allocator did not (the 6.12 boot is booted with \
         init_on_alloc=0) and for every block from its cache. Under TCG one memset over a \
         range is several times cheaper than the same bytes cleared page by page; on real \
         hardware both are a `rep stosb` over the same bytes and cost about the same, so \
         where the device heaps clear for themselves their lead over the system heap is \
         mostly TCG's.\n\
         - **TCG**: the guest runs under QEMU's TCG, which emulates every instruction on a \
         noisy 2-core host: absolute times are many times those of real hardware, and even \
         the ratios only carry over roughly (TCG makes memory-bound loops, page-table walks, \
         TLB flushes and cross-CPU work differently expensive than a real CPU). Read them as \
         \"same order or not\", and compare boots with care.\n\
         - **Steady state**: heapland runs with `--stats` and writes its own running totals \
         once a second (compositor/src/frame_stats.rs): output frames with new content, of \
         them composited (drawn by pixman into heapland's buffer) or direct (a client buffer \
         scanned out as it is), buffers heapland allocated (any allocator), and its CPU time \
         (CLOCK_PROCESS_CPUTIME_ID, all threads). A full-screen client commits one of three \
         buffers on every frame callback, with full damage: dma-bufs from the heap of \
         heapland's default feedback, or wl_shm. After 2 s of warm-up, each run measures a \
         window; the cases run in rounds, in rotated order, each with a fresh heapland. \
         **CPU/frame** is CPU time over frames of each one-second interval (median, min, p90 \
         over every interval of every round); the client's own CPU time is not included, nor \
         is the kernel's (vkms composes its planes in a kernel worker).\n\
         - **Camera to display**: one heapland on vkms (`--share-with` the camera), one \
         full-screen client. `heap-zero-copy`: vivid captures into buffers of the heap \
         heapland names for the camera's tranche (`add_device`), each attached as it is. \
         `gbm-copy`: vivid captures into its own buffers (V4L2_MEMORY_MMAP) and the client \
         copies each frame into a GBM buffer (Mesa on vkms, LINEAR | SCANOUT) that it \
         attaches. **Latency** is wp_presentation's presented time (from the page-flip event) \
         minus the V4L2 buffer timestamp, both CLOCK_MONOTONIC, after 10 frames of warm-up \
         per run; the paths alternate run by run. The page flip comes at vkms's next \
         vblank, so every frame waits for up to one refresh period (16.7 ms at 60 Hz): \
         the latency is that wait plus the path's own work, and a difference between the \
         paths is what the copy adds, seen through that quantization. **Copied per \
         frame**: the client's copy, plus a whole frame for every frame heapland composited \
         instead of scanning the client's buffer out (from its `--stats` totals over the \
         same runs).\n"
    );

    // --- machine
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(
        w,
        "| boot | kernel | guest CPU (/proc/cpuinfo) | vCPUs | accel | THP | rounds | kernel command line |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for b in boots {
        let m = b.machine.as_ref();
        let g = |k: &str| m.and_then(|m| m.get(k)).unwrap_or("?").to_owned();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} after {} warm-up | `{}` |",
            b.name,
            md_cell(&g("kernel")),
            md_cell(&g("cpu")),
            g("nproc"),
            b.accel(),
            g("thp"),
            g("rounds"),
            g("warmup"),
            md_cell(&g("cmdline"))
        );
    }
    let hosts: Vec<String> = boots
        .iter()
        .filter_map(|b| b.host.as_ref())
        .map(|h| {
            format!(
                "{} ({} cores), {}",
                h.get("cpu").unwrap_or("?"),
                h.get("nproc").unwrap_or("?"),
                h.get("qemu").unwrap_or("QEMU ?")
            )
        })
        .collect();
    let mut uniq = hosts.clone();
    uniq.dedup();
    if let Some(h) = uniq.first() {
        let _ = writeln!(
            w,
            "\nHost: {}; each guest has 2 vCPUs and 1.5 GiB (tests/vm/run); the host may run \
             other work meanwhile, which the interleaved rounds spread over every candidate.\n",
            md_cell(h)
        );
    } else {
        let _ = writeln!(w);
    }

    // --- results
    let _ = writeln!(w, "## Results per boot\n");
    for b in boots {
        let _ = writeln!(w, "### Boot {} ({})\n", b.name, b.kernel());
        if !b.done {
            let _ = writeln!(
                w,
                "**The bench did not finish in this boot** (no `BENCH {} done` line): what it \
                 printed is below, the rest is missing.\n",
                b.name
            );
        }
        for size in &b.sizes {
            let bytes = b
                .candidates
                .iter()
                .find_map(|c| b.result(size, c).and_then(|l| l.get("bytes")))
                .unwrap_or("?");
            let _ = writeln!(w, "#### {} ({bytes} bytes)\n", size_label(size));
            let _ = writeln!(
                w,
                "| candidate | kind | median ms | min ms | p90 ms | x system | x memset | note |"
            );
            let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---|");
            for c in &b.candidates {
                let Some(l) = b.result(size, c) else {
                    continue;
                };
                let mut note: Vec<String> = ["backing", "source"]
                    .iter()
                    .filter_map(|k| l.get(k).map(str::to_owned))
                    .collect();
                if let Some(dma) = l.get("dma") {
                    note.push(format!("{dma}-bit DMA"));
                }
                note.extend(l.get("note").map(str::to_owned));
                let kind = l.get("kind").unwrap_or("?");
                if let Some(err) = l.get("error") {
                    let _ = writeln!(
                        w,
                        "| {c} | {kind} | failed | | | | | {} |",
                        md_cell(&format!(
                            "{err}{}",
                            if note.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", note.join(", "))
                            }
                        ))
                    );
                    continue;
                }
                let f = |k: &str| l.get(k).unwrap_or("-").to_owned();
                let rs = b.ratio(size, c, "system").map(two).unwrap_or("-".into());
                let rm = b.ratio(size, c, "memset").map(two).unwrap_or("-".into());
                let _ = writeln!(
                    w,
                    "| {c} | {kind} | {} | {} | {} | {rs} | {rm} | {} |",
                    f("median"),
                    f("min"),
                    f("p90"),
                    md_cell(&note.join(", "))
                );
            }
            let agree: Vec<&Line> = b
                .agree
                .iter()
                .filter(|a| a.words.get(2) == Some(size))
                .collect();
            if !agree.is_empty() {
                let _ = writeln!(w);
            }
            for a in agree {
                let _ = writeln!(
                    w,
                    "Same code path ({}): {} {} (spread {}x, tolerance {}%).",
                    a.get("group").unwrap_or("?"),
                    a.get("heaps").unwrap_or("?").replace(',', ", "),
                    if a.get("ok") == Some("yes") {
                        "agree"
                    } else {
                        "**disagree**"
                    },
                    a.get("spread").unwrap_or("?"),
                    a.num("tolerance")
                        .map(|t| format!("{:.0}", t * 100.0))
                        .unwrap_or("?".into())
                );
            }
            let _ = writeln!(w);
        }
        if !b.warns.is_empty() {
            let _ = writeln!(w, "Warnings of this boot:\n");
            for warn in &b.warns {
                let _ = writeln!(w, "- WARN {}", md_cell(warn));
            }
            let _ = writeln!(w);
        }
    }
    md
}

/// A goal table over every main-pass device heap of every boot. As the
/// `verdict`, each heap's row is its first-buffer run (`<heap>/uncached`, the
/// block cache off) where the boot has one, and says why where it has not;
/// otherwise the rows are the main pass's (cache on).
fn goal_table(w: &mut String, boots: &[Boot], verdict: bool, heading: &str) {
    let _ = writeln!(
        w,
        "| boot | {heading} | 1080p XRGB x system | 720p NV12 x system | \
         1080p XRGB x memset | 720p NV12 x memset | goal |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let (mut met, mut total) = (0, 0);
    for b in boots {
        let boot_has_uncached = b.candidates.iter().any(|c| b.pass(c) == Some("uncached"));
        for heap in b
            .candidates
            .iter()
            .filter(|c| b.kind(c) == Some("device") && b.pass(c).is_none())
        {
            let uncached = format!("{heap}/uncached");
            let (cand, label) = if !verdict {
                (heap.clone(), heap.clone())
            } else if b.pass(&uncached).is_some() {
                (uncached.clone(), uncached)
            } else if !boot_has_uncached {
                (heap.clone(), heap.clone())
            } else {
                let sg = b
                    .sizes
                    .iter()
                    .find_map(|s| b.result(s, heap))
                    .and_then(|l| l.get("backing"))
                    == Some("sg");
                let why = if sg {
                    "scatter-gather, never cached"
                } else {
                    "no cache-off run: cache-on numbers"
                };
                (heap.clone(), format!("{heap} ({why})"))
            };
            let (cells, result) = goal_row(b, &cand);
            total += 1;
            let v = match result {
                Ok(()) => {
                    met += 1;
                    "met".to_owned()
                }
                Err(m) => format!("**not met**: {}", m.join("; ")),
            };
            let _ = writeln!(
                w,
                "| {} | {label} | {} | {} |",
                b.name,
                cells.join(" | "),
                v
            );
        }
    }
    if total == 0 {
        let _ = writeln!(w, "| - | no device heap has numbers | | | | | not met |");
    }
    if verdict {
        let _ = writeln!(
            w,
            "\n{met} of {total} device heap rows meet the whole goal.\n"
        );
    } else {
        let _ = writeln!(
            w,
            "\n{met} of {total} device heap rows would meet it when a size is reallocated \
             (not the verdict).\n"
        );
    }
}

/// The compositor's steady state: one row per boot and case.
fn steady_section(w: &mut String, boots: &[Boot]) {
    let _ = writeln!(w, "## The compositor's steady state\n");
    let lines: Vec<(&Boot, &Line)> = boots
        .iter()
        .flat_map(|b| b.steady.iter().map(move |l| (b, l)))
        .collect();
    if lines.is_empty() {
        let _ = writeln!(w, "Not measured in this run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "One full-screen client redrawing every frame; heapland's own counts. Buffer \
         allocations per frame must be 0.\n"
    );
    let _ = writeln!(
        w,
        "| boot | case | mode | frames | composited | direct | fps | buffer allocations (per frame) | CPU/frame median ms | min | p90 | samples |"
    );
    let _ = writeln!(
        w,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut allocating = Vec::new();
    for (b, l) in &lines {
        let case = l.words.get(2).map(String::as_str).unwrap_or("?");
        let g = |k: &str| l.get(k).unwrap_or("-").to_owned();
        if let Some(err) = l.get("error") {
            let _ = writeln!(
                w,
                "| {} | {case} | {} | failed | | | | | | | | {} |",
                b.name,
                g("mode"),
                md_cell(err)
            );
            allocating.push(format!("{} {case}: no numbers", b.name));
            continue;
        }
        if l.num("allocations") != Some(0.0) {
            allocating.push(format!(
                "{} {case}: {} allocations",
                b.name,
                g("allocations")
            ));
        }
        let _ = writeln!(
            w,
            "| {} | {case} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} |",
            b.name,
            g("mode"),
            g("frames"),
            g("composited"),
            g("direct"),
            g("fps"),
            g("allocations"),
            g("allocations_per_frame"),
            g("cpu_median"),
            g("cpu_min"),
            g("cpu_p90"),
            g("n"),
        );
    }
    if allocating.is_empty() {
        let _ = writeln!(
            w,
            "\nNo buffer was allocated in any steady-state window: 0 allocations per frame in \
             every case and boot.\n"
        );
    } else {
        let _ = writeln!(
            w,
            "\n**Not 0 allocations per frame everywhere**: {}.\n",
            allocating.join("; ")
        );
    }
}

/// Camera to display: one row per boot and path, and the copying path's cost
/// relative to the zero-copy one.
fn camera_section(w: &mut String, boots: &[Boot]) {
    let _ = writeln!(w, "## Camera to display\n");
    if boots.iter().all(|b| b.camera.is_empty()) {
        let _ = writeln!(w, "Not measured in this run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "vivid's capture timestamp to the page flip that shows the frame, on heapland's drm \
         backend on vkms.\n"
    );
    let _ = writeln!(
        w,
        "| boot | path | camera heap | latency median ms | min | p90 | frames | copied per frame by the client (B) | by heapland (B) | scanned out directly |"
    );
    let _ = writeln!(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    let mut ratios = Vec::new();
    for b in boots {
        for l in &b.camera {
            let path = l.words.get(2).map(String::as_str).unwrap_or("?");
            let g = |k: &str| l.get(k).unwrap_or("-").to_owned();
            if let Some(err) = l.get("error") {
                let _ = writeln!(
                    w,
                    "| {} | {path} | | failed | | | | | | {} |",
                    b.name,
                    md_cell(err)
                );
                continue;
            }
            let _ = writeln!(
                w,
                "| {} | {path} | {} | {} | {} | {} | {} | {} | {} | {} of {} frames |",
                b.name,
                g("heap"),
                g("latency_median"),
                g("latency_min"),
                g("latency_p90"),
                g("n"),
                g("client_copied_per_frame"),
                g("compositor_copied_per_frame"),
                g("direct"),
                g("frames"),
            );
        }
        let median = |path: &str| {
            b.camera
                .iter()
                .find(|l| l.words.get(2).map(String::as_str) == Some(path))
                .and_then(|l| l.num("latency_median"))
        };
        if let (Some(copy), Some(zero)) = (median("gbm-copy"), median("heap-zero-copy")) {
            if zero > 0.0 {
                ratios.push(format!(
                    "{}: gbm-copy {:.2}x the zero-copy latency ({:+.3} ms)",
                    b.name,
                    copy / zero,
                    copy - zero
                ));
            }
        }
    }
    if !ratios.is_empty() {
        let _ = writeln!(w, "\n{}.\n", ratios.join("; "));
    } else {
        let _ = writeln!(w);
    }
}

/// heapland beside weston and sway: one row per boot and compositor, CPU per
/// frame also as a ratio to the weston of the same kind of renderer.
fn peers_section(w: &mut String, boots: &[Boot]) {
    let _ = writeln!(
        w,
        "## heapland beside weston and sway
"
    );
    if boots.iter().all(|b| b.peers.is_empty()) {
        let _ = writeln!(w, "Not measured in this run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "Each compositor alone on vkms (drm backend), one after another, round by round; the \
         same full-screen client redraws on every frame callback from `wl_shm` (composited) \
         and from heap dma-bufs (scanned out where the compositor can). Numbers are the \
         compositor's own process: RSS once it settled after start, context switches per second \
         over five idle seconds once start-up has quieted (two seconds without one, or 45 \
         seconds of waiting), `utime + stime` per frame (10 ms ticks over the window). \
         GL compositors run on Mesa 26.1 (llvmpipe); ratios are to the weston of the same \
         kind of renderer (GL or pixman). Without linux-dmabuf (Debian 12's weston and \
         wlroots pixman renderers, and wlroots 0.15's GLES2 renderer here, whose EGL found \
         no DRM device on vkms) there is no dma-buf number. heapland and weston run as root; sway \
         refuses root and runs as a seat user on seatd, with the ACL on the DRM nodes that \
         logind's `uaccess` would give it.\n"
    );
    let _ = writeln!(w, "![CPU time per frame of each compositor](peers.png)\n");
    let _ = writeln!(
        w,
        "| boot | compositor | RSS KiB | idle wake-ups/s | shm ms/frame | vs weston | shm fps | dma-buf ms/frame | vs weston | dma-buf fps |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut goals = Vec::new();
    for b in boots {
        let find = |name: &str| {
            b.peers
                .iter()
                .find(|l| l.words.get(2).map(String::as_str) == Some(name))
        };
        for l in &b.peers {
            let name = l.words.get(2).map(String::as_str).unwrap_or("?");
            if let Some(err) = l.get("error") {
                let _ = writeln!(
                    w,
                    "| {} | {name} | failed: {} | | | | | | | |",
                    b.name,
                    short_cell(err)
                );
                continue;
            }
            let weston = if name.ends_with("pixman") {
                "weston-pixman"
            } else {
                "weston-gl"
            };
            let vs = |key: &str| match (l.num(key), find(weston).and_then(|x| x.num(key))) {
                (Some(a), Some(base)) if base > 0.0 => format!("{:.2}", a / base),
                _ => "-".into(),
            };
            let g = |k: &str| l.get(k).unwrap_or("-").to_owned();
            let _ = writeln!(
                w,
                "| {} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                b.name,
                g("rss_kib"),
                g("idle_wakeups_per_s"),
                g("shm_cpu_per_frame"),
                vs("shm_cpu_per_frame"),
                g("shm_fps"),
                g("dmabuf_cpu_per_frame"),
                vs("dmabuf_cpu_per_frame"),
                g("dmabuf_fps"),
            );
        }
        for (heapland, weston) in [
            ("heapland-gles", "weston-gl"),
            ("heapland-pixman", "weston-pixman"),
        ] {
            let (Some(h), Some(wl)) = (find(heapland), find(weston)) else {
                continue;
            };
            for key in ["shm_cpu_per_frame", "dmabuf_cpu_per_frame"] {
                if let (Some(a), Some(base)) = (h.num(key), wl.num(key)) {
                    let met = if a <= base { "met" } else { "not met" };
                    goals.push(format!(
                        "{}: {heapland} {key} {a:.3} ms against {weston} {base:.3}: {met}",
                        b.name
                    ));
                }
            }
            if let Some(idle) = h.num("idle_wakeups_per_s") {
                let met = if idle == 0.0 { "met" } else { "not met" };
                goals.push(format!(
                    "{}: {heapland} idle wake-ups {idle}/s: {met}",
                    b.name
                ));
            }
        }
    }
    camera_table(w, boots, &mut goals);
    if !goals.is_empty() {
        let _ = writeln!(
            w,
            "\nGoals (heapland at most weston's CPU per frame, 0 idle wake-ups, a lower camera \
             to display latency than every peer):\n"
        );
        for g in goals {
            let _ = writeln!(w, "- {g}");
        }
    }
    let _ = writeln!(w);
}

/// The peers' camera: the bench's own camera client, and Debian's
/// weston-simple-dmabuf-v4l, in each compositor.
fn camera_table(w: &mut String, boots: &[Boot], goals: &mut Vec<String>) {
    if !boots
        .iter()
        .flat_map(|b| &b.peers)
        .any(|l| l.get("camera_latency_median").is_some() || l.get("camera_error").is_some())
    {
        return;
    }
    let _ = writeln!(
        w,
        "\nCamera to display in each compositor: the bench's camera client shows vivid's \
         640x480 XBGR32 frames full-screen, captured into heap dma-bufs attached through \
         linux-dmabuf where the compositor has it, else copied into `wl_shm`; the latency is \
         wp_presentation's presented time less the frame's V4L2 timestamp (start of exposure). \
         Debian's `weston-simple-dmabuf-v4l -f XR24 -d XR24` on the same vivid counts as shown \
         when vkms's CRCs of the CRTC change with the camera (and not while the screen is \
         still).\n"
    );
    let _ = writeln!(
        w,
        "| boot | compositor | camera buffers | latency median ms | p90 ms | vs weston | weston-simple-dmabuf-v4l |"
    );
    let _ = writeln!(w, "|---|---|---|---:|---:|---:|---|");
    for b in boots {
        let find = |name: &str| {
            b.peers
                .iter()
                .find(|l| l.words.get(2).map(String::as_str) == Some(name))
        };
        let key = "camera_latency_median";
        for l in &b.peers {
            let name = l.words.get(2).map(String::as_str).unwrap_or("?");
            if l.get("error").is_some() {
                continue;
            }
            let weston = if name.ends_with("pixman") {
                "weston-pixman"
            } else {
                "weston-gl"
            };
            let vs = match (l.num(key), find(weston).and_then(|x| x.num(key))) {
                (Some(a), Some(base)) if base > 0.0 => format!("{:.2}", a / base),
                _ => "-".into(),
            };
            let v4l = match l.get("v4l_client") {
                Some("shown") => md_cell(l.get("v4l_client_detail").unwrap_or("shown")),
                Some(_) => short_cell(l.get("v4l_client_detail").unwrap_or("not shown")),
                None => "-".into(),
            };
            match l.get("camera_error") {
                Some(e) => {
                    let _ = writeln!(
                        w,
                        "| {} | {name} | failed: {} | | | | {v4l} |",
                        b.name,
                        short_cell(e)
                    );
                }
                None => {
                    let g = |k: &str| l.get(k).unwrap_or("-").to_owned();
                    let _ = writeln!(
                        w,
                        "| {} | {name} | {} | {} | {} | {vs} | {v4l} |",
                        b.name,
                        g("camera_memory"),
                        g(key),
                        g("camera_latency_p90"),
                    );
                }
            }
        }
        for heapland in ["heapland-gles", "heapland-pixman"] {
            let Some(ours) = find(heapland).and_then(|l| l.num(key)) else {
                continue;
            };
            let peers: Vec<(&str, f64)> = b
                .peers
                .iter()
                .filter_map(|l| {
                    let name = l.words.get(2)?.as_str();
                    (!name.starts_with("heapland")).then_some((name, l.num(key)?))
                })
                .collect();
            if peers.is_empty() {
                continue;
            }
            let slower: Vec<String> = peers
                .iter()
                .filter(|(_, t)| *t <= ours)
                .map(|(n, t)| format!("{n} {t:.2} ms"))
                .collect();
            let failed: Vec<&str> = b
                .peers
                .iter()
                .filter_map(|l| {
                    let name = l.words.get(2)?.as_str();
                    let broken = l.get("error").is_some() || l.get("camera_error").is_some();
                    (!name.starts_with("heapland") && broken).then_some(name)
                })
                .collect();
            let verdict = match (slower.is_empty(), failed.is_empty()) {
                (true, true) => "met".to_owned(),
                (true, false) => format!(
                    "met against those measured; no numbers from {}",
                    failed.join(", ")
                ),
                (false, _) => format!("not met ({})", slower.join(", ")),
            };
            goals.push(format!(
                "{}: {heapland} camera latency {ours:.2} ms against {} peer(s): {verdict}",
                b.name,
                peers.len()
            ));
        }
    }
}

/// The path of `target` as written in a file at `from` (same folder: its name).
fn relative(target: &Path, from: &Path) -> String {
    let parent = |p: &Path| {
        p.parent()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
    };
    if parent(target) == parent(from) {
        if let Some(name) = target.file_name() {
            return name.to_string_lossy().into_owned();
        }
    }
    target.display().to_string()
}

pub fn main() -> std::process::ExitCode {
    let mut md = PathBuf::from("docs/performance.md");
    let mut png = PathBuf::from("docs/performance.png");
    let mut command = "tests/vm/run --bench".to_owned();
    let mut font = PathBuf::from(DEFAULT_FONT);
    let mut files = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next();
        match a.as_str() {
            "--md" | "--png" | "--command" | "--font" => {
                let Some(v) = value() else {
                    eprintln!("heapland-plot: {a} needs a value\n{USAGE}");
                    return std::process::ExitCode::from(2);
                };
                match a.as_str() {
                    "--md" => md = v.into(),
                    "--png" => png = v.into(),
                    "--command" => command = v,
                    _ => font = v.into(),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            f if !f.starts_with("--") => files.push(PathBuf::from(f)),
            _ => {
                eprintln!("heapland-plot: unknown argument {a}\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    if files.is_empty() {
        eprintln!("heapland-plot: no input files\n{USAGE}");
        return std::process::ExitCode::from(2);
    }
    let mut texts = Vec::new();
    for f in &files {
        match std::fs::read(f) {
            Ok(bytes) => texts.push(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                eprintln!("heapland-plot: {}: {e}", f.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let boots = parse(&texts);
    let has_alloc = boots.iter().any(|b| !b.results.is_empty());
    if !has_alloc
        && boots
            .iter()
            .all(|b| b.steady.is_empty() && b.camera.is_empty() && b.peers.is_empty())
    {
        eprintln!("heapland-plot: no BENCH results in {files:?}");
        return std::process::ExitCode::FAILURE;
    }
    for (path, what) in [(&md, "report"), (&png, "plot")] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("heapland-plot: {what} folder {}: {e}", dir.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // The plot is of allocation results; a run of the other parts has none.
    if has_alloc {
        if let Err(e) = crate::plot::render(&boots, &font, &png) {
            eprintln!("heapland-plot: {}: {e}", png.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let has_peers = boots.iter().any(|b| !b.peers.is_empty());
    let peers_png = png.with_file_name("peers.png");
    if has_peers {
        if let Err(e) = crate::plot::render_peers(&boots, &font, &peers_png) {
            eprintln!("heapland-plot: {}: {e}", peers_png.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let png_link = has_alloc.then(|| relative(&png, &md));
    let text = markdown(&boots, &command, png_link.as_deref());
    if let Err(e) = std::fs::write(&md, text) {
        eprintln!("heapland-plot: {}: {e}", md.display());
        return std::process::ExitCode::FAILURE;
    }
    eprintln!(
        "heapland-plot: wrote {}{} ({} boots)",
        md.display(),
        if has_alloc {
            format!(" and {}", png.display())
        } else {
            String::new()
        },
        boots.len()
    );
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Two boots the way the bench and tests/vm/run print them.
    pub const SAMPLE: &str = "\
noise before
BENCH 7 machine kernel=7.3.4+deb13-amd64 nproc=2 cpu=\"QEMU TCG CPU version 2.5+\" thp=always cmdline=\"console=ttyS0 quiet\" rounds=31 warmup=3 order=rotated tolerance=0.1
BENCH 7 1920x1080-XRGB8888 vkms-contig kind=device bytes=8294400 median=10.000 min=9.000 p90=12.000 n=31 x_system=0.90 x_memset=0.80 backing=contig source=migrate dma=64
BENCH 7 1920x1080-XRGB8888 vivid.0-contig kind=device bytes=8294400 median=13.000 min=9.500 p90=15.000 n=31 x_system=1.18 x_memset=1.04 backing=contig source=migrate dma=32
BENCH 7 1920x1080-XRGB8888 system kind=system bytes=8294400 median=11.000 min=10.000 p90=11.500 n=31 x_system=1.00 x_memset=0.88
BENCH 7 1920x1080-XRGB8888 gbm@vkms kind=gbm bytes=8294400 error=\"gbm_create_device on /dev/dri/card0: No such file or directory\"
BENCH 7 1920x1080-XRGB8888 memset kind=memset bytes=8294400 median=12.500 min=12.000 p90=13.000 n=31 x_system=1.14 x_memset=1.00
BENCH 7 agree 1920x1080-XRGB8888 group=\"contig migrate\" heaps=vkms-contig,vivid.0-contig spread=1.30 tolerance=0.1 ok=no
WARN 7 1920x1080-XRGB8888: vkms-contig (10.000 ms) and vivid.0-contig (13.000 ms) take the same path
BENCH 7 1280x720-NV12 vkms-contig kind=device bytes=1384448 median=3.000 min=2.000 p90=4.000 n=31 backing=contig source=migrate dma=64
BENCH 7 1280x720-NV12 vivid.0-contig kind=device bytes=1384448 median=3.100 min=2.000 p90=4.000 n=31 backing=contig source=migrate dma=32
BENCH 7 1280x720-NV12 system kind=system bytes=1384448 median=2.000 min=1.500 p90=2.500 n=31
BENCH 7 1280x720-NV12 gbm@vkms kind=gbm bytes=1384448 median=2.200 min=1.500 p90=2.500 n=31 note=\"R8 1280x1080 LINEAR|RENDERING\"
BENCH 7 1280x720-NV12 memset kind=memset bytes=1384448 median=2.000 min=1.500 p90=2.500 n=31
BENCH 7 done
BENCH 7 host accel=tcg cpu=\"Some CPU\" nproc=2 qemu=\"QEMU emulator version 7.2.15\"
BENCH 6.12 machine kernel=6.12.117+deb12-amd64 nproc=2 cpu=\"QEMU TCG CPU version 2.5+\" thp=always cmdline=x rounds=31 warmup=3
BENCH 6.12 1920x1080-XRGB8888 vkms-contig kind=device bytes=8294400 median=9.000 min=9.000 p90=12.000 n=31 backing=contig source=migrate dma=64
BENCH 6.12 1920x1080-XRGB8888 system kind=system bytes=8294400 median=10.000 min=10.000 p90=11.500 n=31
";

    #[test]
    fn parses_boots_results_and_warnings() {
        let boots = parse(&[SAMPLE.to_owned()]);
        assert_eq!(boots.len(), 2);
        let b = &boots[0];
        assert_eq!(b.name, "7");
        assert!(b.done && !boots[1].done);
        assert_eq!(b.sizes, ["1920x1080-XRGB8888", "1280x720-NV12"]);
        assert_eq!(
            b.candidates,
            [
                "vkms-contig",
                "vivid.0-contig",
                "system",
                "gbm@vkms",
                "memset"
            ]
        );
        assert_eq!(b.warns.len(), 1);
        assert_eq!(b.accel(), "tcg");
        assert_eq!(b.kind("vivid.0-contig"), Some("device"));
        let r = b.ratio("1280x720-NV12", "vkms-contig", "system").unwrap();
        assert!((r - 1.5).abs() < 1e-9);
        assert!(within(1.004, 1.0) && !within(1.006, 1.0));
    }

    #[test]
    fn markdown_reports_goals_honestly() {
        let boots = parse(&[SAMPLE.to_owned()]);
        let md = markdown(&boots, "tests/vm/run --bench", Some("performance.png"));
        // vkms-contig in boot 7: 0.91x at 1080p but 1.50x at 720p NV12.
        let row = md
            .lines()
            .find(|l| l.starts_with("| 7 | vkms-contig |"))
            .unwrap();
        assert!(row.contains("0.91 met"), "{row}");
        assert!(row.contains("1.50 **not met**"), "{row}");
        assert!(
            row.contains("**not met**: 1280x720 NV12 x system 1.50 > 1.00"),
            "{row}"
        );
        // Boot 6.12 has no 720p numbers: not met, saying so.
        let row = md
            .lines()
            .find(|l| l.starts_with("| 6.12 | vkms-contig |"))
            .unwrap();
        assert!(row.contains("no numbers"), "{row}");
        assert!(md.contains("0 of 3 device heap rows meet the whole goal."));
        assert!(md.contains("| gbm@vkms | gbm | failed |"));
        assert!(md.contains("R8 1280x1080"));
        assert!(md.contains("**disagree**"));
        assert!(md.contains("did not finish"));
        assert!(md.contains("    tests/vm/run --bench"));
        assert!(md.contains("QEMU emulator version 7.2.15"));
    }

    /// The uncached pass, the steady state and the camera of one boot.
    const MORE: &str = "\
BENCH 9 machine kernel=7.3.4 nproc=2 cpu=x thp=always cmdline=x rounds=31 warmup=3
BENCH 9 1920x1080-XRGB8888 vkms-contig kind=device bytes=8294400 median=4.000 min=3.900 p90=4.400 n=31 backing=contig source=migrate dma=64
BENCH 9 1920x1080-XRGB8888 system kind=system bytes=8294400 median=16.000 min=15.000 p90=17.000 n=31
BENCH 9 1920x1080-XRGB8888 memset kind=memset bytes=8294400 median=20.000 min=19.000 p90=21.000 n=31
BENCH 9 1920x1080-XRGB8888 vkms-contig/uncached kind=device bytes=8294400 median=18.000 min=17.000 p90=19.000 n=31 pass=uncached backing=contig source=migrate dma=64
BENCH 9 1920x1080-XRGB8888 system@uncached-pass kind=system bytes=8294400 median=15.000 min=14.000 p90=16.000 n=31 pass=uncached
BENCH 9 1920x1080-XRGB8888 memset@uncached-pass kind=memset bytes=8294400 median=20.000 min=19.000 p90=21.000 n=31 pass=uncached
BENCH 9 steady drm-heap/dmabuf backend=drm allocator=heap client=dmabuf mode=1920x1080@60 frames=900 composited=0 direct=900 allocations=0 allocations_per_frame=0.000 cpu_median=4.900 cpu_min=4.700 cpu_p90=5.100 n=15 fps=60.0 secs=15.0
BENCH 9 steady drm-gbm/shm backend=drm allocator=gbm client=shm mode=1920x1080@60 frames=900 composited=900 direct=0 allocations=2 allocations_per_frame=0.002 cpu_median=8.200 cpu_min=8.000 cpu_p90=8.400 n=15 fps=60.0 secs=15.0
BENCH 9 camera heap-zero-copy width=640 height=480 heap=vivid.0-contig latency_median=15.000 latency_min=11.000 latency_p90=19.000 n=300 discarded=0 early=0 client_copied_per_frame=0 compositor_copied_per_frame=0 frames=290 direct=290 composited=0
BENCH 9 camera gbm-copy width=640 height=480 heap=vivid.0-contig latency_median=21.000 latency_min=12.000 latency_p90=29.000 n=300 discarded=1 early=0 client_copied_per_frame=1228800 compositor_copied_per_frame=0 frames=300 direct=300 composited=0
BENCH 9 done
";

    #[test]
    fn passes_steady_state_and_camera() {
        let boots = parse(&[MORE.to_owned()]);
        let b = &boots[0];
        // Each pass against its own references.
        assert_eq!(
            b.ratio("1920x1080-XRGB8888", "vkms-contig", "system"),
            Some(0.25)
        );
        assert_eq!(
            b.ratio("1920x1080-XRGB8888", "vkms-contig/uncached", "system"),
            Some(1.2)
        );
        assert_eq!(b.plotted().len(), 4);
        let md = markdown(&boots, "tests/vm/run --bench", None);
        let cold = md
            .lines()
            .find(|l| l.starts_with("| 9 | vkms-contig/uncached |"))
            .unwrap();
        assert!(cold.contains("1.20 **not met**"), "{cold}");
        let warm = md
            .lines()
            .find(|l| l.starts_with("| 9 | vkms-contig |"))
            .unwrap();
        assert!(warm.contains("0.25 met"), "{warm}");
        assert!(md.contains("### The first buffer of a size"));
        assert!(md.contains("0 of 1 device heap rows meet the whole goal."));
        // No 720p numbers in the sample: the cache-on row misses the goal too.
        assert!(md.contains("0 of 1 device heap rows would meet it when a size is reallocated"));
        assert!(md.contains(
            "| 9 | drm-heap/dmabuf | 1920x1080@60 | 900 | 0 | 900 | 60.0 | 0 (0.000) | 4.900 |"
        ));
        assert!(md
            .contains("**Not 0 allocations per frame everywhere**: 9 drm-gbm/shm: 2 allocations."));
        assert!(md.contains("| 9 | gbm-copy | vivid.0-contig | 21.000 | 12.000 | 29.000 | 300 | 1228800 | 0 | 300 of 300 frames |"));
        assert!(md.contains("9: gbm-copy 1.40x the zero-copy latency (+6.000 ms)"));
    }

    /// The peers part of one boot, with the camera.
    const PEERS: &str = "\
BENCH 8 machine kernel=7.3.4 nproc=2 cpu=x thp=always cmdline=x rounds=31 warmup=3
BENCH 8 peer heapland-pixman rss_kib=12000 idle_wakeups_per_s=0.0 shm_cpu_per_frame=7.000 shm_fps=60.0 dmabuf_cpu_per_frame=4.000 dmabuf_fps=60.0 camera_memory=dma-buf camera_latency_median=20.000 camera_latency_min=15.000 camera_latency_p90=25.000 camera_n=60 camera_discarded=0 camera_failed_runs=0 v4l_client=shown v4l_client_detail=\"shown (50 distinct of 120 frames; 1 while still)\" rounds=1
BENCH 8 peer weston-pixman rss_kib=17000 idle_wakeups_per_s=4.0 shm_cpu_per_frame=14.000 shm_fps=30.0 dmabuf_cpu_per_frame=none dmabuf_fps=none camera_memory=shm camera_latency_median=40.000 camera_latency_min=30.000 camera_latency_p90=50.000 camera_n=60 camera_discarded=0 camera_failed_runs=0 v4l_client=not-shown v4l_client_detail=\"not shown: no linux-dmabuf\" rounds=1
BENCH 8 peer sway-pixman rss_kib=15000 idle_wakeups_per_s=1.0 shm_cpu_per_frame=9.000 shm_fps=60.0 dmabuf_cpu_per_frame=none dmabuf_fps=none camera_memory=shm camera_latency_median=18.000 camera_latency_min=12.000 camera_latency_p90=30.000 camera_n=60 camera_discarded=0 camera_failed_runs=0 v4l_client=shown v4l_client_detail=x rounds=1
BENCH 8 peer weston-gl error=\"exited\"
BENCH 8 done
";

    #[test]
    fn peers_camera_goal_needs_every_peer_slower() {
        let boots = parse(&[PEERS.to_owned()]);
        let md = markdown(&boots, "tests/vm/run --bench", None);
        assert!(
            md.contains("| 8 | heapland-pixman | dma-buf | 20.000 | 25.000 | 0.50 | shown (50 distinct of 120 frames; 1 while still) |"),
            "{md}"
        );
        assert!(md.contains(
            "| 8 | weston-pixman | shm | 40.000 | 50.000 | 1.00 | not shown: no linux-dmabuf |"
        ));
        // sway-pixman was faster: the goal is not met, and says against whom.
        assert!(md.contains(
            "8: heapland-pixman camera latency 20.00 ms against 2 peer(s): not met (sway-pixman 18.00 ms)"
        ));
        assert!(md.contains("| 8 | weston-gl | failed: exited |"));
        assert!(md.contains("8: heapland-pixman idle wake-ups 0/s: met"));
    }

    #[test]
    fn dates() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
