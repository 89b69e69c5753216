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
 * Devices are named by the "devices" module parameter or at run time by
 * writing to /sys/class/device_heap/add. A named device has its heap while
 * it is bound to a driver: drivers bind when they please (a display whose
 * driver loads after this module, a device that is unbound and bound
 * again), so the module keeps the list and serves each device when its
 * driver binds. Writing a heap's name to /sys/class/device_heap/remove
 * removes the heap and forgets the device.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/amba/bus.h>
#include <linux/cma.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/iommu-dma.h>
#include <linux/dma-mapping.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/property.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "device_heap.h"
#include "heap_compat.h"

#if DEVICE_HEAP_HAVE_FAUX
#include <linux/device/faux.h>
#endif

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

enum device_heap_bus_index {
	DEVICE_HEAP_BUS_PLATFORM,
#ifdef CONFIG_ARM_AMBA
	DEVICE_HEAP_BUS_AMBA,
#endif
#ifdef CONFIG_PCI
	DEVICE_HEAP_BUS_PCI,
#endif
#if DEVICE_HEAP_HAVE_FAUX
	DEVICE_HEAP_BUS_FAUX,
#endif
	DEVICE_HEAP_NR_BUSES
};

static int device_heap_bus_notify(struct notifier_block *nb,
				  unsigned long action, void *data);

static struct device_heap_bus device_heap_buses[DEVICE_HEAP_NR_BUSES] = {
	[DEVICE_HEAP_BUS_PLATFORM] = {
		.bus = &platform_bus_type,
		.nb.notifier_call = device_heap_bus_notify,
	},
#ifdef CONFIG_ARM_AMBA
	/* PrimeCell devices of ARM boards: PL110 and PL111 displays. */
	[DEVICE_HEAP_BUS_AMBA] = {
		.bus = &amba_bustype,
		.nb.notifier_call = device_heap_bus_notify,
	},
#endif
#ifdef CONFIG_PCI
	[DEVICE_HEAP_BUS_PCI] = {
		.bus = &pci_bus_type,
		.nb.notifier_call = device_heap_bus_notify,
	},
#endif
#if DEVICE_HEAP_HAVE_FAUX
	/* .bus is taken from device_heap_faux at init: faux_bus_type is static. */
	[DEVICE_HEAP_BUS_FAUX] = {
		.nb.notifier_call = device_heap_bus_notify,
	},
#endif
};

#if DEVICE_HEAP_HAVE_FAUX
static struct faux_device *device_heap_faux;
#endif

/*
 * A device the module was asked to serve, kept so that it gets its heap
 * whenever its driver binds. Under device_heaps_lock.
 */
struct device_heap_wanted {
	struct list_head list;
	const struct bus_type *bus;
	bool auto_backing;
	enum device_heap_backing backing;
	char name[];
};

static LIST_HEAD(device_heap_wanted_list);

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
	device_heap_cache_drop(heap);
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
	return use_dma_iommu(dev) ? DEVICE_HEAP_SG : DEVICE_HEAP_CONTIG;
}

/*
 * Devices between BUS_NOTIFY_DEL_DEVICE and BUS_NOTIFY_REMOVED_DEVICE: being
 * deleted but still on their bus, where "add" could find them. Under
 * device_heaps_lock.
 */
struct device_heap_dying {
	struct list_head list;
	struct device *dev;
};

static LIST_HEAD(device_heap_dying_list);

static void device_heap_mark_dying(struct device *dev)
{
	struct device_heap_dying *d;

	/* Small and short-lived; the deletion cannot be refused. */
	d = kmalloc(sizeof(*d), GFP_KERNEL | __GFP_NOFAIL);
	d->dev = dev;
	mutex_lock(&device_heaps_lock);
	list_add(&d->list, &device_heap_dying_list);
	mutex_unlock(&device_heaps_lock);
}

static void device_heap_unmark_dying(struct device *dev)
{
	struct device_heap_dying *d, *tmp;

	mutex_lock(&device_heaps_lock);
	list_for_each_entry_safe(d, tmp, &device_heap_dying_list, list) {
		if (d->dev == dev) {
			list_del(&d->list);
			kfree(d);
			break;
		}
	}
	mutex_unlock(&device_heaps_lock);
}

