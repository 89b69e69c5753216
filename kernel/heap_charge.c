// SPDX-License-Identifier: GPL-2.0
/*
 * Who pays for device heap memory.
 *
 * Each heap says in sysfs ("accounting") whether it charges the allocating
 * process's memory cgroup, on top of the module's own count per user
 * (heap_user_limit.c), which is the bound that holds on every system: a
 * charge bounds anything only where some ancestor cgroup sets memory.max.
 *
 *  - "memcg": buddy pages are allocated with __GFP_ACCOUNT, so every page is
 *    charged to the allocating process's memory cgroup (memory.current,
 *    memory.max) and uncharged when the page is freed, whoever drops the
 *    last reference. Scatter-gather heaps, while the kernel charges kernel
 *    memory at all (not under cgroup.memory=nokmem, nor before the first
 *    memory cgroup below the root). A task in the root cgroup, or a kernel
 *    thread, is charged to nobody, as for any __GFP_ACCOUNT allocation.
 *  - "none": contiguous heaps. Their memory comes from CMA or from ranges
 *    carved out with alloc_contig_range(): neither takes a gfp that charges,
 *    and the functions that charge a memcg for pages already allocated are
 *    not exported to modules (6.12, 7.3). Charging only the buffers small
 *    enough for the buddy allocator would bound nothing. The dmem cgroup
 *    controller (6.14 and later) could charge them, but Debian does not build
 *    it (CONFIG_CGROUP_DMEM is not set in 7.3), so nothing here would test it.
 *
 * Charging never invokes the OOM killer: every charged page allocation is
 * made with __GFP_RETRY_MAYFAIL or __GFP_NORETRY, so a process over its
 * limit gets ENOMEM after reclaim in its own group. The buffer's lasting
 * metadata (the buffer, its scatterlist, each attachment's copy of it, the
 * last charged to the attaching process) is charged too on charging heaps,
 * with __GFP_RETRY_MAYFAIL everywhere: a scatterlist of single pages is
 * 1/128 of the buffer's size. The file, inode and fd the export then takes
 * are charged like those of any other system call.
 */

#include <linux/gfp.h>
#include <linux/memcontrol.h>

#include "device_heap.h"

/**
 * device_heap_charges - whether a heap's buffers are charged to a memcg
 * @heap: the heap
 *
 * Asked at every allocation and every read of "accounting", so the answer is
 * the one the allocation gets. __GFP_ACCOUNT charges only while kernel
 * memory accounting is on: never on a kernel without memory cgroups, booted
 * with cgroup_disable=memory or with cgroup.memory=nokmem, and not before
 * the first memory cgroup below the root exists (which is also the first
 * one a limit could be set on). The heap must not claim otherwise.
 */
bool device_heap_charges(const struct device_heap *heap)
{
	return heap->backing == DEVICE_HEAP_SG && !mem_cgroup_disabled() &&
	       memcg_kmem_online();
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

/*
 * For the metadata of a buffer of @heap: charged with its pages, and never
 * a reason for the OOM killer.
 */
gfp_t device_heap_meta_gfp(const struct device_heap *heap)
{
	return GFP_KERNEL | __GFP_RETRY_MAYFAIL | device_heap_charge_gfp(heap);
}
