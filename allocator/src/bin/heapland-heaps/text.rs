//! The reports rendered for people: one block per heap, labels on the left.

use std::fmt::Write as _;

use crate::report::{bytes, ForReport, HeapReport, ListReport};

/// Width of the label column.
const LABEL: usize = 14;

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<LABEL$}{value}");
}

/// Lines after the first of a multi-line value.
fn more(out: &mut String, value: &str) {
    let _ = writeln!(out, "  {:<LABEL$}{value}", "");
}

/// One heap as a block.
pub fn heap(out: &mut String, h: &HeapReport) {
    let _ = writeln!(out, "{}: {}", h.name, h.kind_phrase());
    line(out, "node", &h.dev_path);
    if h.properties_known {
        let memory = match (h.contiguous, h.backing) {
            (Some(true), Some(b)) => format!("physically contiguous (backing {b})"),
            (_, Some(b)) => format!("scatter-gather pages (backing {b})"),
            _ => "unknown".into(),
        };
        line(out, "memory", &memory);
    } else {
        line(out, "memory", "unknown");
    }
    if let Some(source) = &h.contig_source {
        line(out, "comes from", source);
    }
    line(out, "DMA reach", &h.dma_reach);
    let max = match h.max_alloc_bytes {
        Some(n) => format!("{} ({n} bytes)", bytes(n)),
        None if h.properties_known => "no limit but memory".into(),
        None => "unknown".into(),
    };
    line(out, "max alloc", &max);
    line(out, "alignment", &bytes(h.alignment_bytes));
    if let Some(c) = h.coherent {
        line(out, "coherent", if c { "yes" } else { "no" });
    }
    line(out, "accounting", &h.accounting_phrase());
    line(out, "per user", &h.per_user_phrase());
    for s in &h.served {
        let driver = match &s.driver {
            Some(d) => format!("driver {d}"),
            None => "no driver bound".into(),
        };
        let rank = match s.rank {
            Some(r) => format!(", its heap of rank {r}"),
            None => String::new(),
        };
        line(
            out,
            "serves",
            &format!("{} ({} bus, {driver}){rank}", s.name, s.bus),
        );
        line(out, "bus path", &s.sysfs_path);
        let mut nodes = s.nodes.iter().map(|n| match &n.path {
            Some(p) => format!("{p} ({})", n.dev),
            None => format!("{} (no /dev name; {})", n.dev, n.sysfs_path),
        });
        match nodes.next() {
            Some(first) => {
                line(out, "its nodes", &first);
                for n in nodes {
                    more(out, &n);
                }
            }
            None => line(out, "its nodes", "none"),
        }
    }
}

/// `heapland-heaps list`.
pub fn list(r: &ListReport) -> String {
    let mut out = String::new();
    for (i, h) in r.heaps.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        heap(&mut out, h);
    }
    if !r.skipped.is_empty() {
        if !r.heaps.is_empty() {
            out.push('\n');
        }
        out.push_str("found but not usable:\n");
        for s in &r.skipped {
            let _ = writeln!(out, "  {}: {}", s.name, s.reason);
        }
    }
    out
}

/// `heapland-heaps for`.
pub fn choice(r: &ForReport) -> String {
    let mut out = String::new();
    match &r.heap {
        Some(h) => {
            let _ = writeln!(out, "heap          {} ({})", h.name, h.dev_path);
        }
        None => out.push_str("heap          none fits\n"),
    }
    for (i, d) in r.devices.iter().enumerate() {
        let needs = d
            .needs
            .as_ref()
            .map(|n| n.phrase())
            .unwrap_or_else(|| "unknown".into());
        let text = format!("{}: {} ({}), needs {needs}", d.arg, d.name, d.dev);
        let _ = writeln!(out, "{:<LABEL$}{text}", if i == 0 { "devices" } else { "" });
        let links: Vec<String> = d
            .heaps
            .iter()
            .enumerate()
            .map(|(rank, name)| format!("{rank} {name}"))
            .collect();
        let links = if links.is_empty() {
            "links to no heap".to_owned()
        } else {
            format!("heaps by rank: {}", links.join(", "))
        };
        let _ = writeln!(out, "{:<LABEL$}  {links}", "");
    }
    if let Some(n) = &r.needs {
        let _ = writeln!(out, "{:<LABEL$}{}", "together", n.phrase());
    }
    if let Some(b) = &r.buffer {
        let modifier = b.modifier.as_deref().unwrap_or("none producible");
        let _ = writeln!(
            out,
            "{:<LABEL$}{} {}x{}, modifier {modifier}, {} bytes ({} allocated)",
            "buffer", b.format, b.width, b.height, b.size, b.alloc_size
        );
        for (i, p) in b.planes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<LABEL$}offset {}, pitch {}, {} bytes",
                format!("  plane {i}"),
                p.offset,
                p.pitch,
                p.size
            );
        }
    }
    if !r.passed_over.is_empty() {
        out.push_str("\npassed over\n");
        let width = r
            .passed_over
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        for p in &r.passed_over {
            let _ = writeln!(out, "  {:<width$}  {}", p.name, p.reasons.join("; "));
        }
    }
    out
}