static bool device_heap_dying(struct device *dev)
{
	struct device_heap_dying *d;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(d, &device_heap_dying_list, list) {
		if (d->dev == dev)
			return true;
	}
	return false;
}

/*
 * A platform device that no driver of the bus could take: registered bare by
 * a module that drives it itself (vkms and vgem before 6.15 do). Nothing
 * will set another DMA mask on it.
 */
static bool device_heap_driverless(struct device *dev)
{
	return !dev->driver && dev->bus == &platform_bus_type &&
	       !dev_fwnode(dev) && !device_has_driver_override(dev) &&
	       !driver_find(to_platform_device(dev)->name, &platform_bus_type);
}

/*
 * Which devices get a heap, decided under the device lock and
 * device_heaps_lock:
 *  - a device bound to its driver: the driver set the DMA mask in probe,
 *    and the unbind notification, which removes the heap, is sent under the
 *    device lock held here, also when the device is deleted, so it always
 *    sees a heap created now;
 *  - a driverless device (above), whose heap goes at BUS_NOTIFY_DEL_DEVICE;
 *    one already past that notification is refused (device_heap_dying()),
 *    and one past BUS_NOTIFY_REMOVED_DEVICE is no longer on its bus;
 * never a device merely unbound, whose mask is a stale driver's or none.
 */
static bool device_heap_servable(struct device *dev)
{
	struct device *again;
	bool on_bus;

	lockdep_assert_held(&device_heaps_lock);
	device_lock_assert(dev);

	if (device_heap_dying(dev))
		return false;
	again = bus_find_device_by_name(dev->bus, NULL, dev_name(dev));
	on_bus = again == dev;
	put_device(again);
	if (!on_bus)
		return false;
	return dev->driver || device_heap_driverless(dev);
}

/*
 * The highest physical address the served device reaches. The DMA mask is a
 * bus address; dma_to_phys() applies the bus's offsets, as dma-direct does
 * for its own allocations. Behind an IOMMU any page will do.
 */
static u64 device_heap_phys_limit(struct device *dev)
{
	u64 dma_limit = min_not_zero(dma_get_mask(dev), dev->bus_dma_limit);
	phys_addr_t phys;

	if (use_dma_iommu(dev))
		return U64_MAX;
	phys = dma_to_phys(dev, dma_limit);
	/* No bus region holds the limit: nothing beyond the mask is sure. */
	if (phys == (phys_addr_t)-1)
		return dma_limit;
	return phys;
}

/*
 * Called with the served device's lock and device_heaps_lock held, so that
 * the device cannot change state between device_heap_servable() and the
 * heap joining the list that the bus notifier walks.
 */
static struct device_heap *device_heap_create(struct device *dev,
					      enum device_heap_backing backing)
{
	struct device_heap *heap;
	int ret;

	lockdep_assert_held(&device_heaps_lock);
	device_lock_assert(dev);

	if (device_heaps_closing)
		return ERR_PTR(-ENODEV);
	if (!device_heap_servable(dev))
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
	heap->phys_limit = device_heap_phys_limit(dev);
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

	device_heap_contig_source(heap);

	ret = device_heap_node_register(heap);
	if (ret)
		goto put_heap;

	heap->node = device_create(&device_heap_class, dev, heap->devt, heap,
				   "%s", heap->name);
	if (IS_ERR(heap->node)) {
		ret = PTR_ERR(heap->node);
		goto unregister_node;
	}

	ret = device_heap_node_publish(heap);
	if (ret)
		goto destroy_node;

	list_add_tail(&heap->list, &device_heaps);
	dev_info(dev, "heap %s: %s%s, below %d bits, %scoherent, accounting %s\n",
		 heap->name, device_heap_backing_names[backing],
		 heap->cma ? " (cma)" : "", fls64(heap->phys_limit),
		 heap->coherent ? "" : "non-",
		 device_heap_accounting_name(heap));
	return heap;

destroy_node:
	device_unregister(heap->node);
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
		const struct bus_type *bus = device_heap_buses[i].bus;

		if (bus && strlen(bus->name) == len &&
		    !strncmp(bus->name, name, len))
			return bus;
	}
	return NULL;
}

