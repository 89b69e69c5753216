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
 * Charges never invoke the OOM killer: every charged allocation is made with
 * __GFP_RETRY_MAYFAIL or __GFP_NORETRY, so a process over its limit gets
 * ENOMEM after reclaim in its own group, and nobody is killed.
 */

#include <linux/gfp.h>

#include "device_heap.h"

static const char * const device_heap_accounting_names[] = {
	[DEVICE_HEAP_CHARGE_NONE] = "none",
	[DEVICE_HEAP_CHARGE_MEMCG] = "memcg",
};

const char *device_heap_accounting_name(const struct device_heap *heap)
{
	return device_heap_accounting_names[heap->accounting];
}

/**
 * device_heap_charge_init - decide whether a new heap charges its buffers
 * @heap: a heap being created, whose @backing is set
 */
void device_heap_charge_init(struct device_heap *heap)
{
	if (heap->backing == DEVICE_HEAP_SG)
		heap->accounting = DEVICE_HEAP_CHARGE_MEMCG;
	else
		heap->accounting = DEVICE_HEAP_CHARGE_NONE;
}

/* The gfp modifier that charges buddy pages to the caller's memcg, if any. */
gfp_t device_heap_charge_gfp(const struct device_heap *heap)
{
	return heap->accounting == DEVICE_HEAP_CHARGE_MEMCG ? __GFP_ACCOUNT : 0;
}
