// SPDX-License-Identifier: GPL-2.0
/*
 * Which devices are served, following their drivers.
 *
 * Devices are named by bus and name ("devices" module parameter, or a write
 * to /sys/class/device_heap/add). The module keeps that list and serves a
 * named device whenever it is bound to a driver: drivers bind when they
 * please (a display whose driver loads after this module, a GPU probing
 * asynchronously, a device unbound and bound again). A device's needs are
 * read once it is bound, since its driver sets the DMA mask in probe; it is
 * then served by the heap giving exactly that memory, made if none does.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/amba/bus.h>
#include <linux/device.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/mem_encrypt.h>
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

LIST_HEAD(device_heap_served_list);

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

/* Set by module exit under device_heaps_lock: nothing is served after. */
static bool device_heaps_closing;

/*
 * A device the module was asked to serve, kept so that it is served
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
 * Which devices are served, decided under the device lock and
 * device_heaps_lock:
 *  - a device bound to its driver: the driver set the DMA mask in probe,
 *    and the unbind notification, which stops serving it, is sent under the
 *    device lock held here, also when the device is deleted;
 *  - a driverless device (above), which stops being served at
 *    BUS_NOTIFY_DEL_DEVICE; one already past that notification is refused
 *    (device_heap_dying()), and one past BUS_NOTIFY_REMOVED_DEVICE is no
 *    longer on its bus;
 * never a device merely unbound, whose mask is a stale driver's or none.
 */
static bool device_heap_servable(struct device *dev)
{
	struct device *again;
	bool on_bus;

	lockdep_assert_held(&device_heaps_lock);
	device_lock_assert(dev);

	if (device_heaps_closing || device_heap_dying(dev))
		return false;
	again = bus_find_device_by_name(dev->bus, NULL, dev_name(dev));
	on_bus = again == dev;
	put_device(again);
	if (!on_bus)
		return false;
	return dev->driver || device_heap_driverless(dev);
}

/*
 * What @dev asks of memory when it takes buffers of @backing. Behind an
 * IOMMU the DMA API makes any page reachable. Without one the device
 * reaches bus addresses up to the smallest of its masks and its bus's
 * limit, as dma_coherent_ok() and dma_capable() check; the limit is rounded
 * down to a power of two (what heaps are named by, "system-32bit"), so that
 * devices reaching the same named memory share its heap. Physical addresses
 * map to bus addresses one to one, but for the memory encryption bit of SME
 * hosts, which every allocation's check applies (__sme_set()). Devices whose bus
 * offsets memory (dma_range_map) are served only behind an IOMMU: the
 * module cannot translate those offsets through an interface it may use.
 */
static int device_heap_device_needs(struct device *dev,
				    enum device_heap_backing backing,
				    struct device_heap_needs *needs)
{
	u64 limit;

	if (!dev->dma_mask) {
		dev_warn(dev, "device does no DMA, not served\n");
		return -EINVAL;
	}
	needs->backing = backing;
	needs->coherent = dev_is_dma_coherent(dev);
#ifdef DEVICE_HEAP_HAVE_CMA
	if (backing == DEVICE_HEAP_CONTIG)
		needs->cma = dev_get_cma_area(dev);
#endif
	if (device_heap_dma_iommu(dev)) {
		needs->dma_limit = U64_MAX;
		needs->phys_limit = device_heap_ram_top;
		return 0;
	}
	if (dev->dma_range_map) {
		dev_warn(dev, "bus offsets DMA addresses and no IOMMU: not served\n");
		return -EOPNOTSUPP;
	}
	/* Importers map through the streaming mask, allocators through the other. */
	limit = min_not_zero(min_not_zero(*dev->dma_mask, dev->coherent_dma_mask),
			     dev->bus_dma_limit);
	if (__sme_set(0ULL) > limit) {
		dev_warn(dev, "reaches no encrypted memory: not served\n");
		return -EOPNOTSUPP;
	}
	needs->dma_limit = limit;
	limit = __sme_clr(limit);
	if (limit != U64_MAX)
		limit = (1ULL << (fls64(limit + 1) - 1)) - 1;
	needs->phys_limit = min_t(u64, limit, device_heap_ram_top);
	return 0;
}

