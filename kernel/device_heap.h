/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-device DMA-BUF heaps: shared definitions.
 *
 * A device heap allocates one kind of memory: contiguous or scattered, below
 * a physical limit, from a given CMA area first. Served devices whose needs
 * are the same share one heap, named for its memory. Every served device has
 * links in sysfs to all the heaps that serve it, best first, the kernel's own
 * heaps included (heap_links.c), so userspace finds the memory that works
 * for a set of devices without knowing any heap by name.
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
struct dentry;
struct device_heap_core_node;
struct device_heap_user;

#define DEVICE_HEAP_NAME_MAX	64

enum device_heap_backing {
	/* One physically contiguous range: for devices that DMA to one address. */
	DEVICE_HEAP_CONTIG,
	/* Chunks of up to 1 MiB: for scatter-gather devices or behind an IOMMU. */
	DEVICE_HEAP_SG,
};

/**
 * struct device_heap_needs - what a served device asks of memory
 * @backing:	contiguous, or scattered pages the device can gather
 * @phys_limit:	highest physical address the device reaches, capped at the
 *		last byte of RAM (devices reaching all of RAM have the same
 *		needs whatever their mask)
 * @dma_limit:	highest bus address it reaches: min_not_zero() of its
 *		coherent mask and bus limit, as dma_coherent_ok() checks;
 *		U64_MAX behind an IOMMU
 * @cma:	the CMA area its DMA API allocations come from (its own,
 *		else the default one), or NULL; contiguous needs only
 * @coherent:	its DMA is cache-coherent with the CPU
 */
struct device_heap_needs {
	enum device_heap_backing backing;
	u64 phys_limit;
	u64 dma_limit;
	struct cma *cma;
	bool coherent;
};

/**
 * struct device_heap - a heap allocating one kind of memory
 * @ref:	held by the registry, by every open heap file and every buffer
 * @list:	entry in the module's list of heaps
 * @name:	heap name, also the node name under /dev/dma_heap/
 * @backing:	how buffers are backed
 * @phys_limit:	highest physical address a buffer page may have
 * @dma_limit:	highest bus address, checked on every allocation
 * @coherent:	every device the heap was made for is cache-coherent
 * @users:	served devices whose needs made the heap; it goes with the last
 * @max_alloc:	largest allocation accepted, in bytes
 * @cma:	CMA area contiguous buffers come from first, or NULL
 * @dead:	set once the heap is unregistered; allocations then fail
 * @node:	sysfs node in class device_heap (no parent: heaps are shared)
 * @served:	the node's served/ directory exists
 * @cdev:	character device, when the module registers the node itself
 * @devt:	device number of @cdev, 0 when the heap core owns the node
 * @core:	the heap core's registration, when the kernel has the core
 */
struct device_heap {
	struct kref ref;
	struct list_head list;
	char name[DEVICE_HEAP_NAME_MAX];
	enum device_heap_backing backing;
	u64 phys_limit;
	u64 dma_limit;
	bool coherent;
	unsigned int users;
	size_t max_alloc;
	struct cma *cma;
	int cma_state;
	atomic_t dead;
	bool served;
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
 * @live:	entry in the debugfs listing of live buffers
 * @ino:	inode number of the dma-buf's file, as userspace fstat()s it
 * @user:	the user whose count of pinned bytes includes @len
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
	struct list_head live;
	unsigned long ino;
	struct device_heap_user *user;
};

/**
 * struct device_heap_served - a device served for one "devices"/"add" entry
 * @list:	entry in device_heap_served_list
 * @dev:	the device (reference held), bound to its driver
 * @needs:	what it asks of memory
 * @heap:	the module's heap made for @needs, or NULL where a heap of the
 *		kernel gives exactly that memory (the "system" heap)
 * @linked:	this entry made the device's dma_heaps/ directory
 * @links_sig:	signature of what that directory held when last made; 0
 *		before it was
 * @announce:	its links changed in the relink running: userspace is told
 *		once every device is linked
 */
struct device_heap_served {
	struct list_head list;
	struct device *dev;
	struct device_heap_needs needs;
	struct device_heap *heap;
	bool linked;
	u32 links_sig;
	bool announce;
};

extern atomic_t device_heap_live_buffers;
extern atomic64_t device_heap_live_bytes;
extern struct mutex device_heaps_lock;
extern struct list_head device_heaps;
extern struct list_head device_heap_served_list;
extern u64 device_heap_ram_top;

void device_heap_get(struct device_heap *heap);
void device_heap_put(struct device_heap *heap);

/* heap_main.c: heaps by the memory they give */
int device_heap_name(const struct device_heap_needs *needs, char *buf,
		     size_t size);
struct device_heap *device_heap_find(const struct device_heap_needs *needs);
struct device_heap *device_heap_create(const struct device_heap_needs *needs);
void device_heap_destroy(struct device_heap *heap, struct list_head *dead);
void device_heap_bury(struct list_head *dead);
extern const char * const device_heap_backing_names[];

/* heap_served.c: which devices are served, following their drivers */
int device_heap_served_init(void);
void device_heap_served_exit(void);
int device_heap_control_add(const char *spec);
int device_heap_control_remove(const char *spec);
void device_heap_add_param_devices(const char *devices);

/* heap_links.c: device -> heap links in priority order */
void device_heap_relink(void);
void device_heap_unlink(struct device_heap_served *served);
void device_heap_links_changed(struct device *dev);
bool device_heap_kernel_heap_exists(struct device *dev, const char *name);

/* heap_buffer.c: dma-buf export of one allocation */
struct dma_buf *device_heap_allocate(struct device_heap *heap, size_t len,
				     u32 fd_flags);

/* heap_charge.c: who pays for a buffer */
bool device_heap_charges(const struct device_heap *heap);
const char *device_heap_accounting_name(const struct device_heap *heap);
gfp_t device_heap_charge_gfp(const struct device_heap *heap);
gfp_t device_heap_meta_gfp(const struct device_heap *heap);

/* heap_user_limit.c: how much one user may pin */
void device_heap_user_limit_init(void);
u64 device_heap_max_user_bytes(void);
int device_heap_user_pin(struct device_heap_buffer *buffer);
void device_heap_user_unpin(struct device_heap_buffer *buffer);
void device_heap_users_debugfs(struct dentry *dir);

/* heap_memory.c: where the pages come from */
extern bool device_heap_contig_migrate;
int device_heap_alloc_memory(struct device_heap_buffer *buffer);
void device_heap_free_memory(struct device_heap_buffer *buffer);
void device_heap_free_block(const struct device_heap_contig *block);
int device_heap_clear(struct page *page, unsigned long nr_pages);

/* heap_buffer.c: the debugfs listing of live buffers and their frames */
void device_heap_buffers_debugfs(struct dentry *dir);

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
bool device_heap_node_is_ours(const char *name);

#endif /* _DEVICE_HEAP_H */
