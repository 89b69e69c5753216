// SPDX-License-Identifier: GPL-2.0
/*
 * DMA-BUF heaps for the memory devices need.
 *
 * The 2020 RFC "dma-buf: heaps: Add a device heap" proposed one heap per
 * device; its thread asked which heap serves a device. Here a heap is one
 * kind of memory (contiguous or scattered, below a physical limit, from a
 * CMA area first), named for that memory as the kernel's naming rule asks
 * (Documentation/userspace-api/dma-buf-heaps.rst), and shared by every
 * served device whose needs are the same. Each served device has links to
 * all the heaps that serve it, the kernel's own included, best first
 * (heap_links.c; ABI.md).
 *
 * Devices are named by the "devices" module parameter or at run time by
 * writing to /sys/class/device_heap/add, and served while bound to a driver
 * (heap_served.c).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cma.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/dma-map-ops.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/nodemask.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "device_heap.h"
#include "heap_compat.h"

static char *devices;
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices,
		 "Comma-separated devices to serve: <bus>/<device>[:contig|:sg]");

static unsigned int contig_max_mb = 256;
module_param(contig_max_mb, uint, 0444);
MODULE_PARM_DESC(contig_max_mb,
		 "Largest contiguous buffer in MiB (default 256, capped at half of RAM)");

atomic_t device_heap_live_buffers = ATOMIC_INIT(0);
atomic64_t device_heap_live_bytes = ATOMIC64_INIT(0);

static const struct class device_heap_class;

/* The heaps, the served devices and the links between them. */
DEFINE_MUTEX(device_heaps_lock);
LIST_HEAD(device_heaps);
/* The last byte of RAM, when the module was loaded. */
u64 device_heap_ram_top;
static struct dentry *device_heap_debugfs;

const char * const device_heap_backing_names[] = {
	[DEVICE_HEAP_CONTIG] = "contig",
	[DEVICE_HEAP_SG] = "sg",
};

static void device_heap_free(struct kref *ref)
{
	struct device_heap *heap = container_of(ref, struct device_heap, ref);

	kfree(heap);
}

void device_heap_get(struct device_heap *heap)
{
	kref_get(&heap->ref);
}

void device_heap_put(struct device_heap *heap)
{
	kref_put(&heap->ref, device_heap_free);
}

/*
 * Half of RAM at most, so that one request cannot push the system into the
 * OOM killer; a contiguous buffer is also one scatterlist entry, whose
 * length is an unsigned int.
 */
static size_t device_heap_max_alloc(enum device_heap_backing backing)
{
	size_t half_ram = (size_t)(totalram_pages() / 2) << PAGE_SHIFT;
	size_t contig_max = min_t(size_t, (size_t)contig_max_mb << 20,
				  rounddown(UINT_MAX, PAGE_SIZE));

	if (backing == DEVICE_HEAP_CONTIG)
		return min(contig_max, half_ram);
	return half_ram;
}

/**
 * device_heap_name - the name of the memory @needs ask for
 * @needs: a device's needs
 * @buf: where the name goes
 * @size: size of @buf
 *
 * Names describe the memory, never the allocator: "system" for pages
 * anywhere in RAM (the kernel's own heap, where it has one), "system-32bit"
 * for pages below 4 GiB, a "-contiguous" suffix for physically contiguous
 * buffers, and a device's own CMA area by its name
 * ("<area>-contiguous", "<area>-32bit-contiguous").
 *
 * Return: 0, or -ENAMETOOLONG.
 */
int device_heap_name(const struct device_heap_needs *needs, char *buf,
		     size_t size)
{
	const char *suffix = needs->backing == DEVICE_HEAP_CONTIG ?
			     "-contiguous" : "";
	const char *area = NULL;
	int len;

#ifdef DEVICE_HEAP_HAVE_CMA
	if (needs->cma && needs->cma != dev_get_cma_area(NULL))
		area = cma_get_name(needs->cma);
#endif
	if (area && needs->phys_limit < device_heap_ram_top)
		len = snprintf(buf, size, "%s-%dbit%s", area,
			       fls64(needs->phys_limit), suffix);
	else if (area)
		len = snprintf(buf, size, "%s%s", area, suffix);
	else if (needs->phys_limit >= device_heap_ram_top)
		len = snprintf(buf, size, "system%s", suffix);
	else
		len = snprintf(buf, size, "system-%dbit%s",
			       fls64(needs->phys_limit), suffix);
	return len >= size ? -ENAMETOOLONG : 0;
}