/*
 * Without an IOMMU a device reaches one buffer at one bus address, so the
 * only memory sure to work for it is contiguous; behind an IOMMU the DMA API
 * makes scattered pages look contiguous to the device.
 */
static enum device_heap_backing
device_heap_wanted_backing(const struct device_heap_wanted *w,
			   struct device *dev)
{
	if (!w->auto_backing)
		return w->backing;
	return device_heap_dma_iommu(dev) ? DEVICE_HEAP_SG : DEVICE_HEAP_CONTIG;
}

static struct device_heap_served *
device_heap_served_find(struct device *dev, enum device_heap_backing backing)
{
	struct device_heap_served *s;

	list_for_each_entry(s, &device_heap_served_list, list) {
		if (s->dev == dev && s->needs.backing == backing)
			return s;
	}
	return NULL;
}

/* The heap's coherent attribute: every device it was made for is. */
static void device_heap_update_coherent(struct device_heap *heap)
{
	struct device_heap_served *s;
	bool coherent = true;

	list_for_each_entry(s, &device_heap_served_list, list) {
		if (s->heap == heap)
			coherent &= s->needs.coherent;
	}
	heap->coherent = coherent;
}

/*
 * Serves @dev for buffers of @backing: by the heap giving its memory, made
 * if none does, or by the kernel's "system" heap where that is the memory.
 * Called with the device lock and device_heaps_lock held; the caller
 * relinks. Returns 0, or -EEXIST if it is served so already.
 */
static int device_heap_serve_one(struct device *dev,
				 enum device_heap_backing backing)
{
	struct device_heap_served *s;
	struct device_heap *heap = NULL;
	char name[DEVICE_HEAP_NAME_MAX];
	int ret;

	lockdep_assert_held(&device_heaps_lock);
	if (!device_heap_servable(dev))
		return -ENODEV;
	if (device_heap_served_find(dev, backing))
		return -EEXIST;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	ret = device_heap_device_needs(dev, backing, &s->needs);
	if (ret)
		goto free;
	ret = device_heap_name(&s->needs, name, sizeof(name));
	if (ret)
		goto free;

	heap = device_heap_find(&s->needs);
	if (!heap && !device_heap_kernel_heap_exists(dev, name)) {
		heap = device_heap_create(&s->needs);
		if (IS_ERR(heap)) {
			ret = PTR_ERR(heap);
			/* Another kind of memory has the name: not "served already". */
			if (ret == -EEXIST)
				ret = -EBUSY;
			goto free;
		}
	}
	if (heap)
		heap->users++;
	s->heap = heap;
	s->dev = get_device(dev);
	list_add_tail(&s->list, &device_heap_served_list);
	if (heap)
		device_heap_update_coherent(heap);
	dev_info(dev, "served (%s, below %d bits) by %s\n",
		 device_heap_backing_names[backing],
		 fls64(s->needs.phys_limit), name);
	return 0;

free:
	kfree(s);
	return ret;
}

/*
 * Stops serving: the entry's links go, and its heap when no other device
 * needs it (into @dead, for device_heap_bury()). The caller relinks.
 */
static void device_heap_unserve(struct device_heap_served *s,
				struct list_head *dead)
{
	struct device_heap *heap = s->heap;

	lockdep_assert_held(&device_heaps_lock);
	device_heap_unlink(s);
	list_del(&s->list);
	if (heap && !--heap->users)
		device_heap_destroy(heap, dead);
	else if (heap)
		device_heap_update_coherent(heap);
	put_device(s->dev);
	kfree(s);
}

/*
 * Parse "<bus>/<device>[:contig|:sg]". Device names may themselves contain
 * ':' (PCI), so only a known backing after the last ':' counts as one.
 */
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
				 DEVICE_HEAP_SG + 1, colon + 1);
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

