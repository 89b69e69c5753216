//! Whether a heap charges its memory to the allocating process's memory
//! cgroup.
//!
//! Handing a heap to a process is handing it a way to pin memory. Where a heap
//! charges every byte to the memory cgroup of the process that allocates it,
//! `memory.max` bounds what that process can pin, so the heap is safe to grant
//! to a sandboxed client or a seat user; where it does not, the memory escapes
//! every limit. Each source says so differently, and this module reads them:
//! device heaps publish it (`accounting`, kernel/ABI.md), the kernel's `system`
//! heap charges only when the heap core's `mem_accounting` parameter is on,
//! udmabuf's memfd pages are shmem pages charged when faulted in, and CMA
//! heaps never charge.

use std::{fmt, fs};

use crate::discovery::SysRoots;

/// Whether a heap's buffers count against the allocator's memory cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accounting {
    /// Every byte of every buffer is charged to the memory cgroup of the
    /// process that allocates it (`memory.current` grows, `memory.max`
    /// refuses with ENOMEM).
    Memcg,
    /// Buffers are not charged to anyone: nothing but total memory bounds
    /// what a process can pin. Also what a heap that says nothing (an older
    /// `device_heap.ko`, a 6.12 `system` heap) is taken to do.
    None,
}

impl Accounting {
    /// The word sysfs uses (`memcg`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accounting::Memcg => "memcg",
            Accounting::None => "none",
        }
    }

    /// Parses the word of a device heap's `accounting` attribute. Any other
    /// word is `None` here, and discovery skips the heap as malformed rather
    /// than guess what a newer module meant.
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "memcg" => Some(Accounting::Memcg),
            "none" => Some(Accounting::None),
            _ => None,
        }
    }
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the heap core says whether the `system` heap charges memcg (7.x
/// kernels; absent on 6.12, which never charges).
pub const MEM_ACCOUNTING_PARAMETER: &str = "module/dma_heap/parameters/mem_accounting";

/// How the kernel's `system` heap accounts: `Memcg` when the heap core's
/// `mem_accounting` parameter reads `Y`, else `None` (parameter off, or
/// absent on kernels that predate it).
pub fn system_heap(roots: &SysRoots) -> Accounting {
    match fs::read(roots.sysfs.join(MEM_ACCOUNTING_PARAMETER)) {
        Ok(raw) if matches!(raw.trim_ascii(), b"Y" | b"y" | b"1") => Accounting::Memcg,
        _ => Accounting::None,
    }
}
