// SPDX-License-Identifier: GPL-2.0
/*
 * Where device heap memory comes from.
 *
 * The memory is plain pages, never a mapping owned by the served device: a
 * buffer must outlive the driver of the device it was made for, and each
 * importer maps it through its own DMA API at attach time. What the served
 * device dictates is placement: below its DMA limit unless it sits behind an
 * IOMMU, and physically contiguous when the heap's backing says so.
 *
 * Without CMA the buddy allocator gives at most MAX_PAGE_ORDER contiguous
 * pages (4 MiB on x86), less than one 1080p frame, so larger contiguous
 * buffers are carved out of movable memory with alloc_contig_range(), which
 * migrates whatever lives there.
 */

#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/page-flags.h>
#include <linux/sched/signal.h>

#include "device_heap.h"

/*
 * Chunk orders for scatter-gather buffers, as in the system heap: 1 MiB,
 * 64 KiB and 4 KiB chunks match common IOMMU page sizes.
 */
static const unsigned int sg_orders[] = { 8, 4, 0 };

/*
 * A zone the served device is sure to reach, as dma-direct chooses one:
 * ZONE_DMA32 for any limit of 32 bits or more short of 64 (conservative for
 * e.g. 40-bit devices, never wrong), ZONE_DMA below that. Pages are checked
 * against the exact limit afterwards.
 */
static gfp_t device_heap_zone_gfp(const struct device_heap *heap)
{
	if (heap->iommu || heap->dma_limit == DMA_BIT_MASK(64))
		return 0;
	if (heap->dma_limit >= DMA_BIT_MASK(32))
		return GFP_DMA32;
	return GFP_DMA;
}

static bool device_heap_reachable(const struct device_heap *heap,
				  unsigned long pfn, unsigned long nr_pages)
{
	if (heap->iommu)
		return true;
	return PFN_PHYS(pfn + nr_pages) - 1 <= heap->dma_limit;
}

static bool contig_range_usable(struct zone *zone, unsigned long start,
				unsigned long nr_pages)
{
	unsigned long pfn;

	for (pfn = start; pfn < start + nr_pages; pfn++) {
		struct page *page = pfn_to_online_page(pfn);

		if (!page || page_zone(page) != zone)
			return false;
		if (PageReserved(page) || PageHuge(page))
			return false;
	}
	return true;
}

static struct page *contig_range_alloc_zone(struct device_heap *heap,
					    struct zone *zone,
					    unsigned long nr_pages)
{
	unsigned long step = ALIGN(nr_pages, pageblock_nr_pages);
	unsigned long pfn = ALIGN(zone->zone_start_pfn, pageblock_nr_pages);

	for (; zone_spans_pfn(zone, pfn + nr_pages - 1); pfn += step) {
		if (!device_heap_reachable(heap, pfn, nr_pages))
			break;
		if (fatal_signal_pending(current))
			break;
		if (!contig_range_usable(zone, pfn, nr_pages))
			continue;
		/* __GFP_ZERO: the pages are cleared once, as they are taken. */
		if (!alloc_contig_range(pfn, pfn + nr_pages, MIGRATE_MOVABLE,
					GFP_KERNEL | __GFP_NOWARN | __GFP_ZERO))
			return pfn_to_page(pfn);
		cond_resched();
	}
	return NULL;
}

/*
 * Like alloc_contig_pages(), which is not exported, but bounded by the
 * served device's DMA limit. Higher zones are tried first to keep the
 * memory below 4 GiB for devices that need it.
 */
static struct page *contig_range_alloc(struct device_heap *heap,
				       unsigned long nr_pages)
{
	int nid, z;

	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);

		for (z = MAX_NR_ZONES - 1; z >= 0; z--) {
			struct zone *zone = &pgdat->node_zones[z];
			struct page *page;

			if (!populated_zone(zone))
				continue;
			if (IS_ENABLED(CONFIG_ZONE_DMA) && z == ZONE_DMA &&
			    heap->dma_limit >= DMA_BIT_MASK(32))
				continue;
			page = contig_range_alloc_zone(heap, zone, nr_pages);
			if (page)
				return page;
		}
	}
	return NULL;
}

