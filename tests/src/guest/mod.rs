//! In-guest tests: each area contributes a list of named tests that the
//! `heapland-guest` runner executes inside the QEMU guest.

/// One in-guest test. `run` returns `Err` with a message saying what went wrong.
pub struct Test {
    /// Stable name printed on the result line, e.g. `kernel::alloc_mmap_roundtrip`.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> Result<(), String>,
}