/*
 * Parse "<bus>/<device>[:contig|:sg]". Device names may themselves contain
 * ':' (PCI), so only a known backing after the last ':' counts as one.
 */
static struct device_heap_wanted *device_heap_parse(const char *spec)
{
	const struct bus_type *bus;
	struct device_heap_wanted *w;
	const char *slash;
	char *colon;
	size_t len;
	int i;

	slash = strchr(spec, '/');
	if (!slash || slash == spec || !slash[1])
		return ERR_PTR(-EINVAL);
	bus = device_heap_find_bus(spec, slash - spec);
	if (!bus)
		return ERR_PTR(-ENODEV);

	len = strlen(slash + 1);
	/* Zeroed: the name is terminated. */
	w = kzalloc(struct_size(w, name, len + 1), GFP_KERNEL);
	if (!w)
		return ERR_PTR(-ENOMEM);
	INIT_LIST_HEAD(&w->list);
	w->bus = bus;
	w->auto_backing = true;
	memcpy(w->name, slash + 1, len);
	colon = strrchr(w->name, ':');
	if (colon) {
		i = match_string(device_heap_backing_names,
				 ARRAY_SIZE(device_heap_backing_names),
				 colon + 1);
		if (i >= 0) {
			w->backing = i;
			w->auto_backing = false;
			*colon = '\0';
		}
	}
	return w;
}

static bool device_heap_wanted_match(const struct device_heap_wanted *w,
				     struct device *dev)
{
	return w->bus == dev->bus && !strcmp(w->name, dev_name(dev));
}

static enum device_heap_backing
device_heap_wanted_backing(const struct device_heap_wanted *w,
			   struct device *dev)
{
	return w->auto_backing ? device_heap_default_backing(dev) : w->backing;
}

/* Keeps @w on the list, or frees it if the list has it already. */
static void device_heap_want(struct device_heap_wanted *w)
{
	struct device_heap_wanted *old;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(old, &device_heap_wanted_list, list) {
		if (old->bus == w->bus && !strcmp(old->name, w->name) &&
		    old->auto_backing == w->auto_backing &&
		    (w->auto_backing || old->backing == w->backing)) {
			kfree(w);
			return;
		}
	}
	list_add_tail(&w->list, &device_heap_wanted_list);
}

/*
 * Whether @w asks for a heap named @name: "<device>-<backing>", either
 * backing for an entry that lets the module choose (its device may not be
 * there to ask).
 */
static bool device_heap_wanted_names(const struct device_heap_wanted *w,
				     const char *name)
{
	size_t len = strlen(w->name);
	int i;

	if (strncmp(name, w->name, len) || name[len] != '-')
		return false;
	i = match_string(device_heap_backing_names,
			 ARRAY_SIZE(device_heap_backing_names), name + len + 1);
	return i >= 0 && (w->auto_backing || w->backing == i);
}

/*
 * Forgets every entry asking for a heap named @name, whether or not the
 * heap exists now: "remove" means for good. Returns whether one was found.
 */
static bool device_heap_forget(const char *name)
{
	struct device_heap_wanted *w, *tmp;
	bool found = false;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry_safe(w, tmp, &device_heap_wanted_list, list) {
		if (device_heap_wanted_names(w, name)) {
			list_del(&w->list);
			kfree(w);
			found = true;
		}
	}
	return found;
}

/*
 * Makes the heaps the list asks for @dev that do not exist yet. Called with
 * the device lock and device_heaps_lock held; a device that cannot be served
 * now (unbound, going away) is left for its next bind.
 */
static void device_heap_serve(struct device *dev)
{
	struct device_heap_wanted *w;
	struct device_heap *heap;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(w, &device_heap_wanted_list, list) {
		if (!device_heap_wanted_match(w, dev))
			continue;
		heap = device_heap_create(dev, device_heap_wanted_backing(w, dev));
		if (IS_ERR(heap) && PTR_ERR(heap) != -EEXIST &&
		    PTR_ERR(heap) != -ENODEV)
			dev_warn(dev, "no heap: %pe\n", heap);
	}
}

/*
 * A write to "add": the device must be there and servable now, else
 * -ENODEV and nothing is remembered. Once made, its heap comes back
 * whenever the device binds again.
 */
