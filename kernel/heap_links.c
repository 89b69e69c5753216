// SPDX-License-Identifier: GPL-2.0
/*
 * Device -> heap links, in priority order.
 *
 * Every served device gets a dma_heaps/ directory with one link per heap
 * that serves it, named by rank: 0 is the best. The kernel's own heaps are
 * included ("system", the CMA heaps), so userspace learns which memory
 * works for a device without picking heaps by name:
 *
 *   $ ls -l /sys/bus/platform/devices/vivid.0/dma_heaps/
 *   0 -> ../../../virtual/device_heap/system-32bit-contiguous
 *
 * A heap serves a device when its memory is what the device needs or
 * better: contiguous memory serves a device that can gather scattered
 * pages too, and memory below a lower limit serves a device that reaches
 * higher. Ranks go from the memory that is least scarce to the most:
 * scattered before contiguous, a higher limit before a lower one, and the
 * module's heap before the kernel's where both give the same memory (the
 * module checks every allocation against the limit and falls back from the
 * CMA area to the page allocator). The kernel's CMA heaps are linked only
 * for devices that reach all of RAM: where an area lies is not known to
 * modules.
 *
 * Each heap of the module also has a served/ directory linking back to the
 * devices it serves. In the heap core the links would be made by
 * dma_heap_add(); a module finds the core's class through one of its
 * devices.
 */

#include <linux/cma.h>
#include <linux/device.h>
#include <linux/dma-map-ops.h>
#include <linux/jhash.h>
#include <linux/kobject.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "device_heap.h"

static struct attribute *device_heap_no_attrs[] = {
	NULL,
};

static const struct attribute_group device_heap_links_group = {
	.name = "dma_heaps",
	.attrs = device_heap_no_attrs,
};

static const struct attribute_group device_heap_served_group = {
	.name = "served",
	.attrs = device_heap_no_attrs,
};

/* One heap that serves a device, and where it ranks. */
struct device_heap_link {
	struct device *target;
	bool contig;
	u64 phys_limit;
	bool ours;
	bool private_area;
};

/*
 * The heap core's class ("dma_heap"), found once through any registered
 * device: every device is on devices_kset, which the driver core does not
 * export. NULL where the kernel has no heap (no CONFIG_DMABUF_HEAPS, or no
 * heap registered). The core is built in, so its class lives for ever.
 */
static const struct class *device_heap_core_class(struct device *any)
{
	static const struct class *core_class;
	struct kset *kset = any->kobj.kset;
	struct kobject *k;

	lockdep_assert_held(&device_heaps_lock);
	if (core_class || !kset)
		return core_class;
	spin_lock(&kset->list_lock);
	list_for_each_entry(k, &kset->list, entry) {
		struct device *dev = kobj_to_dev(k);

		if (dev->class && !strcmp(dev->class->name, "dma_heap")) {
			core_class = dev->class;
			break;
		}
	}
	spin_unlock(&kset->list_lock);
	return core_class;
}

/* The kernel's heap @name, not one of ours, with a reference; or NULL. */
static struct device *device_heap_kernel_heap(struct device *any,
					      const char *name)
{
	const struct class *class = device_heap_core_class(any);

	if (!class || device_heap_node_is_ours(name))
		return NULL;
	return class_find_device_by_name(class, name);
}

/**
 * device_heap_kernel_heap_exists - whether the kernel has a heap @name
 * @dev: the device being served, to find the heap core by
 * @name: a heap name
 *
 * Return: true if a heap that is not the module's has the name.
 */
bool device_heap_kernel_heap_exists(struct device *dev, const char *name)
{
	struct device *heap = device_heap_kernel_heap(dev, name);
	bool exists = heap;

	put_device(heap);
	return exists;
}

/*
 * Adds the kernel's heap @name to @links (contiguous memory of any place in
 * RAM, or scattered pages anywhere), if it exists and is not there yet.
 */
