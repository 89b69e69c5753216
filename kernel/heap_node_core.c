// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dma_heap/<name> through the DMA-BUF heap core.
 *
 * Kernels from 6.18 export dma_heap_add() to modules, and the heap then
 * appears in /sys/class/dma_heap/ beside the system heap. The core has no
 * way to remove a heap: what it is given lives until reboot. So the core is
 * given a small node of ours per heap name, never freed, which points at the
 * device heap currently behind that name, or at none:
 *
 *  - when a heap is removed (served device unbound or gone, or a write to
 *    "remove"), the node lets go of it; /dev/dma_heap/<name> stays and
 *    allocations from it fail with ENODEV;
 *  - when a heap of the same name is created again (device rebound,
 *    module parameter, "add"), it takes over the node and the same
 *    /dev/dma_heap/<name> allocates again;
 *  - the module pins itself once it has given the core a node, since the
 *    core would call into its code after an unload: from the first heap on,
 *    rmmod fails (EAGAIN, the module is in use).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/err.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "device_heap.h"
#include "heap_compat.h"

/**
 * struct device_heap_core_node - what the heap core holds for one name
 * @list:	entry in device_heap_core_nodes, never removed
 * @name:	the heap name, and the name of the core's node
 * @lock:	protects @heap
 * @heap:	the device heap behind the name, or NULL (reference held)
 */
struct device_heap_core_node {
	struct list_head list;
	char name[DEVICE_HEAP_NAME_MAX];
	spinlock_t lock;	/* protects heap */
	struct device_heap *heap;
};

static LIST_HEAD(device_heap_core_nodes);
static DEFINE_MUTEX(device_heap_core_lock);

/*
 * Names given to the core, which keeps each (and a minor) until reboot.
 * Heaps are named for their memory, so a system has a handful; the bound
 * keeps devices added and removed in a loop from using up minors.
 */
#define DEVICE_HEAP_CORE_NODES_MAX	32
static unsigned int device_heap_core_node_count;

static struct dma_buf *device_heap_core_allocate(struct dma_heap *dma_heap,
						 unsigned long len,
						 u32 fd_flags, u64 heap_flags)
{
	struct device_heap_core_node *node = dma_heap_get_drvdata(dma_heap);
	struct device_heap *heap;
	struct dma_buf *dmabuf;

	spin_lock(&node->lock);
	heap = node->heap;
	if (heap)
		device_heap_get(heap);
	spin_unlock(&node->lock);
	if (!heap)
		return ERR_PTR(-ENODEV);

	if (len > heap->max_alloc)
		dmabuf = ERR_PTR(-ENOMEM);
	else if (atomic_read(&heap->dead))
		dmabuf = ERR_PTR(-ENODEV);
	else
		dmabuf = device_heap_allocate(heap, len, fd_flags);
	device_heap_put(heap);
	return dmabuf;
}

static const struct dma_heap_ops device_heap_core_ops = {
	.allocate = device_heap_core_allocate,
};

static struct device_heap_core_node *device_heap_core_node_get(const char *name)
{
	struct dma_heap_export_info exp_info = {
		.ops = &device_heap_core_ops,
	};
	struct device_heap_core_node *node;
	struct dma_heap *dma_heap;

	lockdep_assert_held(&device_heap_core_lock);
	list_for_each_entry(node, &device_heap_core_nodes, list) {
		if (!strcmp(node->name, name))
			return node;
	}

	if (device_heap_core_node_count >= DEVICE_HEAP_CORE_NODES_MAX) {
		pr_warn_ratelimited("%s: the heap core has %d names of ours, no more\n",
				    name, DEVICE_HEAP_CORE_NODES_MAX);
		return ERR_PTR(-ENOSPC);
	}
	node = kzalloc(sizeof(*node), GFP_KERNEL);
	if (!node)
		return ERR_PTR(-ENOMEM);
	strscpy(node->name, name, sizeof(node->name));
	spin_lock_init(&node->lock);
	exp_info.name = node->name;
	exp_info.priv = node;

	dma_heap = dma_heap_add(&exp_info);
	if (IS_ERR(dma_heap)) {
		kfree(node);
		return ERR_CAST(dma_heap);
	}
	/* The heap core keeps @node and our ops until reboot. */
	__module_get(THIS_MODULE);
	device_heap_core_node_count++;
	list_add_tail(&node->list, &device_heap_core_nodes);
	return node;
}

/**
 * device_heap_node_register - prepare the heap's node
 * @heap: heap to expose
 *
 * The heap core's node has no device number of ours, and it is made only
 * once the heap's sysfs node exists: see device_heap_node_publish().
 *
 * Return: 0.
 */
int device_heap_node_register(struct device_heap *heap)
{
	heap->devt = 0;
	return 0;
}

/**
 * device_heap_node_publish - put the heap behind its /dev/dma_heap node
 * @heap: heap whose sysfs node exists; sets @heap->core
 *
 * Called after the sysfs node is created, so that udev, handling the core
 * node's uevent, can read the heap's attributes (the module's rule grants
 * access by "max_user_bytes").
 *
 * Return: 0, -EEXIST if a live heap of ours already has the name (the
 * caller's name lookup rules that out), or an error from dma_heap_add(),
 * which refuses a name another module's heap has (e.g. "system").
 */
int device_heap_node_publish(struct device_heap *heap)
{
	struct device_heap_core_node *node;
	int ret = 0;

	mutex_lock(&device_heap_core_lock);
	node = device_heap_core_node_get(heap->name);
	if (IS_ERR(node)) {
		ret = PTR_ERR(node);
		goto unlock;
	}
	spin_lock(&node->lock);
	if (node->heap) {
		ret = -EEXIST;
	} else {
		device_heap_get(heap);
		node->heap = heap;
		heap->core = node;
	}
	spin_unlock(&node->lock);
unlock:
	mutex_unlock(&device_heap_core_lock);
	return ret;
}

/**
 * device_heap_node_unregister - take the heap from behind its node
 * @heap: heap registered with device_heap_node_register()
 *
 * The node stays (the core cannot remove it); allocations through it fail
 * with -ENODEV until a heap of the same name is registered again.
 */
void device_heap_node_unregister(struct device_heap *heap)
{
	struct device_heap_core_node *node = heap->core;

	if (!node)
		return;
	spin_lock(&node->lock);
	node->heap = NULL;
	spin_unlock(&node->lock);
	heap->core = NULL;
	device_heap_put(heap);
}

/**
 * device_heap_node_is_ours - whether the core's node @name is the module's
 * @name: a heap name
 *
 * Return: true if the module gave the core a node of that name, live or not.
 */
bool device_heap_node_is_ours(const char *name)
{
	struct device_heap_core_node *node;
	bool ours = false;

	mutex_lock(&device_heap_core_lock);
	list_for_each_entry(node, &device_heap_core_nodes, list) {
		if (!strcmp(node->name, name)) {
			ours = true;
			break;
		}
	}
	mutex_unlock(&device_heap_core_lock);
	return ours;
}

int device_heap_node_init(void)
{
	return 0;
}

/* Reached only before any node was given to the core (failed init). */
void device_heap_node_exit(void)
{
}

MODULE_IMPORT_NS(DEVICE_HEAP_NS(DMA_BUF_HEAP));
