// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dma_heap/<name> as the module's own character device.
 *
 * Kernels before 6.18 do not export dma_heap_add(), so a module cannot join
 * the heap core. This file gives each heap a character device that speaks
 * the same uapi (<linux/dma-heap.h>) with the same argument checks, so that
 * userspace cannot tell the difference. heap_node_core.c is the other side of
 * this seam, for kernels that do export the heap core.
 */

#include <linux/cdev.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <uapi/linux/dma-heap.h>

#include "device_heap.h"

#define DEVICE_HEAP_MINORS	128

static dev_t device_heap_base;
static DEFINE_XARRAY_ALLOC(device_heap_minors);

static int device_heap_open(struct inode *inode, struct file *file)
{
	struct device_heap *heap;

	xa_lock(&device_heap_minors);
	heap = xa_load(&device_heap_minors, iminor(inode));
	if (heap)
		device_heap_get(heap);
	xa_unlock(&device_heap_minors);
	if (!heap)
		return -ENODEV;

	file->private_data = heap;
	return nonseekable_open(inode, file);
}

static int device_heap_file_release(struct inode *inode, struct file *file)
{
	device_heap_put(file->private_data);
	return 0;
}

static struct dma_buf *device_heap_ioctl_allocate(struct device_heap *heap,
						  struct dma_heap_allocation_data *data)
{
	struct dma_buf *dmabuf;
	int fd;

	if (data->fd)
		return ERR_PTR(-EINVAL);
	if (data->fd_flags & ~DMA_HEAP_VALID_FD_FLAGS)
		return ERR_PTR(-EINVAL);
	if (data->heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS)
		return ERR_PTR(-EINVAL);
	if (!data->len)
		return ERR_PTR(-EINVAL);
	/* Checked before rounding up, which could wrap to 0. */
	if (data->len > heap->max_alloc)
		return ERR_PTR(-ENOMEM);
	if (atomic_read(&heap->dead))
		return ERR_PTR(-ENODEV);

	dmabuf = device_heap_allocate(heap, PAGE_ALIGN(data->len),
				      data->fd_flags);
	if (IS_ERR(dmabuf))
		return dmabuf;

	fd = get_unused_fd_flags(data->fd_flags);
	if (fd < 0) {
		dma_buf_put(dmabuf);
		return ERR_PTR(fd);
	}
	data->fd = fd;
	return dmabuf;
}

static long device_heap_ioctl(struct file *file, unsigned int ucmd,
			      unsigned long arg)
{
	struct dma_heap_allocation_data data = {};
	unsigned int kcmd = DMA_HEAP_IOCTL_ALLOC;
	unsigned int in_size, out_size;
	struct dma_buf *dmabuf;

	/*
	 * Same decoding as the heap core (dma_heap_ioctl()): the command is
	 * chosen by its number alone, unknown numbers are -EINVAL, a shorter
	 * user struct is zero-extended and a longer one truncated.
	 */
	if (_IOC_NR(ucmd) != _IOC_NR(kcmd))
		return -EINVAL;
	in_size = min_t(unsigned int, _IOC_SIZE(ucmd), sizeof(data));
	out_size = in_size;
	if (!(ucmd & IOC_IN))
		in_size = 0;
	if (!(ucmd & IOC_OUT))
		out_size = 0;

	if (copy_from_user(&data, (void __user *)arg, in_size))
		return -EFAULT;

	dmabuf = device_heap_ioctl_allocate(file->private_data, &data);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	if (copy_to_user((void __user *)arg, &data, out_size)) {
		put_unused_fd(data.fd);
		dma_buf_put(dmabuf);
		return -EFAULT;
	}
	fd_install(data.fd, dmabuf->file);
	return 0;
}

static const struct file_operations device_heap_fops = {
	.owner = THIS_MODULE,
	.open = device_heap_open,
	.release = device_heap_file_release,
	.unlocked_ioctl = device_heap_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/**
 * device_heap_node_register - create the heap's character device
 * @heap: heap to expose; sets @heap->devt and @heap->cdev
 *
 * The cdev is allocated on its own: open files keep it alive after the heap
 * is unregistered, and each open file holds its own reference on the heap.
 */
int device_heap_node_register(struct device_heap *heap)
{
	u32 minor;
	int ret;

	ret = xa_alloc(&device_heap_minors, &minor, heap,
		       XA_LIMIT(0, DEVICE_HEAP_MINORS - 1), GFP_KERNEL);
	if (ret)
		return ret == -EBUSY ? -ENOSPC : ret;

	heap->cdev = cdev_alloc();
	if (!heap->cdev) {
		ret = -ENOMEM;
		goto erase_minor;
	}
	heap->cdev->owner = THIS_MODULE;
	heap->cdev->ops = &device_heap_fops;
	heap->devt = MKDEV(MAJOR(device_heap_base), minor);

	ret = cdev_add(heap->cdev, heap->devt, 1);
	if (ret)
		goto put_cdev;
	return 0;

put_cdev:
	kobject_put(&heap->cdev->kobj);
	heap->cdev = NULL;
erase_minor:
	xa_erase(&device_heap_minors, minor);
	return ret;
}

/* The cdev is live before the sysfs node announces it: nothing left to do. */
int device_heap_node_publish(struct device_heap *heap)
{
	return 0;
}

/**
 * device_heap_node_unregister - remove the heap's character device
 * @heap: heap registered with device_heap_node_register()
 *
 * After this returns no new file can reach @heap; files already open keep
 * their reference and see -ENODEV from the allocation ioctl.
 */
void device_heap_node_unregister(struct device_heap *heap)
{
	xa_erase(&device_heap_minors, MINOR(heap->devt));
	cdev_del(heap->cdev);
	heap->cdev = NULL;
}

/* The module's own nodes are not in the heap core's class. */
bool device_heap_node_is_ours(const char *name)
{
	return false;
}

int device_heap_node_init(void)
{
	return alloc_chrdev_region(&device_heap_base, 0, DEVICE_HEAP_MINORS,
				   "device_heap");
}

void device_heap_node_exit(void)
{
	unregister_chrdev_region(device_heap_base, DEVICE_HEAP_MINORS);
	xa_destroy(&device_heap_minors);
}
