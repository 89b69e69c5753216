//! What heapland-bench (in the guest), heapland-bench-gbm (its GBM helper) and
//! heapland-plot (on the host) share: the work timed per buffer, the statistics,
//! and the `BENCH` lines that carry the results from the guest's console to the
//! host.
//!
//! # `BENCH` lines
//!
//! One record per line, words separated by single spaces, then `key=value`
//! fields; a value with spaces or quotes is written `"..."` with `\"` and `\\`
//! escapes:
//!
//! ```text
//! BENCH <boot> machine kernel=<release> nproc=<n> cpu="<model>" thp=<mode> cmdline="<...>" rounds=<n> warmup=<n> order=rotated tolerance=<fraction>
//! BENCH <boot> <size> <candidate> kind=<kind> bytes=<n> median=<ms> min=<ms> p90=<ms> n=<rounds> x_system=<ratio> x_memset=<ratio> [backing=.. source=.. dma=..] [note="..."]
//! BENCH <boot> <size> <candidate> kind=<kind> bytes=<n> error="<why it has no numbers>"
//! BENCH <boot> agree <size> group="<backing> <source>" heaps=<a>,<b>,.. spread=<max/min> tolerance=<fraction> ok=yes|no
//! BENCH <boot> steady <case> backend=<headless|drm> allocator=<heap|gbm> client=<dmabuf|shm> mode=<WxH@Hz> frames=<n> composited=<n> direct=<n> allocations=<n> allocations_per_frame=<f> cpu_median=<ms> cpu_min=<ms> cpu_p90=<ms> n=<samples> fps=<f> secs=<s>
//! BENCH <boot> steady <case> backend=.. allocator=.. client=.. mode=.. error="<why>"
//! BENCH <boot> camera <path> width=<w> height=<h> heap=<name> latency_median=<ms> latency_min=<ms> latency_p90=<ms> n=<frames> discarded=<n> early=<n> client_copied_per_frame=<bytes> compositor_copied_per_frame=<bytes> frames=<n> direct=<n> composited=<n>
//! BENCH <boot> camera <path> ... error="<why>"
//! BENCH <boot> done
//! BENCH <boot> host accel=<tcg|kvm> cpu="<host model>" nproc=<n> qemu="<version>"   (added by tests/vm/run)
//! ```
//!
//! `steady` lines are the compositor's steady state (tests/src/guest/steady_state.rs):
//! `<case>` is `headless/<client>` or `drm-<allocator>/<client>`; the counts are
//! totals over every measured window of the case, `cpu_*` is heapland's CPU time per
//! frame over one-second samples.
//!
//! `camera` lines are camera to display (tests/src/guest/camera_latency.rs): `<path>` is
//! `heap-zero-copy` or `gbm-copy`; latencies are capture timestamp to page flip over
//! every measured frame; `frames`, `direct` and `composited` are heapland's own counts
//! over the measured runs.
//!
//! `<size>` is `<width>x<height>-<FOURCC>` (`1920x1080-XRGB8888`); times are
//! milliseconds per buffer; `x_system` and `x_memset` are ratios of medians,
//! `-` where the reference has no numbers.

use std::{collections::BTreeMap, time::Duration};

/// The sizes issue 10's allocation goal names, as `<size>` words of `BENCH` lines:
/// heapland-bench's uncached pass runs these, heapland-plot judges the goal at them.
pub const GOAL_SIZES: [&str; 2] = ["1920x1080-XRGB8888", "1280x720-NV12"];

/// Page size of every kernel the guest boots (x86_64).
pub const PAGE: usize = 4096;

/// Writes one byte in every page, so that every page is really faulted in and
/// written: the "first touch" of every candidate.
pub fn touch(bytes: &mut [u8]) {
    for i in (0..bytes.len()).step_by(PAGE) {
        // SAFETY: i < len; volatile so the stores are not merged or dropped.
        unsafe { std::ptr::write_volatile(bytes.as_mut_ptr().add(i), 1) };
    }
}

/// Median, minimum and 90th percentile of one candidate's rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub p90: Duration,
    pub n: usize,
}

impl Stats {
    /// Statistics of `times` (any order); `None` if it is empty. The median of
    /// an even count is the mean of the middle two; p90 is the nearest rank
    /// (the smallest time at least 90% of the rounds do not exceed).
    pub fn of(times: &[Duration]) -> Option<Stats> {
        if times.is_empty() {
            return None;
        }
        let mut t = times.to_vec();
        t.sort();
        let n = t.len();
        let median = if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2
        };
        let rank = (n * 9).div_ceil(10).max(1);
        Some(Stats {
            median,
            min: t[0],
            p90: t[rank - 1],
            n,
        })
    }
}

/// Milliseconds with microsecond resolution, as written in `BENCH` lines.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The ratio `a / b` with two decimals, or `-` without a reference.
pub fn ratio(a: Duration, b: Option<Duration>) -> String {
    match b {
        Some(b) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".to_owned(),
    }
}

/// Quotes a field value where it needs it.
pub fn quote(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '=')
    {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One parsed `BENCH` line: its leading words (after `BENCH`) and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    pub words: Vec<String>,
    pub fields: BTreeMap<String, String>,
}

impl Line {
    /// Parses a console line; `None` unless it starts with `BENCH `.
    pub fn parse(line: &str) -> Option<Line> {
        let rest = line.trim_end().strip_prefix("BENCH ")?;
        let mut out = Line::default();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == '=' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            if chars.peek() != Some(&'=') {
                out.words.push(word);
                continue;
            }
            chars.next();
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                value.push(e);
                            }
                        }
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            out.fields.insert(word, value);
        }
        Some(out)
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A field's value as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