static int device_heap_add(const char *spec)
{
	struct device_heap_wanted *w;
	struct device_heap *heap;
	struct device *dev;
	int ret;

	w = device_heap_parse(spec);
	if (IS_ERR(w))
		return PTR_ERR(w);
	dev = bus_find_device_by_name(w->bus, NULL, w->name);
	if (!dev) {
		kfree(w);
		return -ENODEV;
	}

	/* Lock order: device, then the heap list, as in the bus notifier. */
	device_lock(dev);
	mutex_lock(&device_heaps_lock);
	heap = device_heap_create(dev, device_heap_wanted_backing(w, dev));
	ret = PTR_ERR_OR_ZERO(heap);
	if (!ret) {
		device_heap_want(w);
		w = NULL;
	}
	mutex_unlock(&device_heaps_lock);
	device_unlock(dev);
	put_device(dev);
	kfree(w);
	return ret;
}

/*
 * A "devices=" entry: remembered first, so that a driver binding while the
 * device is looked up is seen by the notifier, then served if it can be.
 * A device that is not there yet, or not bound, waits for its driver.
 */
static int device_heap_add_param(const char *spec)
{
	struct device_heap_wanted *w;
	const struct bus_type *bus;
	struct device *dev;
	char *name;

	w = device_heap_parse(spec);
	if (IS_ERR(w))
		return PTR_ERR(w);
	bus = w->bus;
	/* @w is the list's once kept, and freed if it was a duplicate. */
	name = kstrdup(w->name, GFP_KERNEL);
	if (!name) {
		kfree(w);
		return -ENOMEM;
	}
	mutex_lock(&device_heaps_lock);
	device_heap_want(w);
	mutex_unlock(&device_heaps_lock);

	dev = bus_find_device_by_name(bus, NULL, name);
	kfree(name);
	if (!dev) {
		pr_info("%s: not there yet, served when its driver binds\n",
			spec);
		return 0;
	}
	device_lock(dev);
	mutex_lock(&device_heaps_lock);
	if (dev->driver || device_heap_driverless(dev))
		device_heap_serve(dev);
	else
		pr_info("%s: not bound yet, served when its driver binds\n",
			spec);
	mutex_unlock(&device_heaps_lock);
	device_unlock(dev);
	put_device(dev);
	return 0;
}

/*
 * Removes the heap @name and forgets the entries asking for it; an entry
 * waiting for its device or driver can be forgotten without a heap.
 */
static int device_heap_remove(const char *name)
{
	struct device_heap *heap;
	int ret = -ENOENT;

	mutex_lock(&device_heaps_lock);
	if (device_heap_forget(name))
		ret = 0;
	heap = device_heap_lookup(name);
	if (heap) {
		device_heap_destroy(heap);
		ret = 0;
	}
	mutex_unlock(&device_heaps_lock);
	return ret;
}

/*
 * Heaps follow their device's driver. A driver binding or unbinding may set
 * another DMA mask than a heap was made for, and a device going away takes
 * its heaps first, so that their sysfs nodes never outlive their parent;
 * buffers already allocated stay valid, they need nothing from the device.
 * Once bound (under the device lock) a listed device gets its heaps again.
 * A driverless device binds nothing: it is served by "add" or at load only,
 * after the module that made it has set its DMA mask, which it does after
 * registering the device (vkms and vgem before 6.15).
 */
