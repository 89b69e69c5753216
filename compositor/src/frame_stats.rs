//! Steady-state numbers for benchmarks (`--stats PATH`): frames shown, how
//! they were shown, buffers allocated and CPU time.
//!
//! A compositor in steady state (one client redrawing at the refresh rate)
//! should allocate nothing per frame: every buffer it scans out or renders
//! into comes from a swapchain made once. Only the compositor knows which
//! buffers it allocated and which frames it queued, so it counts them itself
//! and writes the running totals, with its CPU time read at the same moment,
//! once a second. A benchmark takes the difference of two lines: frames,
//! allocations and CPU time over the same window, with nothing of its own in
//! the measurement.
//!
//! One line per second, cumulative since start-up, `key=value` separated by
//! spaces (documented in tests/src/bench.rs, which parses it):
//!
//! `frames=F composited=C direct=D buffer_allocations=A cpu_ns=N monotonic_ns=M`
//!
//! - `frames`: output frames with new content, queued to KMS (drm) or
//!   rendered (headless); `composited` of them drawn into a buffer of
//!   heapland's, `direct` scanned out of a client buffer without a copy;
//! - `buffer_allocations`: buffers heapland allocated (scanout swapchains,
//!   headless output buffers), from any allocator;
//! - `cpu_ns`: the process's CPU time, user and system, all threads;
//! - `monotonic_ns`: CLOCK_MONOTONIC at the same moment.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use calloop::{
    timer::{TimeoutAction, Timer},
    LoopHandle,
};
use rustix::time::{clock_gettime, ClockId};
use tracing::warn;

use crate::state::Heapland;

/// Buffers allocated by this process. Process-wide rather than per output:
/// the allocators live in backend code that has no `Heapland` at hand, and
/// the question is the compositor's total.
static BUFFER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// How often the totals are written.
const INTERVAL: Duration = Duration::from_secs(1);

/// Records that heapland allocated one buffer.
pub fn buffer_allocated() {
    BUFFER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
}

/// How an output frame reached the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Drawn into one of heapland's buffers.
    Composited,
    /// A client buffer scanned out as it is.
    Direct,
}

/// Frame counts of all outputs.
#[derive(Debug, Default)]
pub struct FrameStats {
    composited: u64,
    direct: u64,
}

impl FrameStats {
    /// Counts one output frame with new content.
    pub fn frame(&mut self, shown: Shown) {
        match shown {
            Shown::Composited => self.composited += 1,
            Shown::Direct => self.direct += 1,
        }
    }

    fn line(&self) -> String {
        let ns = |id| {
            let t = clock_gettime(id);
            t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
        };
        format!(
            "frames={} composited={} direct={} buffer_allocations={} cpu_ns={} monotonic_ns={}\n",
            self.composited + self.direct,
            self.composited,
            self.direct,
            BUFFER_ALLOCATIONS.load(Ordering::Relaxed),
            ns(ClockId::ProcessCPUTime),
            ns(ClockId::Monotonic),
        )
    }
}

/// Why `--stats` cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("--stats {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot add the --stats timer: {0}")]
    Timer(String),
}

/// Writes the totals to `path` (truncated first) now and once a second.
pub fn start(path: &Path, handle: &LoopHandle<'static, Heapland>) -> Result<(), StatsError> {
    let mut file = File::create(path).map_err(|source| StatsError::Create {
        path: path.display().to_string(),
        source,
    })?;
    let shown = path.display().to_string();
    handle
        .insert_source(Timer::immediate(), move |_, _, state| {
            // One write per line, so a reader never sees half of one.
            if let Err(err) = file.write_all(state.frame_stats.line().as_bytes()) {
                warn!("--stats {shown}: {err}; no more statistics");
                return TimeoutAction::Drop;
            }
            TimeoutAction::ToDuration(INTERVAL)
        })
        .map_err(|e| StatsError::Timer(e.to_string()))?;
    Ok(())
}