/// One line of `heapland --stats` (compositor/src/frame_stats.rs): the
/// compositor's running totals at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Output frames with new content.
    pub frames: u64,
    /// Of them, drawn into a buffer of the compositor's.
    pub composited: u64,
    /// Of them, a client buffer scanned out as it is.
    pub direct: u64,
    /// Buffers the compositor allocated.
    pub buffer_allocations: u64,
    /// The compositor's CPU time, user and system.
    pub cpu_ns: u64,
    /// CLOCK_MONOTONIC when the line was written.
    pub monotonic_ns: u64,
}

impl Totals {
    /// Parses a whole line; `None` if a field is missing or not a number (a
    /// line still being written, say).
    pub fn parse(line: &str) -> Option<Totals> {
        let mut t = Totals::default();
        let mut seen = 0;
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            let slot = match key {
                "frames" => &mut t.frames,
                "composited" => &mut t.composited,
                "direct" => &mut t.direct,
                "buffer_allocations" => &mut t.buffer_allocations,
                "cpu_ns" => &mut t.cpu_ns,
                "monotonic_ns" => &mut t.monotonic_ns,
                _ => continue,
            };
            *slot = value;
            seen += 1;
        }
        (seen == 6).then_some(t)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            frames: self.frames.saturating_sub(earlier.frames),
            composited: self.composited.saturating_sub(earlier.composited),
            direct: self.direct.saturating_sub(earlier.direct),
            buffer_allocations: self
                .buffer_allocations
                .saturating_sub(earlier.buffer_allocations),
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            monotonic_ns: self.monotonic_ns.saturating_sub(earlier.monotonic_ns),
        }
    }
}

/// The commands heapland-bench sends its GBM helper, one per line on the
/// helper's stdin; every command gets one line back on its stdout.
///
/// - the helper starts with `ready <backend>` or `error <why>` (then exits);
/// - `prepare <width> <height> <FOURCC>`: `ok <what it allocates>` or
///   `error <why>`;
/// - `run`: one buffer as prepared, `ok <nanoseconds>` or `error <why>`;
/// - `quit` (or end of input): exits.
pub mod gbm_protocol {
    pub const READY: &str = "ready";
    pub const OK: &str = "ok";
    pub const ERROR: &str = "error";
    pub const PREPARE: &str = "prepare";
    pub const RUN: &str = "run";
    pub const QUIT: &str = "quit";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[d(5), d(1), d(3)]).unwrap();
        assert_eq!((s.median, s.min, s.p90, s.n), (d(3), d(1), d(5), 3));
        let s = Stats::of(&[d(4), d(1), d(2), d(3)]).unwrap();
        assert_eq!(s.median, Duration::from_micros(2500));
        let ten: Vec<_> = (1..=10).map(d).collect();
        assert_eq!(Stats::of(&ten).unwrap().p90, d(9));
        let many: Vec<_> = (1..=31).map(d).collect();
        let s = Stats::of(&many).unwrap();
        assert_eq!((s.median, s.p90), (d(16), d(28)));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn lines_round_trip() {
        let line = format!(
            "BENCH 7-cma 1920x1080-XRGB8888 gbm@vkms kind=gbm median=1.500 error={} note={}",
            quote("cannot open \"x\" \\ now"),
            quote("R8")
        );
        let l = Line::parse(&line).unwrap();
        assert_eq!(l.words, ["7-cma", "1920x1080-XRGB8888", "gbm@vkms"]);
        assert_eq!(l.get("kind"), Some("gbm"));
        assert_eq!(l.num("median"), Some(1.5));
        assert_eq!(l.get("error"), Some("cannot open \"x\" \\ now"));
        assert_eq!(l.get("note"), Some("R8"));
        assert!(Line::parse("INFO x").is_none());
        assert_eq!(quote(""), "\"\"");
        assert_eq!(
            Line::parse("BENCH 6.12 done").unwrap().words,
            ["6.12", "done"]
        );
    }

    #[test]
    fn touch_writes_every_page() {
        let mut v = vec![0u8; PAGE * 3 + 1];
        touch(&mut v);
        assert_eq!(v.iter().filter(|&&b| b == 1).count(), 4);
    }

    #[test]
    fn compositor_totals() {
        let a = Totals::parse(
            "frames=10 composited=4 direct=6 buffer_allocations=3 cpu_ns=5000 monotonic_ns=100",
        )
        .unwrap();
        assert_eq!((a.frames, a.direct, a.buffer_allocations), (10, 6, 3));
        let b = Totals::parse(
            "frames=70 composited=4 direct=66 buffer_allocations=3 cpu_ns=9000 monotonic_ns=1100",
        )
        .unwrap();
        let d = b.since(&a);
        assert_eq!((d.frames, d.direct, d.buffer_allocations), (60, 60, 0));
        assert_eq!((d.cpu_ns, d.monotonic_ns), (4000, 1000));
        assert!(Totals::parse("frames=1 composited=1").is_none());
        assert!(Totals::parse(
            "frames=1 composited=x direct=0 buffer_allocations=0 cpu_ns=1 monotonic_ns=1"
        )
        .is_none());
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(d(3), Some(d(2))), "1.50");
        assert_eq!(ratio(d(3), None), "-");
        assert_eq!(ms(Duration::from_micros(1234)), "1.234");
    }
}