static void device_heap_add_kernel(struct device *dev, const char *name,
				   bool contig, struct device_heap_link *links,
				   int *n)
{
	struct device *target = device_heap_kernel_heap(dev, name);
	int i;

	if (!target)
		return;
	for (i = 0; i < *n; i++) {
		if (links[i].target == target) {
			put_device(target);
			return;
		}
	}
	links[(*n)++] = (struct device_heap_link) {
		.target = target,
		.contig = contig,
		.phys_limit = device_heap_ram_top,
	};
}

/* The CMA area @dev's DMA API allocations come from, or NULL. */
static struct cma *device_heap_area(struct device *dev)
{
#ifdef DEVICE_HEAP_HAVE_CMA
	return dev_get_cma_area(dev);
#else
	return NULL;
#endif
}

/* A device's own area (not the default one) serves that device only. */
static bool device_heap_private_area(struct cma *area)
{
	return area && area != device_heap_area(NULL);
}

static int device_heap_link_cmp(const void *a, const void *b)
{
	const struct device_heap_link *x = a, *y = b;

	if (x->contig != y->contig)
		return x->contig ? 1 : -1;
	if (x->phys_limit != y->phys_limit)
		return x->phys_limit > y->phys_limit ? -1 : 1;
	if (x->ours != y->ours)
		return x->ours ? -1 : 1;
	/* Same memory class: a device's own CMA area first, then by name. */
	if (x->private_area != y->private_area)
		return x->private_area ? -1 : 1;
	return strcmp(dev_name(x->target), dev_name(y->target));
}

/*
 * The heaps that serve @dev, best first, into @links (room for every heap
 * of ours and three of the kernel's); returns how many.
 */
static int device_heap_rank(struct device *dev, struct device_heap_link *links)
{
	struct device_heap_served *s;
	struct device_heap *heap;
	struct cma *area = device_heap_area(dev);
	bool contig = true;
	u64 limit = 0;
	int n = 0;

	/* Scattered pages do if any entry of the device says they do. */
	list_for_each_entry(s, &device_heap_served_list, list) {
		if (s->dev != dev)
			continue;
		contig &= s->needs.backing == DEVICE_HEAP_CONTIG;
		limit = s->needs.phys_limit;
	}

	list_for_each_entry(heap, &device_heaps, list) {
		bool heap_contig = heap->backing == DEVICE_HEAP_CONTIG;

		if (contig && !heap_contig)
			continue;
		if (heap->phys_limit > limit)
			continue;
		if (device_heap_private_area(heap->cma) && heap->cma != area)
			continue;
		get_device(heap->node);
		links[n++] = (struct device_heap_link) {
			.target = heap->node,
			.contig = heap_contig,
			.phys_limit = heap->phys_limit,
			.ours = true,
			.private_area = device_heap_private_area(heap->cma),
		};
	}

	if (limit >= device_heap_ram_top) {
		if (!contig)
			device_heap_add_kernel(dev, "system", false, links, &n);
#ifdef DEVICE_HEAP_HAVE_CMA
		if (device_heap_private_area(area)) {
			device_heap_add_kernel(dev, cma_get_name(area), true,
					       links, &n);
		} else if (area) {
			int before = n;

			/* The default area's heap, else its name before 6.17. */
			device_heap_add_kernel(dev, "default_cma_region", true,
					       links, &n);
			if (n == before)
				device_heap_add_kernel(dev, cma_get_name(area),
						       true, links, &n);
		}
#endif
	}

	sort(links, n, sizeof(*links), device_heap_link_cmp, NULL);
	return n;
}

/**
 * device_heap_links_changed - tell userspace a device's dma_heaps/ changed
 * @dev: a device whose links changed or went
 *
 * Links are not objects of their own, so no uevent comes with them: a
 * "change" uevent on the device, with DMA_HEAPS=1, says that what its
 * dma_heaps/ holds changed. Heaps coming and going have the
 * uevents of their own devices ("add" and "remove" in the device_heap
 * class).
 */
