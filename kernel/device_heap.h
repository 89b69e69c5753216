/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-device DMA-BUF heaps: shared definitions.
 *
 * A device heap allocates memory that one served device can DMA to, and
 * exports it as a dma-buf. The served device's constraints (DMA mask, IOMMU,
 * coherence) decide where the memory comes from; how the memory is backed
 * (one contiguous range or scattered chunks) is chosen per heap and published
 * in sysfs so that userspace can pick the heap that suits every device that
 * will touch a buffer.
 */
#ifndef _DEVICE_HEAP_H
#define _DEVICE_HEAP_H

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/dma-buf.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/types.h>

struct cma;
struct device_heap_core_node;

#define DEVICE_HEAP_NAME_MAX	64

enum device_heap_backing {
	/* One physically contiguous range: for devices that DMA to one address. */
	DEVICE_HEAP_CONTIG,
	/* Chunks of up to 1 MiB: for scatter-gather devices or behind an IOMMU. */
	DEVICE_HEAP_SG,
};

/**
 * struct device_heap - a heap allocating memory for one served device
 * @ref:	held by the registry, by every open heap file and every buffer
 * @list:	entry in the module's list of heaps
 * @name:	heap name, also the node name under /dev/dma_heap/
 * @dev:	served device, held while the heap is registered, then NULL
 * @backing:	how buffers are backed
 * @phys_limit:	highest physical address a buffer page may have: the served
 *		device's DMA limit translated with dma_to_phys(), or the
 *		top of the address space behind an IOMMU
 * @coherent:	the served device's DMA is cache-coherent with the CPU
 * @max_alloc:	largest allocation accepted, in bytes
 * @cma:	CMA area contiguous buffers come from first, or NULL
 * @dead:	set once the heap is unregistered; allocations then fail
 * @node:	sysfs node, child of @dev in class device_heap
 * @cdev:	character device, when the module registers the node itself
 * @devt:	device number of @cdev, 0 when the heap core owns the node
 * @core:	the heap core's registration, when the kernel has the core
 */
struct device_heap {
	struct kref ref;
	struct list_head list;
	char name[DEVICE_HEAP_NAME_MAX];
	struct device *dev;
	enum device_heap_backing backing;
	u64 phys_limit;
	bool coherent;
	size_t max_alloc;
	struct cma *cma;
	atomic_t dead;
	struct device *node;
	struct cdev *cdev;
	dev_t devt;
	struct device_heap_core_node *core;
};

/* Where a contiguous buffer's memory came from, and so how it is freed. */
enum device_heap_source {
	DEVICE_HEAP_FROM_BUDDY,
	DEVICE_HEAP_FROM_RANGE,
	DEVICE_HEAP_FROM_CMA,
};

/**
 * struct device_heap_contig - one physically contiguous block
 * @page:	its first page
 * @len:	its length in bytes, a multiple of PAGE_SIZE
 * @source:	where it came from, and so how it is given back
 * @cma:	the CMA area, when @source is DEVICE_HEAP_FROM_CMA
 */
struct device_heap_contig {
	struct page *page;
	size_t len;
	enum device_heap_source source;
	struct cma *cma;
};

/**
 * struct device_heap_buffer - one allocation, the private data of its dma-buf
 * @heap:	heap it came from (reference held)
 * @attachments: list of struct device_heap_attachment
 * @lock:	protects @attachments, @vmap_cnt and @vaddr
 * @len:	size in bytes, a multiple of PAGE_SIZE
 * @sg_table:	the memory; one entry for contiguous buffers
 * @source:	where contiguous memory came from
 * @vmap_cnt:	number of kernel mappings handed out
 * @vaddr:	kernel mapping while @vmap_cnt > 0
 */
struct device_heap_buffer {
	struct device_heap *heap;
	struct list_head attachments;
	struct mutex lock;	/* protects attachments, vmap_cnt, vaddr */
	size_t len;
	struct sg_table sg_table;
	enum device_heap_source source;
	int vmap_cnt;
	void *vaddr;
};

extern atomic_t device_heap_live_buffers;
extern atomic64_t device_heap_live_bytes;

void device_heap_get(struct device_heap *heap);
void device_heap_put(struct device_heap *heap);

/* heap_buffer.c: dma-buf export of one allocation */
struct dma_buf *device_heap_allocate(struct device_heap *heap, size_t len,
				     u32 fd_flags);

/* heap_charge.c: who pays for a buffer */
bool device_heap_charges(const struct device_heap *heap);
const char *device_heap_accounting_name(const struct device_heap *heap);
gfp_t device_heap_charge_gfp(const struct device_heap *heap);

/* heap_memory.c: where the pages come from */
void device_heap_contig_source(struct device_heap *heap);
int device_heap_alloc_memory(struct device_heap_buffer *buffer);
void device_heap_free_memory(struct device_heap_buffer *buffer);
void device_heap_free_block(const struct device_heap_contig *block);
void device_heap_clear(struct page *page, unsigned long nr_pages);

/* heap_cache.c: freed contiguous blocks kept for the next buffer */
int device_heap_cache_init(void);
void device_heap_cache_exit(void);
bool device_heap_cache_take(const struct device_heap *heap, size_t len,
			    struct device_heap_contig *block);
bool device_heap_cache_put(const struct device_heap *heap,
			   const struct device_heap_contig *block);
bool device_heap_cache_drain(void);
void device_heap_cache_drop(const struct device_heap *heap);
u64 device_heap_cache_bytes(void);

/* heap_node_{chrdev,core}.c: /dev/dma_heap/<name> (the registration seam) */
int device_heap_node_init(void);
void device_heap_node_exit(void);
int device_heap_node_register(struct device_heap *heap);
int device_heap_node_publish(struct device_heap *heap);
void device_heap_node_unregister(struct device_heap *heap);

#endif /* _DEVICE_HEAP_H */