static bool device_heap_gives(const struct device_heap *heap,
			      const struct device_heap_needs *needs)
{
	return heap->backing == needs->backing &&
	       heap->phys_limit == needs->phys_limit &&
	       (needs->backing == DEVICE_HEAP_SG || heap->cma == needs->cma);
}

/**
 * device_heap_find - the live heap giving exactly what @needs ask for
 * @needs: a device's needs
 *
 * Return: the heap, or NULL. Called with device_heaps_lock held.
 */
struct device_heap *device_heap_find(const struct device_heap_needs *needs)
{
	struct device_heap *heap;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(heap, &device_heaps, list) {
		if (device_heap_gives(heap, needs))
			return heap;
	}
	return NULL;
}

static struct device_heap *device_heap_lookup(const char *name)
{
	struct device_heap *heap;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(heap, &device_heaps, list) {
		if (!strcmp(heap->name, name))
			return heap;
	}
	return NULL;
}

/**
 * device_heap_create - make the heap for @needs
 * @needs: a served device's needs, for which device_heap_find() found none
 *
 * The heap has no user yet: the caller counts the device it serves.
 * Called with device_heaps_lock held.
 *
 * Return: the heap, or an ERR_PTR: -EEXIST if a heap of another kind of
 * memory has the name, -ENOSPC if the heap core has no room for another
 * name, or an error from registering the node.
 */
struct device_heap *device_heap_create(const struct device_heap_needs *needs)
{
	struct device_heap *heap;
	int ret;

	lockdep_assert_held(&device_heaps_lock);

	heap = kzalloc(sizeof(*heap), GFP_KERNEL);
	if (!heap)
		return ERR_PTR(-ENOMEM);

	kref_init(&heap->ref);
	INIT_LIST_HEAD(&heap->list);
	heap->backing = needs->backing;
	heap->phys_limit = needs->phys_limit;
	heap->dma_limit = needs->dma_limit;
	heap->cma = needs->backing == DEVICE_HEAP_CONTIG ? needs->cma : NULL;
	heap->coherent = needs->coherent;
	heap->max_alloc = device_heap_max_alloc(needs->backing);

	ret = device_heap_name(needs, heap->name, sizeof(heap->name));
	if (ret)
		goto put_heap;
	if (device_heap_lookup(heap->name)) {
		ret = -EEXIST;
		goto put_heap;
	}

	ret = device_heap_node_register(heap);
	if (ret)
		goto put_heap;

	heap->node = device_create(&device_heap_class, NULL, heap->devt, heap,
				   "%s", heap->name);
	if (IS_ERR(heap->node)) {
		ret = PTR_ERR(heap->node);
		goto unregister_node;
	}

	ret = device_heap_node_publish(heap);
	if (ret)
		goto destroy_node;

	list_add_tail(&heap->list, &device_heaps);
	pr_info("heap %s: %s, below %d bits, accounting %s\n", heap->name,
		device_heap_backing_names[heap->backing],
		fls64(heap->phys_limit), device_heap_accounting_name(heap));
	return heap;

destroy_node:
	device_unregister(heap->node);
unregister_node:
	/* An fd opened on the node meanwhile must not allocate from it. */
	atomic_set(&heap->dead, 1);
	device_heap_node_unregister(heap);
put_heap:
	device_heap_put(heap);
	return ERR_PTR(ret);
}

/**
 * device_heap_destroy - unregister a heap no device needs any more
 * @heap: the heap
 * @dead: where the heap goes until device_heap_bury()
 *
 * Buffers already allocated stay valid; open heap files fail further
 * allocations with -ENODEV. Called with device_heaps_lock held: the blocks
 * the cache keeps for the heap are given back by device_heap_bury(), after
 * the caller lets go of the lock.
 */
