// SPDX-License-Identifier: GPL-2.0
/*
 * Device heap buffers: the dma-buf side.
 *
 * Every attachment gets its own copy of the buffer's scatterlist, mapped
 * through the importer's DMA API for as long as the importer holds the
 * mapping. CPU access through DMA_BUF_IOCTL_SYNC syncs every live mapping,
 * which is the cache maintenance non-coherent devices need; on coherent
 * devices the syncs are no-ops.
 */

#include <linux/debugfs.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "device_heap.h"
#include "heap_compat.h"

struct device_heap_attachment {
	struct device *dev;
	struct sg_table table;
	struct list_head list;
	bool mapped;
};

static int device_heap_attach(struct dma_buf *dmabuf,
			      struct dma_buf_attachment *attachment)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	struct scatterlist *sg, *new_sg;
	struct device_heap_attachment *a;
	int ret, i;

	a = kzalloc(sizeof(*a), device_heap_meta_gfp(buffer->heap));
	if (!a)
		return -ENOMEM;

	ret = sg_alloc_table(&a->table, buffer->sg_table.orig_nents,
			     device_heap_meta_gfp(buffer->heap));
	if (ret)
		goto free_attachment;

	new_sg = a->table.sgl;
	for_each_sgtable_sg(&buffer->sg_table, sg, i) {
		sg_set_page(new_sg, sg_page(sg), sg->length, sg->offset);
		new_sg = sg_next(new_sg);
	}

	a->dev = attachment->dev;
	INIT_LIST_HEAD(&a->list);
	attachment->priv = a;

	mutex_lock(&buffer->lock);
	list_add(&a->list, &buffer->attachments);
	mutex_unlock(&buffer->lock);
	return 0;

free_attachment:
	kfree(a);
	return ret;
}

static void device_heap_detach(struct dma_buf *dmabuf,
			       struct dma_buf_attachment *attachment)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	struct device_heap_attachment *a = attachment->priv;

	mutex_lock(&buffer->lock);
	list_del(&a->list);
	mutex_unlock(&buffer->lock);

	sg_free_table(&a->table);
	kfree(a);
}

/*
 * @mapped is read by the CPU access hooks under the buffer lock, so it flips
 * under that lock too: a sync never touches a table being unmapped.
 */
static struct sg_table *device_heap_map_dma_buf(struct dma_buf_attachment *attachment,
						enum dma_data_direction direction)
{
	struct device_heap_buffer *buffer = attachment->dmabuf->priv;
	struct device_heap_attachment *a = attachment->priv;
	int ret;

	ret = dma_map_sgtable(attachment->dev, &a->table, direction, 0);
	if (ret)
		return ERR_PTR(ret);

	mutex_lock(&buffer->lock);
	a->mapped = true;
	mutex_unlock(&buffer->lock);
	return &a->table;
}

static void device_heap_unmap_dma_buf(struct dma_buf_attachment *attachment,
				      struct sg_table *table,
				      enum dma_data_direction direction)
{
	struct device_heap_buffer *buffer = attachment->dmabuf->priv;
	struct device_heap_attachment *a = attachment->priv;

	mutex_lock(&buffer->lock);
	a->mapped = false;
	mutex_unlock(&buffer->lock);
	dma_unmap_sgtable(attachment->dev, table, direction, 0);
}

static int device_heap_begin_cpu_access(struct dma_buf *dmabuf,
					enum dma_data_direction direction)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	struct device_heap_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		invalidate_kernel_vmap_range(buffer->vaddr, buffer->len);
	list_for_each_entry(a, &buffer->attachments, list) {
		if (a->mapped)
			dma_sync_sgtable_for_cpu(a->dev, &a->table, direction);
	}
	mutex_unlock(&buffer->lock);
	return 0;
}

static int device_heap_end_cpu_access(struct dma_buf *dmabuf,
				      enum dma_data_direction direction)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	struct device_heap_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		flush_kernel_vmap_range(buffer->vaddr, buffer->len);
	list_for_each_entry(a, &buffer->attachments, list) {
		if (a->mapped)
			dma_sync_sgtable_for_device(a->dev, &a->table, direction);
	}
	mutex_unlock(&buffer->lock);
	return 0;
}

