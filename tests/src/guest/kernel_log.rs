//! The guest's kernel log: mark a point in it and look for kernel complaints after it.

use std::fs;
use std::process::Command;

/// Patterns that mean the kernel complained (same list the host checks on the console).
const BAD: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "general protection",
    "Call Trace",
    "kmemleak",
];

/// A unique line written into the kernel log; `complaints_since` looks after it.
pub struct Mark(String);

impl Mark {
    pub fn new(what: &str) -> Self {
        let line = format!("heapland-guest mark {} {}", std::process::id(), what);
        // Best effort: /dev/kmsg is writable by root in the guest.
        let _ = fs::write("/dev/kmsg", format!("{line}\n"));
        Self(line)
    }

    /// Kernel log lines after the mark that match a complaint pattern.
    pub fn complaints_since(&self) -> Result<Vec<String>, String> {
        let out = Command::new("dmesg")
            .output()
            .map_err(|e| format!("run dmesg: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let after = match text.rfind(&self.0) {
            Some(pos) => &text[pos..],
            None => &text[..],
        };
        Ok(after
            .lines()
            .filter(|l| BAD.iter().any(|b| l.contains(b)))
            .map(str::to_owned)
            .collect())
    }

    /// Err listing the complaints, if any.
    pub fn check_clean(&self) -> Result<(), String> {
        let c = self.complaints_since()?;
        if c.is_empty() {
            Ok(())
        } else {
            Err(format!("kernel log after the mark: {}", c.join(" | ")))
        }
    }

    /// The kernel log after the mark, for error messages (last `n` lines).
    pub fn tail(&self, n: usize) -> String {
        let out = Command::new("dmesg").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let after = text.rfind(&self.0).map_or(&text[..], |p| &text[p..]);
        let lines: Vec<&str> = after.lines().skip(1).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}