static bool device_heap_wanted_same(const struct device_heap_wanted *a,
				    const struct device_heap_wanted *b)
{
	return a->bus == b->bus && !strcmp(a->name, b->name) &&
	       a->auto_backing == b->auto_backing &&
	       (a->auto_backing || a->backing == b->backing);
}

/* Keeps @w on the list, or frees it if the list has it already. */
static void device_heap_want(struct device_heap_wanted *w)
{
	struct device_heap_wanted *old;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(old, &device_heap_wanted_list, list) {
		if (device_heap_wanted_same(old, w)) {
			kfree(w);
			return;
		}
	}
	list_add_tail(&w->list, &device_heap_wanted_list);
}

/*
 * Serves @dev for every entry naming it that it is not served for yet.
 * Called with the device lock and device_heaps_lock held; a device that
 * cannot be served now (unbound, going away) is left for its next bind.
 * Returns the first error other than "served already" or "not now".
 */
static int device_heap_serve(struct device *dev)
{
	struct device_heap_wanted *w;
	bool changed = false;
	int ret, first = 0;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(w, &device_heap_wanted_list, list) {
		if (!device_heap_wanted_match(w, dev))
			continue;
		ret = device_heap_serve_one(dev, device_heap_wanted_backing(w, dev));
		changed |= !ret;
		if (ret && ret != -EEXIST && ret != -ENODEV) {
			dev_warn(dev, "not served: %pe\n", ERR_PTR(ret));
			first = first ?: ret;
		}
	}
	if (changed)
		device_heap_relink();
	return first;
}

/* Stops serving @dev for every entry; the caller buries @dead unlocked. */
static void device_heap_unserve_device(struct device *dev,
				       struct list_head *dead)
{
	struct device_heap_served *s, *tmp;
	bool changed = false;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry_safe(s, tmp, &device_heap_served_list, list) {
		if (s->dev == dev) {
			device_heap_unserve(s, dead);
			changed = true;
		}
	}
	if (changed)
		device_heap_relink();
}

/**
 * device_heap_control_add - a write to "add"
 * @spec: "<bus>/<device>[:contig|:sg]"
 *
 * The device must be there and servable now, else nothing is remembered.
 * Once served, it is served again whenever it binds again.
 *
 * Return: 0, -EINVAL for a malformed @spec, -ENODEV if there is no such
 * device or it is not bound, -EEXIST if it is served so already, or why it
 * cannot be served.
 */
int device_heap_control_add(const char *spec)
{
	struct device_heap_wanted *w;
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
	ret = device_heap_serve_one(dev, device_heap_wanted_backing(w, dev));
	if (!ret) {
		device_heap_want(w);
		w = NULL;
		device_heap_relink();
	}
	mutex_unlock(&device_heaps_lock);
	device_unlock(dev);
	put_device(dev);
	kfree(w);
	return ret;
}

/* Whether @dev is served for some entry. */
static bool device_heap_serves(struct device *dev)
{
	struct device_heap_served *s;

	lockdep_assert_held(&device_heaps_lock);
	list_for_each_entry(s, &device_heap_served_list, list) {
		if (s->dev == dev)
			return true;
	}
	return false;
}

/* Whether an entry still on the list asks for what @s serves. */
static bool device_heap_still_wanted(struct device_heap_served *s)
{
	struct device_heap_wanted *w;

	list_for_each_entry(w, &device_heap_wanted_list, list) {
		if (device_heap_wanted_match(w, s->dev) &&
		    device_heap_wanted_backing(w, s->dev) == s->needs.backing)
			return true;
	}
	return false;
}

/**
 * device_heap_control_remove - a write to "remove"
 * @spec: an entry as given to "add" or "devices"
 *
 * Forgets the entry, whether or not its device is there, and stops serving
 * the device for it; a heap no other device needs goes too.
 *
 * Return: 0, or -ENOENT if no entry is @spec.
 */
