// SPDX-License-Identifier: GPL-2.0
/*
 * Who pays for device heap memory.
 *
 * A heap fd lets its holder pin memory for as long as it keeps the buffers,
 * so a heap is only safe to hand to an unprivileged process if what that
 * process allocates counts against a limit it cannot lift. Each heap says in
 * sysfs ("accounting") whether it charges the allocating process:
 *
 *  - "memcg": buddy pages are allocated with __GFP_ACCOUNT, so every page is
 *    charged to the allocating process's memory cgroup (memory.current,
 *    memory.max) and uncharged when the page is freed, whoever drops the
 *    last reference. Scatter-gather heaps, on every kernel.
 *  - "none": contiguous heaps. Their memory comes from CMA or from ranges
 *    carved out with alloc_contig_range(): neither takes a gfp that charges,
 *    and the functions that charge a memcg for pages already allocated are
 *    not exported to modules (6.12, 7.3). Charging only the buffers small
 *    enough for the buddy allocator would bound nothing. The dmem cgroup
 *    controller (6.14 and later) could charge them, but Debian does not build
 *    it (CONFIG_CGROUP_DMEM is not set in 7.3), so nothing here would test it.
 *
 * Charging the pages never invokes the OOM killer: every charged page
 * allocation is made with __GFP_RETRY_MAYFAIL or __GFP_NORETRY, so a process
 * over its limit gets ENOMEM after reclaim in its own group. The pages are
 * allocated before the dma-buf is exported; the few hundred bytes of file,
 * inode and fd table that the export and the fd then take are charged like
 * those of any other system call.
 */

#include <linux/gfp.h>
#include <linux/memcontrol.h>

#include "device_heap.h"

/**
 * device_heap_charges - whether a heap's buffers are charged to a memcg
 * @heap: the heap
 *
 * Asked at every allocation and every read of "accounting", so the answer is
 * the one the allocation gets. A kernel without memory cgroups, or booted
 * with cgroup_disable=memory, charges nothing: __GFP_ACCOUNT is then a no-op
 * and the heap must not claim otherwise. (cgroup.memory=nokmem also turns
 * off the charge of pages allocated with __GFP_ACCOUNT, and modules cannot
 * see it: ABI.md says so.)
 */
bool device_heap_charges(const struct device_heap *heap)
{
	return heap->backing == DEVICE_HEAP_SG && !mem_cgroup_disabled();
}

const char *device_heap_accounting_name(const struct device_heap *heap)
{
	return device_heap_charges(heap) ? "memcg" : "none";
}

/* The gfp modifier that charges buddy pages to the caller's memcg, if any. */
gfp_t device_heap_charge_gfp(const struct device_heap *heap)
{
	return device_heap_charges(heap) ? __GFP_ACCOUNT : 0;
}