void device_heap_destroy(struct device_heap *heap, struct list_head *dead)
{
	lockdep_assert_held(&device_heaps_lock);
	atomic_set(&heap->dead, 1);
	list_move_tail(&heap->list, dead);
	device_unregister(heap->node);
	heap->node = NULL;
	heap->served = false;
	device_heap_node_unregister(heap);
}

/**
 * device_heap_bury - give back what destroyed heaps kept, without locks held
 * @dead: heaps from device_heap_destroy()
 */
void device_heap_bury(struct list_head *dead)
{
	struct device_heap *heap, *tmp;

	list_for_each_entry_safe(heap, tmp, dead, list) {
		list_del_init(&heap->list);
		device_heap_cache_drop(heap);
		device_heap_put(heap);
	}
}

static ssize_t add_store(const struct class *class,
			 const struct class_attribute *attr,
			 const char *buf, size_t count)
{
	char *spec;
	int ret;

	spec = kstrndup(buf, count, GFP_KERNEL);
	if (!spec)
		return -ENOMEM;
	ret = device_heap_control_add(strim(spec));
	kfree(spec);
	return ret ?: count;
}
static CLASS_ATTR_WO(add);

static ssize_t remove_store(const struct class *class,
			    const struct class_attribute *attr,
			    const char *buf, size_t count)
{
	char *spec;
	int ret;

	spec = kstrndup(buf, count, GFP_KERNEL);
	if (!spec)
		return -ENOMEM;
	ret = device_heap_control_remove(strim(spec));
	kfree(spec);
	return ret ?: count;
}
static CLASS_ATTR_WO(remove);

static struct attribute *device_heap_class_attrs[] = {
	&class_attr_add.attr,
	&class_attr_remove.attr,
	NULL,
};
ATTRIBUTE_GROUPS(device_heap_class);

#define DEVICE_HEAP_ATTR_RO(_name, _fmt, _value)			\
static ssize_t _name##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	const struct device_heap *heap = dev_get_drvdata(dev);		\
									\
	return sysfs_emit(buf, _fmt "\n", _value);			\
}									\
static DEVICE_ATTR_RO(_name)

DEVICE_HEAP_ATTR_RO(name, "%s", heap->name);
DEVICE_HEAP_ATTR_RO(backing, "%s", device_heap_backing_names[heap->backing]);
DEVICE_HEAP_ATTR_RO(contiguous, "%d", heap->backing == DEVICE_HEAP_CONTIG);
DEVICE_HEAP_ATTR_RO(coherent, "%d", heap->coherent);
DEVICE_HEAP_ATTR_RO(dma_mask_bits, "%d", fls64(heap->phys_limit));
DEVICE_HEAP_ATTR_RO(max_alloc_bytes, "%zu", heap->max_alloc);
DEVICE_HEAP_ATTR_RO(accounting, "%s", device_heap_accounting_name(heap));

/* Chunks and contiguous ranges all start on a page boundary. */
static ssize_t alignment_bytes_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", PAGE_SIZE);
}
static DEVICE_ATTR_RO(alignment_bytes);

/*
 * The most one user may have in live buffers of all of the module's heaps
 * (heap_user_limit.c): its presence says the heap is bounded per user.
 */
static ssize_t max_user_bytes_show(struct device *dev,
				   struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", device_heap_max_user_bytes());
}
static DEVICE_ATTR_RO(max_user_bytes);

/*
 * Where buffers come from, in the order tried: "cma:<area> buddy" when the
 * heap has a CMA area not found out of reach, "buddy" without one, "migrate"
 * added where contig_migrate is set; scattered heaps take buddy pages:
 * "buddy".
 */
static ssize_t contig_source_show(struct device *dev,
				  struct device_attribute *attr, char *buf)
{
	const struct device_heap *heap = dev_get_drvdata(dev);
	int len = 0;

