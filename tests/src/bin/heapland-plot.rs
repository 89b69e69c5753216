//! heapland-plot: the host side of `tests/vm/run --bench`. Reads the `BENCH`
//! and `WARN` lines of every boot (the guest consoles, or files of just those
//! lines) and writes docs/performance.md (tables, machine, goals met or not)
//! and docs/performance.png (grouped bars: ratio to the system heap per
//! candidate and size, one panel per boot).
//!
//! Text in the plot is drawn with DejaVu Sans from fonts-dejavu-core
//! (tests/deps installs it); nothing is embedded.

#[cfg(target_env = "gnu")]
#[path = "heapland-plot/plot.rs"]
mod plot;
#[cfg(target_env = "gnu")]
#[path = "heapland-plot/report.rs"]
mod report;

#[cfg(target_env = "gnu")]
fn main() -> std::process::ExitCode {
    report::main()
}

#[cfg(not(target_env = "gnu"))]
fn main() -> std::process::ExitCode {
    eprintln!("heapland-plot runs on the host: build it for a glibc target");
    std::process::ExitCode::FAILURE
}