/* The frame at @pgoff of the buffer, in @pfn; false past its end. */
static bool device_heap_buffer_pfn(struct device_heap_buffer *buffer,
				   unsigned long pgoff, unsigned long *pfn)
{
	struct scatterlist *sg;
	int i;

	for_each_sgtable_sg(&buffer->sg_table, sg, i) {
		unsigned long npages = sg->length >> PAGE_SHIFT;

		if (pgoff < npages) {
			*pfn = page_to_pfn(sg_page(sg)) + pgoff;
			return true;
		}
		pgoff -= npages;
	}
	return false;
}

/*
 * The mapping is made whole at mmap time; a page it loses (the mm zapping
 * the range) comes back on the next touch.
 */
static vm_fault_t device_heap_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long pfn;

	if (!device_heap_buffer_pfn(vma->vm_private_data, vmf->pgoff, &pfn))
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vma, vmf->address, pfn);
}

static const struct vm_operations_struct device_heap_vm_ops = {
	.fault = device_heap_vm_fault,
};

/*
 * Shared mappings only, as cma_heap: a private mapping of a dma-buf would be
 * a copy no device sees, and copy-on-write of mapped buffer pages cannot work.
 *
 * A VM_PFNMAP mapping, as the system and CMA heaps make: the pages take no
 * reference and cannot be pinned by get_user_pages(), so no pipe or
 * O_DIRECT can hold a page past the buffer's release. Each contiguous run
 * of the buffer goes in with one remap_pfn_range().
 */
static int device_heap_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	unsigned long skip = vma->vm_pgoff;
	unsigned long addr = vma->vm_start;
	struct scatterlist *sg;
	int i, ret;

	if (!(vma->vm_flags & (VM_SHARED | VM_MAYSHARE)))
		return -EINVAL;

	/* dma_buf_mmap_internal() has checked that the range fits the buffer. */
	vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &device_heap_vm_ops;
	vma->vm_private_data = buffer;

	for_each_sgtable_sg(&buffer->sg_table, sg, i) {
		unsigned long npages = sg->length >> PAGE_SHIFT;
		unsigned long len;

		if (skip >= npages) {
			skip -= npages;
			continue;
		}
		len = min((npages - skip) << PAGE_SHIFT, vma->vm_end - addr);
		ret = remap_pfn_range(vma, addr, page_to_pfn(sg_page(sg)) + skip,
				      len, vma->vm_page_prot);
		if (ret)
			return ret;
		skip = 0;
		addr += len;
		if (addr >= vma->vm_end)
			break;
	}
	return 0;
}

static void *device_heap_do_vmap(struct device_heap_buffer *buffer)
{
	unsigned int npages = buffer->len >> PAGE_SHIFT;
	struct sg_page_iter piter;
	struct page **pages;
	unsigned int i = 0;
	void *vaddr;

	/* Freed as soon as the mapping is made: not worth charging. */
	pages = kvmalloc_array(npages, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return ERR_PTR(-ENOMEM);

	for_each_sgtable_page(&buffer->sg_table, &piter, 0) {
		if (i == npages)
			break;
		pages[i++] = sg_page_iter_page(&piter);
	}

	vaddr = i == npages ? vmap(pages, npages, VM_MAP, PAGE_KERNEL) : NULL;
	kvfree(pages);
	if (i != npages)
		return ERR_PTR(-EINVAL);
	return vaddr ?: ERR_PTR(-ENOMEM);
}

static int device_heap_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct device_heap_buffer *buffer = dmabuf->priv;
	void *vaddr;
	int ret = 0;

	mutex_lock(&buffer->lock);
	if (!buffer->vmap_cnt) {
		vaddr = device_heap_do_vmap(buffer);
		if (IS_ERR(vaddr)) {
			ret = PTR_ERR(vaddr);
			goto unlock;
		}
		buffer->vaddr = vaddr;
	}
	buffer->vmap_cnt++;
	iosys_map_set_vaddr(map, buffer->vaddr);
unlock:
	mutex_unlock(&buffer->lock);
	return ret;
}

static void device_heap_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct device_heap_buffer *buffer = dmabuf->priv;

	mutex_lock(&buffer->lock);
	if (!--buffer->vmap_cnt) {
		vunmap(buffer->vaddr);
		buffer->vaddr = NULL;
	}
	mutex_unlock(&buffer->lock);
	iosys_map_clear(map);
}

/* Live buffers, for the debugfs listing of their frames. */
static LIST_HEAD(device_heap_live_list);
static DEFINE_MUTEX(device_heap_live_lock);

