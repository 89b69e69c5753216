// SPDX-License-Identifier: GPL-2.0
/*
 * Per-device DMA-BUF heaps.
 *
 * One heap per served device, as proposed in "dma-buf: heaps: Add a device
 * heap" (2020), with what that thread asked for: discovery. Each heap is a
 * device of class device_heap, child of the device it serves, so userspace
 * holding a DRM or V4L2 device number finds the heaps that serve it under
 * /sys/dev/char/MAJ:MIN/device/device_heap/, together with the memory
 * guarantees of each (see ABI.md).
 *
 * Heaps are created from the "devices" module parameter or at run time by
 * writing to /sys/class/device_heap/add, and removed through
 * /sys/class/device_heap/remove or when the served device goes away.
 */

#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "device_heap.h"

static char *devices;
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices,
		 "Comma-separated devices to serve at load: <bus>/<device>[:contig|:sg]");

static unsigned int contig_max_mb = 256;
module_param(contig_max_mb, uint, 0444);
MODULE_PARM_DESC(contig_max_mb,
		 "Largest contiguous buffer in MiB (default 256, capped at half of RAM)");

atomic_t device_heap_live_buffers = ATOMIC_INIT(0);
atomic64_t device_heap_live_bytes = ATOMIC64_INIT(0);

static const struct class device_heap_class;

static LIST_HEAD(device_heaps);
static DEFINE_MUTEX(device_heaps_lock);
/* Set by module exit under device_heaps_lock: no heap may be created after. */
static bool device_heaps_closing;
static struct dentry *device_heap_debugfs;

static const char * const device_heap_backing_names[] = {
	[DEVICE_HEAP_CONTIG] = "contig",
	[DEVICE_HEAP_SG] = "sg",
};

struct device_heap_bus {
	const struct bus_type *bus;
	struct notifier_block nb;
	bool registered;
};

static int device_heap_bus_notify(struct notifier_block *nb,
				  unsigned long action, void *data);

static struct device_heap_bus device_heap_buses[] = {
	{ .bus = &platform_bus_type, .nb.notifier_call = device_heap_bus_notify },
#ifdef CONFIG_PCI
	{ .bus = &pci_bus_type, .nb.notifier_call = device_heap_bus_notify },
#endif
};

static void device_heap_free(struct kref *ref)
{
	struct device_heap *heap = container_of(ref, struct device_heap, ref);

	put_device(heap->dev);
	kfree(heap);
}

/*
 * Drop the served device as soon as the heap is unregistered rather than
 * when the last buffer goes: a reference does not keep a device's memory
 * alive when its driver defined it statically (vivid does), and buffers need
 * only the placement the heap computed, never the device itself.
 */
static void device_heap_release_device(struct device_heap *heap)
{
	put_device(heap->dev);
	heap->dev = NULL;
}

void device_heap_get(struct device_heap *heap)
{
	kref_get(&heap->ref);
}

