/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels device_heap.ko builds for, in one place.
 *
 * Tested: Debian's 6.12 and 7.3. Which node a heap gets (the heap core or
 * a character device of the module's own) is not a version question but a
 * question of what the kernel exports; Kbuild answers it from
 * Module.symvers.
 */
#ifndef _DEVICE_HEAP_COMPAT_H
#define _DEVICE_HEAP_COMPAT_H

#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/stringify.h>
#include <linux/version.h>

/* The oldest kernel tested. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
#error "device_heap needs Linux 6.12 or later"
#endif

/* Since 6.13 MODULE_IMPORT_NS() takes a string literal. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define DEVICE_HEAP_NS(ns)	__stringify(ns)
#else
#define DEVICE_HEAP_NS(ns)	ns
#endif

/*
 * Since 6.16 the third argument of alloc_contig_range() is an acr_flags_t.
 * The old migratetype MIGRATE_MOVABLE has the value of ACR_FLAGS_CMA there
 * and would compile silently, asking for CMA semantics on non-CMA memory.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define device_heap_alloc_contig_range(start, end, gfp) \
	alloc_contig_range(start, end, ACR_FLAGS_NONE, gfp)
#else
#define device_heap_alloc_contig_range(start, end, gfp) \
	alloc_contig_range(start, end, MIGRATE_MOVABLE, gfp)
#endif

/*
 * Since 6.15 vkms and vgem live on the faux bus, which is not exported: the
 * module finds it through a faux device of its own.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 14, 0)
#define DEVICE_HEAP_HAVE_FAUX	1
#else
#define DEVICE_HEAP_HAVE_FAUX	0
#endif

/*
 * Whether the DMA API maps @dev through an IOMMU (use_dma_iommu(), whose
 * header is the DMA layer's own). Kernels whose struct device keeps its
 * flags in a word generate dev_dma_iommu(); Kbuild finds which.
 */
#ifdef CONFIG_IOMMU_DMA
#ifdef DEVICE_HEAP_DEV_FLAGS
#define device_heap_dma_iommu(dev)	dev_dma_iommu(dev)
#else
#define device_heap_dma_iommu(dev)	((dev)->dma_iommu)
#endif
#else
static inline bool device_heap_dma_iommu(struct device *dev)
{
	return false;
}
#endif

#endif /* _DEVICE_HEAP_COMPAT_H */