static int device_heap_bus_notify(struct notifier_block *nb,
				  unsigned long action, void *data)
{
	struct device_heap *heap, *tmp;
	struct device *dev = data;

	switch (action) {
	case BUS_NOTIFY_BOUND_DRIVER:
		mutex_lock(&device_heaps_lock);
		device_heap_serve(dev);
		mutex_unlock(&device_heaps_lock);
		return NOTIFY_OK;
	case BUS_NOTIFY_DEL_DEVICE:
		device_heap_mark_dying(dev);
		break;
	case BUS_NOTIFY_REMOVED_DEVICE:
		device_heap_unmark_dying(dev);
		return NOTIFY_OK;
	case BUS_NOTIFY_BIND_DRIVER:
	case BUS_NOTIFY_UNBIND_DRIVER:
		break;
	default:
		return NOTIFY_DONE;
	}

	mutex_lock(&device_heaps_lock);
	list_for_each_entry_safe(heap, tmp, &device_heaps, list) {
		if (heap->dev != dev)
			continue;
		dev_info(dev, "device changing or going away, removing heap %s\n",
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
 * Where contiguous buffers come from: "cma:<area>" when the kernel has a CMA
 * area for the device, else "migrate" (buddy pages, alloc_contig_range()
 * above MAX_PAGE_ORDER). Scatter-gather heaps take buddy pages: "buddy".
 */
static ssize_t contig_source_show(struct device *dev,
				  struct device_attribute *attr, char *buf)
{
	const struct device_heap *heap = dev_get_drvdata(dev);

	if (heap->backing != DEVICE_HEAP_CONTIG)
		return sysfs_emit(buf, "buddy\n");
#ifdef DEVICE_HEAP_HAVE_CMA
	if (heap->cma)
		return sysfs_emit(buf, "cma:%s\n", cma_get_name(heap->cma));
#endif
	return sysfs_emit(buf, "migrate\n");
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
		ret = device_heap_add_param(spec);
		if (ret)
			pr_warn("cannot serve \"%s\": %d\n", spec, ret);
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

#if DEVICE_HEAP_HAVE_FAUX
/* The faux bus (vkms, vgem) is not exported: a faux device of ours leads to it. */
static int device_heap_faux_init(void)
{
	device_heap_faux = faux_device_create("device_heap", NULL, NULL);
	if (!device_heap_faux)
		return -ENOMEM;
	device_heap_buses[DEVICE_HEAP_BUS_FAUX].bus = device_heap_faux->dev.bus;
	return 0;
}

static void device_heap_faux_exit(void)
{
	faux_device_destroy(device_heap_faux);
}
#else
static int device_heap_faux_init(void)
{
	return 0;
}

static void device_heap_faux_exit(void)
{
}
#endif

static int __init device_heap_init(void)
{
	int ret, i;

	ret = device_heap_cache_init();
	if (ret)
		return ret;

	ret = device_heap_node_init();
	if (ret)
		goto exit_cache;

	ret = device_heap_faux_init();
	if (ret)
		goto exit_node;

	ret = class_register(&device_heap_class);
	if (ret)
		goto exit_faux;

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
	debugfs_create_file_unsafe("cached_bytes", 0444, device_heap_debugfs,
				   NULL, &device_heap_cached_bytes_fops);

	device_heap_add_param_devices();
	return 0;

unregister_buses:
	device_heap_unregister_buses();
	class_unregister(&device_heap_class);
exit_faux:
	device_heap_faux_exit();
exit_node:
	device_heap_node_exit();
exit_cache:
	device_heap_cache_exit();
	return ret;
}

static void __exit device_heap_exit(void)
{
	struct device_heap_wanted *w, *wtmp;
	struct device_heap_dying *d, *dtmp;
	struct device_heap *heap, *tmp;

	/*
	 * No buffer or open heap file is left: each holds a module reference.
	 * Remove the heaps while the notifiers still remove them for devices
	 * going away, then stop hearing about devices.
	 */
	mutex_lock(&device_heaps_lock);
	/* A write to "add" may still be waiting for the lock. */
	device_heaps_closing = true;
	list_for_each_entry_safe(heap, tmp, &device_heaps, list)
		device_heap_destroy(heap);
	/* A deletion in flight when the notifiers went leaves its mark. */
	list_for_each_entry_safe(d, dtmp, &device_heap_dying_list, list) {
		list_del(&d->list);
		kfree(d);
	}
	list_for_each_entry_safe(w, wtmp, &device_heap_wanted_list, list) {
		list_del(&w->list);
		kfree(w);
	}
	mutex_unlock(&device_heaps_lock);
	device_heap_unregister_buses();

	debugfs_remove(device_heap_debugfs);
	class_unregister(&device_heap_class);
	device_heap_faux_exit();
	device_heap_node_exit();
	device_heap_cache_exit();
}

module_init(device_heap_init);
module_exit(device_heap_exit);

MODULE_DESCRIPTION("DMA-BUF heaps that allocate for a given device, with sysfs discovery");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DEVICE_HEAP_NS(DMA_BUF));