int device_heap_control_remove(const char *spec)
{
	struct device_heap_wanted *w, *old, *tmp;
	struct device_heap_served *s, *stmp;
	struct device *unserved = NULL;
	LIST_HEAD(dead);
	int ret = -ENOENT;

	w = device_heap_parse(spec);
	if (IS_ERR(w))
		return PTR_ERR(w) == -ENOMEM ? -ENOMEM : -ENOENT;

	mutex_lock(&device_heaps_lock);
	list_for_each_entry_safe(old, tmp, &device_heap_wanted_list, list) {
		if (!device_heap_wanted_same(old, w))
			continue;
		list_del(&old->list);
		list_for_each_entry_safe(s, stmp, &device_heap_served_list, list) {
			if (device_heap_wanted_match(old, s->dev) &&
			    s->needs.backing ==
			    device_heap_wanted_backing(old, s->dev) &&
			    !device_heap_still_wanted(s)) {
				if (!unserved)
					unserved = get_device(s->dev);
				device_heap_unserve(s, &dead);
			}
		}
		kfree(old);
		ret = 0;
	}
	if (!ret)
		device_heap_relink();
	/*
	 * A device still served otherwise was told by the relink. Told under
	 * the lock, which the device's removal waits for: it is still in sysfs.
	 */
	if (unserved && !device_heap_serves(unserved))
		device_heap_links_changed(unserved);
	mutex_unlock(&device_heaps_lock);
	put_device(unserved);
	device_heap_bury(&dead);
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

/**
 * device_heap_add_param_devices - the "devices" module parameter
 * @devices: comma-separated entries, or NULL
 */
void device_heap_add_param_devices(const char *devices)
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

/*
 * Serving follows the device's driver. A driver binding or unbinding may set
 * another DMA mask than the device was served for, and a device going away
 * loses its links (and heaps no other device needs) first, so that nothing
 * of ours outlives its directory; buffers already allocated stay valid, they
 * need nothing from the device. Once bound (under the device lock) a listed
 * device is served again. A driverless device binds nothing: it is served by
 * "add" or at load only, after the module that made it has set its DMA
 * mask, which it does after registering the device (vkms and vgem before
 * 6.15).
 */
static int device_heap_bus_notify(struct notifier_block *nb,
				  unsigned long action, void *data)
{
	struct device *dev = data;
	LIST_HEAD(dead);

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
	device_heap_unserve_device(dev, &dead);
	mutex_unlock(&device_heaps_lock);
	device_heap_bury(&dead);
	return NOTIFY_OK;
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

int device_heap_served_init(void)
{
	int ret, i;

	ret = device_heap_faux_init();
	if (ret)
		return ret;
	for (i = 0; i < ARRAY_SIZE(device_heap_buses); i++) {
		ret = bus_register_notifier(device_heap_buses[i].bus,
					    &device_heap_buses[i].nb);
		if (ret)
			goto unregister_buses;
		device_heap_buses[i].registered = true;
	}
	return 0;

unregister_buses:
	device_heap_unregister_buses();
	device_heap_faux_exit();
	return ret;
}

void device_heap_served_exit(void)
{
	struct device_heap_served *s, *stmp;
	struct device_heap_wanted *w, *wtmp;
	struct device_heap_dying *d, *dtmp;
	LIST_HEAD(dead);

	mutex_lock(&device_heaps_lock);
	/* A write to "add" may still be waiting for the lock. */
	device_heaps_closing = true;
	list_for_each_entry_safe(s, stmp, &device_heap_served_list, list) {
		/* The entry that made the device's dma_heaps/ tells it goes. */
		struct device *dev = s->linked ? get_device(s->dev) : NULL;

		device_heap_unserve(s, &dead);
		if (dev) {
			device_heap_links_changed(dev);
			put_device(dev);
		}
	}
	list_for_each_entry_safe(w, wtmp, &device_heap_wanted_list, list) {
		list_del(&w->list);
		kfree(w);
	}
	mutex_unlock(&device_heaps_lock);
	device_heap_bury(&dead);
	/* Waits for notifier calls in flight, which may mark a device dying. */
	device_heap_unregister_buses();
	list_for_each_entry_safe(d, dtmp, &device_heap_dying_list, list) {
		list_del(&d->list);
		kfree(d);
	}
	device_heap_faux_exit();
}