	if (heap->backing != DEVICE_HEAP_CONTIG)
		return sysfs_emit(buf, "buddy\n");
#ifdef DEVICE_HEAP_HAVE_CMA
	if (heap->cma && READ_ONCE(heap->cma_state) >= 0)
		len += sysfs_emit_at(buf, len, "cma:%s ",
				     cma_get_name(heap->cma));
#endif
	len += sysfs_emit_at(buf, len, "buddy");
	if (READ_ONCE(device_heap_contig_migrate))
		len += sysfs_emit_at(buf, len, " migrate");
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
static DEVICE_ATTR_RO(contig_source);

static struct attribute *device_heap_attrs[] = {
	&dev_attr_name.attr,
	&dev_attr_backing.attr,
	&dev_attr_contiguous.attr,
	&dev_attr_coherent.attr,
	&dev_attr_dma_mask_bits.attr,
	&dev_attr_max_alloc_bytes.attr,
	&dev_attr_alignment_bytes.attr,
	&dev_attr_contig_source.attr,
	&dev_attr_accounting.attr,
	&dev_attr_max_user_bytes.attr,
	NULL,
};
ATTRIBUTE_GROUPS(device_heap);

static char *device_heap_devnode(const struct device *dev, umode_t *mode)
{
	return kasprintf(GFP_KERNEL, "dma_heap/%s", dev_name(dev));
}

static const struct class device_heap_class = {
	.name = "device_heap",
	.class_groups = device_heap_class_groups,
	.dev_groups = device_heap_groups,
	.devnode = device_heap_devnode,
};

static int device_heap_live_bytes_get(void *data, u64 *val)
{
	*val = atomic64_read(&device_heap_live_bytes);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(device_heap_live_bytes_fops,
			 device_heap_live_bytes_get, NULL, "%llu\n");

static int device_heap_cached_bytes_get(void *data, u64 *val)
{
	*val = device_heap_cache_bytes();
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(device_heap_cached_bytes_fops,
			 device_heap_cached_bytes_get, NULL, "%llu\n");

/* The last byte of RAM: a device reaching it reaches all memory. */
static void device_heap_find_ram_top(void)
{
	unsigned long end = 0;
	int nid;

	for_each_online_node(nid)
		end = max(end, pgdat_end_pfn(NODE_DATA(nid)));
	device_heap_ram_top = PFN_PHYS(end) - 1;
}

static int __init device_heap_init(void)
{
	int ret;

	device_heap_find_ram_top();
	device_heap_user_limit_init();

	ret = device_heap_cache_init();
	if (ret)
		return ret;

	ret = device_heap_node_init();
	if (ret)
		goto exit_cache;

	ret = class_register(&device_heap_class);
	if (ret)
		goto exit_node;

	ret = device_heap_served_init();
	if (ret)
		goto unregister_class;

	device_heap_debugfs = debugfs_create_dir("device_heap", NULL);
	debugfs_create_atomic_t("live_buffers", 0444, device_heap_debugfs,
				&device_heap_live_buffers);
	debugfs_create_file_unsafe("live_bytes", 0444, device_heap_debugfs,
				   NULL, &device_heap_live_bytes_fops);
	debugfs_create_file_unsafe("cached_bytes", 0444, device_heap_debugfs,
				   NULL, &device_heap_cached_bytes_fops);
	device_heap_buffers_debugfs(device_heap_debugfs);
	device_heap_users_debugfs(device_heap_debugfs);

	device_heap_add_param_devices(devices);
	return 0;

unregister_class:
	class_unregister(&device_heap_class);
exit_node:
	device_heap_node_exit();
exit_cache:
	device_heap_cache_exit();
	return ret;
}

/*
 * No buffer or open heap file is left: each holds a module reference. The
 * served devices go first, and their heaps with them, while the notifiers
 * still see devices going away.
 */
static void __exit device_heap_exit(void)
{
	device_heap_served_exit();
	debugfs_remove(device_heap_debugfs);
	class_unregister(&device_heap_class);
	device_heap_node_exit();
	device_heap_cache_exit();
}

module_init(device_heap_init);
module_exit(device_heap_exit);

MODULE_DESCRIPTION("DMA-BUF heaps for the memory devices need, with device to heap links");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DEVICE_HEAP_NS(DMA_BUF));
