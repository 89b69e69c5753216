// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dma_heap/<name> through the DMA-BUF heap core.
 *
 * Kernels from 6.18 export dma_heap_add() to modules. The heap core has no
 * way to remove a heap, so a heap registered here lives until reboot: its
 * sysfs node still goes away with the served device and allocations then
 * fail with -ENODEV, but the /dev node stays, and the module pins itself so
 * that the core never calls into unloaded code.
 */

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/err.h>
#include <linux/module.h>

#include "device_heap.h"

static struct dma_buf *device_heap_core_allocate(struct dma_heap *dma_heap,
						 unsigned long len,
						 u32 fd_flags, u64 heap_flags)
{
	struct device_heap *heap = dma_heap_get_drvdata(dma_heap);

	if (len > heap->max_alloc)
		return ERR_PTR(-ENOMEM);
	if (atomic_read(&heap->dead))
		return ERR_PTR(-ENODEV);
	return device_heap_allocate(heap, len, fd_flags);
}

static const struct dma_heap_ops device_heap_core_ops = {
	.allocate = device_heap_core_allocate,
};

int device_heap_node_register(struct device_heap *heap)
{
	struct dma_heap_export_info exp_info = {
		.name = heap->name,
		.ops = &device_heap_core_ops,
		.priv = heap,
	};
	struct dma_heap *dma_heap;

	dma_heap = dma_heap_add(&exp_info);
	if (IS_ERR(dma_heap))
		return PTR_ERR(dma_heap);

	/* The heap core keeps @heap and our ops forever. */
	device_heap_get(heap);
	__module_get(THIS_MODULE);
	heap->devt = 0;
	return 0;
}

void device_heap_node_unregister(struct device_heap *heap)
{
}

int device_heap_node_init(void)
{
	return 0;
}

void device_heap_node_exit(void)
{
}

MODULE_IMPORT_NS(DMA_BUF_HEAP);