static void device_heap_release(struct dma_buf *dmabuf)
{
	struct device_heap_buffer *buffer = dmabuf->priv;

	mutex_lock(&device_heap_live_lock);
	list_del(&buffer->live);
	mutex_unlock(&device_heap_live_lock);
	atomic_dec(&device_heap_live_buffers);
	atomic64_sub(buffer->len, &device_heap_live_bytes);
	device_heap_free_memory(buffer);
	device_heap_user_unpin(buffer);
	device_heap_put(buffer->heap);
	mutex_destroy(&buffer->lock);
	kfree(buffer);
}

static const struct dma_buf_ops device_heap_buf_ops = {
	.attach = device_heap_attach,
	.detach = device_heap_detach,
	.map_dma_buf = device_heap_map_dma_buf,
	.unmap_dma_buf = device_heap_unmap_dma_buf,
	.begin_cpu_access = device_heap_begin_cpu_access,
	.end_cpu_access = device_heap_end_cpu_access,
	.mmap = device_heap_mmap,
	.vmap = device_heap_vmap,
	.vunmap = device_heap_vunmap,
	.release = device_heap_release,
};

/**
 * device_heap_allocate - allocate and export one buffer
 * @heap: heap to allocate from
 * @len: length in bytes, a non-zero multiple of PAGE_SIZE
 * @fd_flags: flags for the dma-buf file (O_CLOEXEC, O_ACCMODE)
 *
 * Return: the dma-buf, holding a reference on @heap until it is released,
 * or an ERR_PTR.
 */
struct dma_buf *device_heap_allocate(struct device_heap *heap, size_t len,
				     u32 fd_flags)
{
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct device_heap_buffer *buffer;
	struct dma_buf *dmabuf;
	int ret;

	buffer = kzalloc(sizeof(*buffer), device_heap_meta_gfp(heap));
	if (!buffer)
		return ERR_PTR(-ENOMEM);

	INIT_LIST_HEAD(&buffer->attachments);
	mutex_init(&buffer->lock);
	device_heap_get(heap);
	buffer->heap = heap;
	buffer->len = len;

	ret = device_heap_user_pin(buffer);
	if (ret)
		goto put_heap;

	ret = device_heap_alloc_memory(buffer);
	if (ret)
		goto unpin;

	exp_info.exp_name = heap->name;
	exp_info.ops = &device_heap_buf_ops;
	exp_info.size = buffer->len;
	exp_info.flags = fd_flags;
	exp_info.priv = buffer;
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		ret = PTR_ERR(dmabuf);
		goto free_memory;
	}

	buffer->ino = file_inode(dmabuf->file)->i_ino;
	mutex_lock(&device_heap_live_lock);
	list_add_tail(&buffer->live, &device_heap_live_list);
	mutex_unlock(&device_heap_live_lock);
	atomic_inc(&device_heap_live_buffers);
	atomic64_add(buffer->len, &device_heap_live_bytes);
	return dmabuf;

free_memory:
	device_heap_free_memory(buffer);
unpin:
	device_heap_user_unpin(buffer);
put_heap:
	device_heap_put(heap);
	mutex_destroy(&buffer->lock);
	kfree(buffer);
	return ERR_PTR(ret);
}

/*
 * /sys/kernel/debug/device_heap/buffers: one line per live buffer, "<inode>
 * <heap> <bytes>" and its runs of frames as "<first pfn, hex>+<count>", so
 * that tests see where a buffer lies without pagemap (which shows no frames
 * of a VM_PFNMAP mapping) and whatever the buffer is mapped by.
 */
static int device_heap_buffers_show(struct seq_file *m, void *unused)
{
	struct device_heap_buffer *buffer;
	struct scatterlist *sg;
	int i;

	mutex_lock(&device_heap_live_lock);
	list_for_each_entry(buffer, &device_heap_live_list, live) {
		seq_printf(m, "%lu %s %zu", buffer->ino, buffer->heap->name,
			   buffer->len);
		for_each_sgtable_sg(&buffer->sg_table, sg, i)
			seq_printf(m, " %lx+%u", page_to_pfn(sg_page(sg)),
				   sg->length >> PAGE_SHIFT);
		seq_putc(m, '\n');
	}
	mutex_unlock(&device_heap_live_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(device_heap_buffers);

/**
 * device_heap_buffers_debugfs - create the listing of live buffers
 * @dir: the module's debugfs directory
 */
void device_heap_buffers_debugfs(struct dentry *dir)
{
	debugfs_create_file("buffers", 0400, dir, NULL,
			    &device_heap_buffers_fops);
}
