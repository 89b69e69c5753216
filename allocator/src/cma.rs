//! The kernel's CMA heaps and the CMA areas behind them.
//!
//! With `CONFIG_DMABUF_HEAPS_CMA` the heap core lists one heap per CMA area,
//! named after the area, and on newer kernels the default area a second time
//! as `default_cma_region`; the default area is the one `cma=` (or
//! `CONFIG_CMA_SIZE_MBYTES`) creates, called `reserved`. Areas appear in
//! `/sys/kernel/mm/cma/<area>/` (`CONFIG_CMA_SYSFS`), with `total_pages` from
//! 6.14 on. A CMA heap's memory is contiguous and cacheable like the system
//! heap's, but nothing says where the area lies, so its DMA reach is unknown,
//! and it charges nobody.

use std::{fs, path::PathBuf};

use crate::discovery::SysRoots;

/// The name the heap core gives the default CMA area's heap on kernels that
/// list every area (the legacy name, the area's own, may be there too).
pub const DEFAULT_CMA_HEAP: &str = "default_cma_region";

/// The name of the default CMA area, as `cma=` creates it.
pub const DEFAULT_AREA: &str = "reserved";

/// One CMA area, as `/sys/kernel/mm/cma/<area>/` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmaArea {
    /// The area's name, e.g. `reserved`.
    pub name: String,
    /// Its size in bytes, where the kernel publishes `total_pages`.
    pub total_bytes: Option<u64>,
}

fn areas_dir(roots: &SysRoots) -> PathBuf {
    roots.sysfs.join("kernel/mm/cma")
}

/// The CMA areas of the system, by name (empty where there are none or
/// `CONFIG_CMA_SYSFS` is off).
pub fn areas(roots: &SysRoots) -> Vec<CmaArea> {
    let Ok(entries) = fs::read_dir(areas_dir(roots)) else {
        return Vec::new();
    };
    let mut out: Vec<CmaArea> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let total_bytes = fs::read_to_string(e.path().join("total_pages"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .and_then(|pages| pages.checked_mul(page_size()));
            CmaArea {
                name: e.file_name().to_string_lossy().into_owned(),
                total_bytes,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// If the heap `name` is a CMA heap: `Some` with its area where that is known
/// (`Some(None)` for `default_cma_region` when the default area cannot be
/// told apart), `None` if it is not a CMA heap.
pub fn heap_area(roots: &SysRoots, name: &str) -> Option<Option<CmaArea>> {
    let areas = areas(roots);
    if let Some(area) = areas.iter().find(|a| a.name == name) {
        return Some(Some(area.clone()));
    }
    if name != DEFAULT_CMA_HEAP {
        return None;
    }
    // The default area: `reserved` where it exists, else the only area.
    let default = areas
        .iter()
        .find(|a| a.name == DEFAULT_AREA)
        .or(match areas.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .cloned();
    Some(default)
}