void device_heap_links_changed(struct device *dev)
{
	char *envp[2] = { "DMA_HEAPS=1", NULL };

	kobject_uevent_env(&dev->kobj, KOBJ_CHANGE, envp);
}

/*
 * Makes @s's device's dma_heaps/ and the heaps' served/ links back.
 * Returns a signature of the links made (never 0), to tell whether they
 * changed.
 */
static u32 device_heap_link_device(struct device_heap_served *s)
{
	struct device_heap_link *links;
	char rank[12], back[DEVICE_HEAP_NAME_MAX];
	struct device_heap *heap;
	int i, n = 3, ret;
	u32 sig = 1;

	list_for_each_entry(heap, &device_heaps, list)
		n++;
	links = kcalloc(n, sizeof(*links), GFP_KERNEL);
	if (!links) {
		dev_warn(s->dev, "no memory for its heap links\n");
		return sig;
	}
	n = device_heap_rank(s->dev, links);

	ret = sysfs_create_group(&s->dev->kobj, &device_heap_links_group);
	if (ret) {
		dev_warn(s->dev, "cannot make dma_heaps/: %d\n", ret);
		goto put;
	}
	s->linked = true;
	snprintf(back, sizeof(back), "%s:%s",
		 s->dev->bus ? s->dev->bus->name : "none", dev_name(s->dev));
	for (i = 0; i < n; i++) {
		snprintf(rank, sizeof(rank), "%d", i);
		ret = sysfs_add_link_to_group(&s->dev->kobj,
					      device_heap_links_group.name,
					      &links[i].target->kobj, rank);
		if (ret)
			dev_warn(s->dev, "cannot link heap %s: %d\n",
				 dev_name(links[i].target), ret);
		else
			sig = jhash(dev_name(links[i].target),
				    strlen(dev_name(links[i].target)), sig) ?: 1;
		if (links[i].ours &&
		    sysfs_add_link_to_group(&links[i].target->kobj,
					    device_heap_served_group.name,
					    &s->dev->kobj, back))
			dev_warn(s->dev, "cannot link back from heap %s\n",
				 dev_name(links[i].target));
	}
put:
	for (i = 0; i < n; i++)
		put_device(links[i].target);
	kfree(links);
	return sig;
}

/**
 * device_heap_unlink - remove a served entry's device's links
 * @s: the entry; its device keeps no dma_heaps/ directory
 */
void device_heap_unlink(struct device_heap_served *s)
{
	if (!s->linked)
		return;
	sysfs_remove_group(&s->dev->kobj, &device_heap_links_group);
	s->linked = false;
}

/**
 * device_heap_relink - make every link again
 *
 * Called with device_heaps_lock held whenever a device starts or stops
 * being served: a new heap may serve devices served before it, and a heap
 * that goes leaves a gap in others' ranks.
 */
void device_heap_relink(void)
{
	struct device_heap_served *s, *t;
	struct device_heap *heap;
	bool first;
	u32 sig;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(s, &device_heap_served_list, list)
		device_heap_unlink(s);
	list_for_each_entry(heap, &device_heaps, list) {
		if (heap->served)
			sysfs_remove_group(&heap->node->kobj,
					   &device_heap_served_group);
		heap->served = !sysfs_create_group(&heap->node->kobj,
						   &device_heap_served_group);
	}
	list_for_each_entry(s, &device_heap_served_list, list) {
		/* A device with two entries gets one directory. */
		first = true;
		list_for_each_entry(t, &device_heap_served_list, list) {
			if (t == s)
				break;
			if (t->dev == s->dev) {
				first = false;
				break;
			}
		}
		if (first) {
			sig = device_heap_link_device(s);
			s->announce = sig != s->links_sig;
			s->links_sig = sig;
		}
	}
	/* Told once every link is made: a reader finds them all. */
	list_for_each_entry(s, &device_heap_served_list, list) {
		if (s->announce)
			device_heap_links_changed(s->dev);
		s->announce = false;
	}
}