static int device_heap_alloc_contig(struct device_heap_buffer *buffer)
{
	struct device_heap *heap = buffer->heap;
	unsigned long nr_pages = buffer->len >> PAGE_SHIFT;
	struct page *page = NULL;
	int ret;

	if (get_order(buffer->len) <= MAX_PAGE_ORDER) {
		void *vaddr;

		vaddr = alloc_pages_exact(buffer->len,
					  GFP_KERNEL | __GFP_ZERO |
					  __GFP_NOWARN | __GFP_RETRY_MAYFAIL |
					  device_heap_zone_gfp(heap));
		if (vaddr) {
			page = virt_to_page(vaddr);
			if (!device_heap_reachable(heap, page_to_pfn(page),
						   nr_pages)) {
				free_pages_exact(vaddr, buffer->len);
				page = NULL;
			}
		}
	}

	if (!page) {
		page = contig_range_alloc(heap, nr_pages);
		if (!page)
			return fatal_signal_pending(current) ? -EINTR : -ENOMEM;
		buffer->from_range = true;
	}

	ret = sg_alloc_table(&buffer->sg_table, 1, GFP_KERNEL);
	if (ret)
		goto free_pages;
	sg_set_page(buffer->sg_table.sgl, page, buffer->len, 0);
	return 0;

free_pages:
	if (buffer->from_range)
		free_contig_range(page_to_pfn(page), nr_pages);
	else
		free_pages_exact(page_address(page), buffer->len);
	return ret;
}

static struct page *sg_alloc_chunk(struct device_heap *heap, size_t remaining,
				   unsigned int max_order)
{
	gfp_t zone = device_heap_zone_gfp(heap);
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sg_orders); i++) {
		unsigned int order = sg_orders[i];
		struct page *page;
		gfp_t gfp;

		if (remaining < (PAGE_SIZE << order) || order > max_order)
			continue;
		if (order)
			gfp = (GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN |
			       __GFP_NORETRY | __GFP_COMP) & ~__GFP_RECLAIM;
		else
			gfp = GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN |
			      __GFP_RETRY_MAYFAIL;
		page = alloc_pages(gfp | zone, order);
		if (!page)
			continue;
		if (!device_heap_reachable(heap, page_to_pfn(page), 1 << order)) {
			__free_pages(page, order);
			continue;
		}
		return page;
	}
	return NULL;
}

static void sg_free_chunks(struct list_head *pages)
{
	struct page *page, *tmp;

	list_for_each_entry_safe(page, tmp, pages, lru) {
		list_del(&page->lru);
		__free_pages(page, compound_order(page));
	}
}

static int device_heap_alloc_sg(struct device_heap_buffer *buffer)
{
	size_t remaining = buffer->len;
	unsigned int max_order = sg_orders[0];
	struct scatterlist *sg;
	struct page *page, *tmp;
	LIST_HEAD(pages);
	unsigned int nents = 0;
	int ret;

	while (remaining) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto free_chunks;
		}
		page = sg_alloc_chunk(buffer->heap, remaining, max_order);
		if (!page) {
			ret = -ENOMEM;
			goto free_chunks;
		}
		list_add_tail(&page->lru, &pages);
		remaining -= page_size(page);
		max_order = compound_order(page);
		nents++;
	}

	ret = sg_alloc_table(&buffer->sg_table, nents, GFP_KERNEL);
	if (ret)
		goto free_chunks;

	sg = buffer->sg_table.sgl;
	list_for_each_entry_safe(page, tmp, &pages, lru) {
		list_del(&page->lru);
		sg_set_page(sg, page, page_size(page), 0);
		sg = sg_next(sg);
	}
	return 0;

free_chunks:
	sg_free_chunks(&pages);
	return ret;
}

/**
 * device_heap_alloc_memory - back a buffer with zeroed memory
 * @buffer: buffer whose @heap and @len are set
 *
 * Return: 0, -ENOMEM when no suitable memory is free, or -EINTR when the
 * caller was killed while waiting for it.
 */
int device_heap_alloc_memory(struct device_heap_buffer *buffer)
{
	if (buffer->heap->backing == DEVICE_HEAP_CONTIG)
		return device_heap_alloc_contig(buffer);
	return device_heap_alloc_sg(buffer);
}

/**
 * device_heap_free_memory - release what device_heap_alloc_memory() got
 * @buffer: buffer with no attachments and no kernel mapping left
 */
void device_heap_free_memory(struct device_heap_buffer *buffer)
{
	struct sg_table *table = &buffer->sg_table;
	struct scatterlist *sg;
	int i;

	if (buffer->heap->backing == DEVICE_HEAP_CONTIG) {
		struct page *page = sg_page(table->sgl);

		if (buffer->from_range)
			free_contig_range(page_to_pfn(page),
					  buffer->len >> PAGE_SHIFT);
		else
			free_pages_exact(page_address(page), buffer->len);
	} else {
		for_each_sgtable_sg(table, sg, i)
			__free_pages(sg_page(sg), compound_order(sg_page(sg)));
	}
	sg_free_table(table);
}