void device_heap_put(struct device_heap *heap)
{
	kref_put(&heap->ref, device_heap_free);
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

/* Called with device_heaps_lock held. */
static void device_heap_destroy(struct device_heap *heap)
{
	atomic_set(&heap->dead, 1);
	list_del(&heap->list);
	device_unregister(heap->node);
	device_heap_node_unregister(heap);
	device_heap_release_device(heap);
	device_heap_put(heap);
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

/*
 * Without an IOMMU a device reaches one buffer at one bus address, so the
 * only memory sure to work for it is contiguous; behind an IOMMU the DMA API
 * makes scattered pages look contiguous to the device.
 */
static enum device_heap_backing device_heap_default_backing(struct device *dev)
{
	return device_iommu_mapped(dev) ? DEVICE_HEAP_SG : DEVICE_HEAP_CONTIG;
}

static struct device_heap *device_heap_create(struct device *dev,
					      enum device_heap_backing backing)
{
	struct device_heap *heap;
	int ret;

	lockdep_assert_held(&device_heaps_lock);

	if (device_heaps_closing)
		return ERR_PTR(-ENODEV);
	if (!dev->dma_mask) {
		dev_warn(dev, "device does no DMA, no heap for it\n");
		return ERR_PTR(-EINVAL);
	}

	heap = kzalloc(sizeof(*heap), GFP_KERNEL);
	if (!heap)
		return ERR_PTR(-ENOMEM);

	kref_init(&heap->ref);
	INIT_LIST_HEAD(&heap->list);
	heap->dev = get_device(dev);
	heap->backing = backing;
	heap->dma_limit = min_not_zero(dma_get_mask(dev), dev->bus_dma_limit);
	heap->iommu = device_iommu_mapped(dev);
	heap->coherent = dev_is_dma_coherent(dev);
	heap->max_alloc = device_heap_max_alloc(backing);

	if (snprintf(heap->name, sizeof(heap->name), "%s-%s", dev_name(dev),
		     device_heap_backing_names[backing]) >= sizeof(heap->name)) {
		ret = -ENAMETOOLONG;
		goto put_heap;
	}
	if (device_heap_lookup(heap->name)) {
		ret = -EEXIST;
		goto put_heap;
	}

	ret = device_heap_node_register(heap);
	if (ret)
		goto put_heap;

	heap->node = device_create(&device_heap_class, dev, heap->devt, heap,
				   "%s", heap->name);
	if (IS_ERR(heap->node)) {
		ret = PTR_ERR(heap->node);
		goto unregister_node;
	}

	list_add_tail(&heap->list, &device_heaps);
	dev_info(dev, "heap %s: %s, dma mask %d bits, %scoherent\n",
		 heap->name, device_heap_backing_names[backing],
		 fls64(heap->dma_limit), heap->coherent ? "" : "non-");
	return heap;

unregister_node:
	device_heap_node_unregister(heap);
put_heap:
	device_heap_put(heap);
	return ERR_PTR(ret);
}

static const struct bus_type *device_heap_find_bus(const char *name, size_t len)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(device_heap_buses); i++) {
		const char *bus = device_heap_buses[i].bus->name;

		if (strlen(bus) == len && !strncmp(bus, name, len))
			return device_heap_buses[i].bus;
	}
	return NULL;
}

/*
 * Parse "<bus>/<device>[:contig|:sg]" and create the heap. Device names may
 * themselves contain ':' (PCI), so only a known backing after the last ':'
 * counts as one.
 */
static int device_heap_add(const char *spec)
{
	enum device_heap_backing backing;
	const struct bus_type *bus;
	const char *slash, *colon;
	struct device_heap *heap;
	struct device *dev;
	bool auto_backing = true;
	char *name;
	int i;

	slash = strchr(spec, '/');
	if (!slash || slash == spec || !slash[1])
		return -EINVAL;
	bus = device_heap_find_bus(spec, slash - spec);
	if (!bus)
		return -ENODEV;

	name = kstrdup(slash + 1, GFP_KERNEL);
	if (!name)
		return -ENOMEM;
	colon = strrchr(name, ':');
	if (colon) {
		i = match_string(device_heap_backing_names,
				 ARRAY_SIZE(device_heap_backing_names),
				 colon + 1);
		if (i >= 0) {
			backing = i;
			auto_backing = false;
			name[colon - name] = '\0';
		}
	}

	/*
	 * A device whose removal has passed BUS_NOTIFY_DEL_DEVICE but which is
	 * still on its bus can be found here, and its heap would then not be
	 * removed with it: the driver core offers no way to ask whether a
	 * device is being deleted. The window is a few instructions of
	 * device_del() wide and needs a concurrent write to "add".
	 */
	dev = bus_find_device_by_name(bus, NULL, name);
	kfree(name);
	if (!dev)
		return -ENODEV;
	if (auto_backing)
		backing = device_heap_default_backing(dev);

	mutex_lock(&device_heaps_lock);
	heap = device_heap_create(dev, backing);
	mutex_unlock(&device_heaps_lock);
	put_device(dev);

	return PTR_ERR_OR_ZERO(heap);
}

static int device_heap_remove(const char *name)
{
	struct device_heap *heap;
	int ret = -ENOENT;

	mutex_lock(&device_heaps_lock);
	heap = device_heap_lookup(name);
	if (heap) {
		device_heap_destroy(heap);
		ret = 0;
	}
	mutex_unlock(&device_heaps_lock);
	return ret;
}

/*
 * The served device is going away: its heaps go first, so that their sysfs
 * nodes never outlive their parent. Buffers already allocated stay valid;
 * they hold the device structure, not the driver.
 */
static int device_heap_bus_notify(struct notifier_block *nb,
				  unsigned long action, void *data)
{
	struct device_heap *heap, *tmp;
	struct device *dev = data;

	if (action != BUS_NOTIFY_DEL_DEVICE &&
	    action != BUS_NOTIFY_UNBIND_DRIVER)
		return NOTIFY_DONE;

	mutex_lock(&device_heaps_lock);
	list_for_each_entry_safe(heap, tmp, &device_heaps, list) {
		if (heap->dev != dev)
			continue;
		dev_info(dev, "device going away, removing heap %s\n",
			 heap->name);
		device_heap_destroy(heap);
	}
	mutex_unlock(&device_heaps_lock);
	return NOTIFY_OK;
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
	ret = device_heap_add(strim(spec));
	kfree(spec);
	return ret ?: count;
}
static CLASS_ATTR_WO(add);

static ssize_t remove_store(const struct class *class,
			    const struct class_attribute *attr,
			    const char *buf, size_t count)
{
	char *name;
	int ret;

	name = kstrndup(buf, count, GFP_KERNEL);
	if (!name)
		return -ENOMEM;
	ret = device_heap_remove(strim(name));
	kfree(name);
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
DEVICE_HEAP_ATTR_RO(dma_mask_bits, "%d", fls64(heap->dma_limit));
DEVICE_HEAP_ATTR_RO(max_alloc_bytes, "%zu", heap->max_alloc);

/* Chunks and contiguous ranges all start on a page boundary. */
static ssize_t alignment_bytes_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", PAGE_SIZE);
}
static DEVICE_ATTR_RO(alignment_bytes);

static struct attribute *device_heap_attrs[] = {
	&dev_attr_name.attr,
	&dev_attr_backing.attr,
	&dev_attr_contiguous.attr,
	&dev_attr_coherent.attr,
	&dev_attr_dma_mask_bits.attr,
	&dev_attr_max_alloc_bytes.attr,
	&dev_attr_alignment_bytes.attr,
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

static void device_heap_add_param_devices(void)
{
	char *list, *cur, *spec;
	int ret;

	if (!devices)
		return;
	list = kstrdup(devices, GFP_KERNEL);
	if (!list)
		return;
	cur = list;
	while ((spec = strsep(&cur, ","))) {
		spec = strim(spec);
		if (!*spec)
			continue;
		ret = device_heap_add(spec);
		if (ret)
			pr_warn("device_heap: no heap for \"%s\": %d\n", spec, ret);
	}
	kfree(list);
}

static void device_heap_unregister_buses(void)
{
	int i;

	for (i = ARRAY_SIZE(device_heap_buses) - 1; i >= 0; i--) {
		if (device_heap_buses[i].registered)
			bus_unregister_notifier(device_heap_buses[i].bus,
						&device_heap_buses[i].nb);
		device_heap_buses[i].registered = false;
	}
}

static int __init device_heap_init(void)
{
	int ret, i;

	ret = device_heap_node_init();
	if (ret)
		return ret;

	ret = class_register(&device_heap_class);
	if (ret)
		goto exit_node;

	for (i = 0; i < ARRAY_SIZE(device_heap_buses); i++) {
		ret = bus_register_notifier(device_heap_buses[i].bus,
					    &device_heap_buses[i].nb);
		if (ret)
			goto unregister_buses;
		device_heap_buses[i].registered = true;
	}

	device_heap_debugfs = debugfs_create_dir("device_heap", NULL);
	debugfs_create_atomic_t("live_buffers", 0444, device_heap_debugfs,
				&device_heap_live_buffers);
	debugfs_create_file_unsafe("live_bytes", 0444, device_heap_debugfs,
				   NULL, &device_heap_live_bytes_fops);

	device_heap_add_param_devices();
	return 0;

unregister_buses:
	device_heap_unregister_buses();
	class_unregister(&device_heap_class);
exit_node:
	device_heap_node_exit();
	return ret;
}

static void __exit device_heap_exit(void)
{
	struct device_heap *heap, *tmp;

	/*
	 * No buffer or open heap file is left: each holds a module reference.
	 * Stop hearing about devices first, then remove the heaps.
	 */
	device_heap_unregister_buses();
	mutex_lock(&device_heaps_lock);
	/* A write to "add" may still be waiting for the lock. */
	device_heaps_closing = true;
	list_for_each_entry_safe(heap, tmp, &device_heaps, list)
		device_heap_destroy(heap);
	mutex_unlock(&device_heaps_lock);

	debugfs_remove(device_heap_debugfs);
	class_unregister(&device_heap_class);
	device_heap_node_exit();
}

module_init(device_heap_init);
module_exit(device_heap_exit);

MODULE_DESCRIPTION("DMA-BUF heaps that allocate for a given device, with sysfs discovery");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
