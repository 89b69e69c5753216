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
 * Contiguous memory comes, in order of preference:
 *  - from the CMA area the served device would use (its own or the default
 *    one), where the kernel has one: memory set aside for exactly this;
 *  - from the buddy allocator, up to order MAX_PAGE_ORDER (4 MiB on x86);
 *  - above that, from a range carved out of the lowmem zones with
 *    alloc_contig_range(), which migrates whatever lives there.
 *
 * Memory is never taken from ZONE_MOVABLE: a dma-buf pins its pages for as
 * long as anyone holds it, and pinned pages in ZONE_MOVABLE make memory
 * offline (the reason the zone exists) fail.
 */

#include <linux/cma.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/mutex.h>
#include <linux/nodemask.h>
#include <linux/page-flags.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>

#include "device_heap.h"
#include "heap_compat.h"

/*
 * Chunk orders for scatter-gather buffers, as in the system heap: 1 MiB,
 * 64 KiB and 4 KiB chunks match common IOMMU page sizes.
 */
static const unsigned int sg_orders[] = { 8, 4, 0 };

/*
 * Failed alloc_contig_range() attempts one allocation may make before it
 * gives up: each attempt isolates and migrates up to a whole window, so an
 * unbounded search over a fragmented zone could take seconds. Windows with a
 * page that can never move are skipped without an attempt.
 */
#define CONTIG_RANGE_ATTEMPTS	32

/* One range search at a time: concurrent ones would fight over windows. */
static DEFINE_MUTEX(contig_range_lock);

/* A buddy allocation zone modifier, and the zone it allocates from first. */
struct device_heap_zone_gfp {
	gfp_t gfp;
	enum zone_type zone;
};

static const struct device_heap_zone_gfp zone_gfps[] = {
#ifdef CONFIG_HIGHMEM
	/* Scattered pages only: the kernel maps them one at a time. */
	{ __GFP_HIGHMEM, ZONE_HIGHMEM },
#endif
	{ 0, ZONE_NORMAL },
#ifdef CONFIG_ZONE_DMA32
	{ GFP_DMA32, ZONE_DMA32 },
#endif
#ifdef CONFIG_ZONE_DMA
	{ GFP_DMA, ZONE_DMA },
#endif
};

static bool device_heap_zone_reachable(const struct device_heap *heap,
				       enum zone_type z)
{
	int nid;

	for_each_online_node(nid) {
		struct zone *zone = &NODE_DATA(nid)->node_zones[z];

		if (populated_zone(zone) &&
		    PFN_PHYS(zone->zone_start_pfn) <= heap->phys_limit)
			return true;
	}
	return false;
}

static bool device_heap_reachable(const struct device_heap *heap,
				  unsigned long pfn, unsigned long nr_pages)
{
	return PFN_PHYS(pfn + nr_pages) - 1 <= heap->phys_limit;
}

/*
 * Buddy allocations walk down the zones as dma-direct does
 * (dma_direct_optimal_gfp_mask() and its retries): the highest zone whose
 * memory the device may reach first, each result checked against the exact
 * limit, so that a 30-bit device gets DMA32 memory below 1 GiB when there is
 * some rather than the 16 MiB DMA zone only. Never __GFP_MOVABLE. Highmem
 * (32-bit kernels) first where @highmem allows it, as the system heap does
 * (GFP_HIGHUSER): it is what lowmem-starved machines have most of, and
 * scattered pages need no kernel mapping of their own. Fills @gfps with the
 * zone modifiers to try, in order, and returns how many.
 */
static int buddy_zone_ladder(const struct device_heap *heap, bool highmem,
			     gfp_t *gfps)
{
	int i, n = 0;

	for (i = 0; i < ARRAY_SIZE(zone_gfps); i++) {
		if (!highmem && (zone_gfps[i].gfp & __GFP_HIGHMEM))
			continue;
		if (device_heap_zone_reachable(heap, zone_gfps[i].zone))
			gfps[n++] = zone_gfps[i].gfp;
	}
	return n;
}

static struct page *buddy_alloc(struct device_heap *heap, unsigned int order,
				gfp_t gfp)
{
	gfp_t gfps[ARRAY_SIZE(zone_gfps)];
	int i, n = buddy_zone_ladder(heap, true, gfps);

	for (i = 0; i < n; i++) {
		struct page *page = alloc_pages(gfp | gfps[i], order);

		if (!page)
			continue;
		if (device_heap_reachable(heap, page_to_pfn(page), 1 << order))
			return page;
		__free_pages(page, order);
	}
	return NULL;
}

/**
 * device_heap_clear - clear memory that came without __GFP_ZERO
 * @page: first page of a contiguous range
 * @nr_pages: its length in pages
 */
void device_heap_clear(struct page *page, unsigned long nr_pages)
{
	unsigned long i;

	if (!PageHighMem(page)) {
		size_t len = nr_pages << PAGE_SHIFT, off, n;

		/* In 2 MiB steps: a buffer may be hundreds of MiB. */
		for (off = 0; off < len; off += n) {
			n = min_t(size_t, len - off, SZ_2M);
			memset(page_address(page) + off, 0, n);
			cond_resched();
		}
		return;
	}
	for (i = 0; i < nr_pages; i++) {
		clear_highpage(page + i);
		cond_resched();
	}
}

/*
 * Whether the page allocator clears what it hands out with GFP_KERNEL
 * (init_on_alloc, Debian's default): post_alloc_hook() then clears every
 * page unless init_on_free already did at free time, which is not assumed.
 */
static bool device_heap_allocator_clears(void)
{
	return want_init_on_alloc(GFP_KERNEL) && !want_init_on_free();
}

/*
 * As buddy_alloc(), for exactly @len bytes: the tail of the block is freed.
 * Cleared here rather than with __GFP_ZERO, which would clear the whole
 * power-of-two block, up to twice the buffer, tail included. Lowmem only:
 * alloc_pages_exact() returns a kernel address.
 */
static struct page *buddy_alloc_exact(struct device_heap *heap, size_t len,
				      gfp_t gfp)
{
	gfp_t gfps[ARRAY_SIZE(zone_gfps)];
	int i, n = buddy_zone_ladder(heap, false, gfps);

	for (i = 0; i < n; i++) {
		void *vaddr = alloc_pages_exact(len, gfp | gfps[i]);
		struct page *page;

		if (!vaddr)
			continue;
		page = virt_to_page(vaddr);
		if (device_heap_reachable(heap, page_to_pfn(page),
					  len >> PAGE_SHIFT)) {
			if (!device_heap_allocator_clears())
				device_heap_clear(page, len >> PAGE_SHIFT);
			return page;
		}
		free_pages_exact(vaddr, len);
	}
	return NULL;
}

#ifdef DEVICE_HEAP_HAVE_CMA
static struct page *cma_range_alloc(struct device_heap *heap,
				    unsigned long nr_pages)
{
	struct page *page;

	if (!heap->cma)
		return NULL;
	page = cma_alloc(heap->cma, nr_pages, 0, true);
	if (!page)
		return NULL;
	/*
	 * An area the served device cannot reach, or one placed in
	 * ZONE_MOVABLE, is no use: give it back and let the caller place
	 * the memory itself.
	 */
	if (!device_heap_reachable(heap, page_to_pfn(page), nr_pages) ||
	    page_zonenum(page) > ZONE_NORMAL) {
		cma_release(heap->cma, page, nr_pages);
		return NULL;
	}
	/*
	 * cma_alloc() hands its pages through post_alloc_hook() with
	 * GFP_KERNEL, which clears them on init_on_alloc kernels (Debian's
	 * default): clear them here only where it did not.
	 */
	if (!device_heap_allocator_clears())
		device_heap_clear(page, nr_pages);
	return page;
}

static void cma_range_free(struct cma *cma, struct page *page,
			   unsigned long nr_pages)
{
	cma_release(cma, page, nr_pages);
}
#else
static struct page *cma_range_alloc(struct device_heap *heap,
				    unsigned long nr_pages)
{
	return NULL;
}

static void cma_range_free(struct cma *cma, struct page *page,
			   unsigned long nr_pages)
{
}
#endif

/*
 * The first pfn of [start, start + nr_pages) that rules the window out, or
 * start + nr_pages if none does. Beyond what alloc_contig_pages() checks
 * (online, in the zone, not reserved, not hugetlb), pages that migration
 * can never move (slab, page tables) end the window too: without that
 * every window of a zone full of kernel allocations costs a failed
 * isolation. The test is racy and only a filter; alloc_contig_range()
 * decides.
 */
static unsigned long contig_range_first_unusable(struct zone *zone,
						 unsigned long start,
						 unsigned long nr_pages)
{
	unsigned long pfn;

	for (pfn = start; pfn < start + nr_pages; pfn++) {
		struct page *page = pfn_to_online_page(pfn);

		if (!page || page_zone(page) != zone)
			return pfn;
		if (PageReserved(page) || PageHuge(page) || PageSlab(page) ||
		    PageTable(page))
			return pfn;
	}
	return pfn;
}

/*
 * Slides a window over the part of @zone below the device's limit: past a
 * page that can never move to the next pageblock, past a whole window when
 * alloc_contig_range() finds it busy. Windows start on every pageblock
 * boundary, so no fit that the first rule leaves is missed. Returns
 * the first page, NULL if the zone has no fit, or an ERR_PTR when the
 * search must stop (signal, permanent error, attempts used up).
 */
static struct page *contig_range_alloc_zone(struct device_heap *heap,
					    struct zone *zone,
					    unsigned long nr_pages,
					    unsigned int *attempts)
{
	unsigned long start = ALIGN(zone->zone_start_pfn, pageblock_nr_pages);
	unsigned long end = zone_end_pfn(zone);
	int ret;

	/* Whole pages below the limit only. */
	if (heap->phys_limit < PFN_PHYS(end) - 1)
		end = PHYS_PFN(heap->phys_limit + 1);

	while (start + nr_pages <= end) {
		unsigned long bad;

		if (fatal_signal_pending(current))
			return ERR_PTR(-EINTR);
		bad = contig_range_first_unusable(zone, start, nr_pages);
		if (bad < start + nr_pages) {
			start = ALIGN(bad + 1, pageblock_nr_pages);
			cond_resched();
			continue;
		}
		/* Cleared by the caller, only where the allocator does not. */
		ret = device_heap_alloc_contig_range(start, start + nr_pages,
						     GFP_KERNEL | __GFP_NOWARN);
		if (!ret)
			return pfn_to_page(start);
		/*
		 * -EBUSY: something in the window would not move, somewhere;
		 * move past the whole window. Other errors are final.
		 */
		if (ret != -EBUSY)
			return ERR_PTR(ret);
		if (!--*attempts)
			return ERR_PTR(-ENOMEM);
		start += ALIGN(nr_pages, pageblock_nr_pages);
		cond_resched();
	}
	return NULL;
}

/*
 * Like alloc_contig_pages(), which is not exported, but bounded by the
 * served device's DMA limit and kept out of ZONE_MOVABLE (and ZONE_DEVICE):
 * only zones up to ZONE_NORMAL are searched, the highest first to keep low
 * memory for devices that need it, and ZONE_DMA only for devices that cannot
 * reach above it.
 */
static struct page *contig_range_alloc(struct device_heap *heap,
				       unsigned long nr_pages)
{
	unsigned int attempts = CONTIG_RANGE_ATTEMPTS;
	struct page *page = NULL;
	int nid, z;

	if (mutex_lock_killable(&contig_range_lock))
		return ERR_PTR(-EINTR);
	for_each_online_node(nid) {
		for (z = ZONE_NORMAL; z >= 0; z--) {
			struct zone *zone = &NODE_DATA(nid)->node_zones[z];

			if (!populated_zone(zone))
				continue;
#if defined(CONFIG_ZONE_DMA) && defined(CONFIG_ZONE_DMA32)
			/* Keep the small DMA zone for devices that reach no more. */
			if (z == ZONE_DMA &&
			    device_heap_zone_reachable(heap, ZONE_DMA32))
				continue;
#endif
			page = contig_range_alloc_zone(heap, zone, nr_pages,
						       &attempts);
			if (page)
				goto unlock;
		}
	}
unlock:
	mutex_unlock(&contig_range_lock);
	return page;
}

/**
 * device_heap_free_block - give a contiguous block back where it came from
 * @block: the block
 */
void device_heap_free_block(const struct device_heap_contig *block)
{
	unsigned long nr_pages = block->len >> PAGE_SHIFT;

	switch (block->source) {
	case DEVICE_HEAP_FROM_CMA:
		cma_range_free(block->cma, block->page, nr_pages);
		break;
	case DEVICE_HEAP_FROM_BUDDY:
		free_pages_exact(page_address(block->page), block->len);
		break;
	case DEVICE_HEAP_FROM_RANGE:
		free_contig_range(page_to_pfn(block->page), nr_pages);
		break;
	}
}

/* Makes a new contiguous block for @heap, from the first source that has one. */
static int device_heap_new_contig(struct device_heap *heap,
				  struct device_heap_contig *block)
{
	unsigned long nr_pages = block->len >> PAGE_SHIFT;
	struct page *page;

	block->source = DEVICE_HEAP_FROM_CMA;
	block->cma = heap->cma;
	page = cma_range_alloc(heap, nr_pages);

	if (!page && get_order(block->len) <= MAX_PAGE_ORDER) {
		block->source = DEVICE_HEAP_FROM_BUDDY;
		page = buddy_alloc_exact(heap, block->len,
					 GFP_KERNEL | __GFP_NOWARN |
					 __GFP_RETRY_MAYFAIL);
	}

	if (!page) {
		block->source = DEVICE_HEAP_FROM_RANGE;
		page = contig_range_alloc(heap, nr_pages);
		if (IS_ERR_OR_NULL(page))
			return page ? PTR_ERR(page) : -ENOMEM;
		/*
		 * __GFP_ZERO would clear page by page as the range is split;
		 * one pass over the range is cheaper, and init_on_alloc
		 * kernels have cleared it already.
		 */
		if (!device_heap_allocator_clears())
			device_heap_clear(page, nr_pages);
	}
	block->page = page;
	return 0;
}

static int device_heap_alloc_contig(struct device_heap_buffer *buffer)
{
	struct device_heap *heap = buffer->heap;
	struct device_heap_contig block = { .len = buffer->len };
	int ret = 0;

	if (!device_heap_cache_take(heap, block.len, &block)) {
		ret = device_heap_new_contig(heap, &block);
		/* Memory the cache holds may be what is missing. */
		if (ret == -ENOMEM && device_heap_cache_drain())
			ret = device_heap_new_contig(heap, &block);
	}
	if (ret) {
		pr_warn_ratelimited("device_heap: %s: no contiguous %zu KiB below %#llx: %d\n",
				    heap->name, block.len >> 10,
				    heap->phys_limit, ret);
		return ret;
	}

	ret = sg_alloc_table(&buffer->sg_table, 1, GFP_KERNEL);
	if (ret)
		goto free_block;
	sg_set_page(buffer->sg_table.sgl, block.page, block.len, 0);
	buffer->source = block.source;
	return 0;

free_block:
	device_heap_free_block(&block);
	return ret;
}

static struct page *sg_alloc_chunk(struct device_heap *heap, size_t remaining,
				   unsigned int max_order)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sg_orders); i++) {
		unsigned int order = sg_orders[i];
		struct page *page;
		gfp_t gfp;

		if (remaining < (PAGE_SIZE << order) || order > max_order)
			continue;
		/*
		 * __GFP_NORETRY and __GFP_RETRY_MAYFAIL also keep a charge
		 * over the memcg limit from invoking the OOM killer.
		 */
		if (order)
			gfp = (GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN |
			       __GFP_NORETRY | __GFP_COMP) & ~__GFP_RECLAIM;
		else
			gfp = GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN |
			      __GFP_RETRY_MAYFAIL;
		page = buddy_alloc(heap, order, gfp | device_heap_charge_gfp(heap));
		if (page)
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
 * device_heap_contig_source - where a heap's contiguous buffers come from
 * @heap: a heap being created, whose @dev, @backing and @phys_limit are set
 *
 * Sets @heap->cma to the CMA area the DMA API would use for the served
 * device (its own, else the default area), if the kernel has one and the
 * device can use it. Areas are placed at boot and nothing exported tells
 * where: one page taken from the area and given back shows whether its
 * first free memory lies below the device's limit and outside ZONE_MOVABLE
 * (an area full right now is assumed usable). Every allocation is checked
 * again, and falls back to the other sources when the area does not fit.
 */
void device_heap_contig_source(struct device_heap *heap)
{
#if defined(DEVICE_HEAP_HAVE_CMA) && defined(CONFIG_DMA_CMA)
	struct page *page;
	struct cma *cma;

	if (heap->backing != DEVICE_HEAP_CONTIG)
		return;
	cma = dev_get_cma_area(heap->dev);
	if (!cma)
		return;
	page = cma_alloc(cma, 1, 0, true);
	if (page) {
		bool usable = device_heap_reachable(heap, page_to_pfn(page), 1) &&
			      page_zonenum(page) <= ZONE_NORMAL;

		cma_release(cma, page, 1);
		if (!usable) {
			pr_info("device_heap: %s: CMA area %s is out of reach, not used\n",
				heap->name, cma_get_name(cma));
			return;
		}
	}
	heap->cma = cma;
#endif
}

/**
 * device_heap_alloc_memory - back a buffer with zeroed memory
 * @buffer: buffer whose @heap and @len are set
 *
 * Charges the allocating process's memory cgroup where the heap's
 * accounting says so.
 *
 * Return: 0, -ENOMEM when no suitable memory is free or the caller's cgroup
 * is at its limit, or -EINTR when the caller was killed while waiting.
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
		struct device_heap_contig block = {
			.page = sg_page(table->sgl),
			.len = buffer->len,
			.source = buffer->source,
			.cma = buffer->heap->cma,
		};

		if (!device_heap_cache_put(buffer->heap, &block))
			device_heap_free_block(&block);
	} else {
		for_each_sgtable_sg(table, sg, i)
			__free_pages(sg_page(sg), compound_order(sg_page(sg)));
	}
	sg_free_table(table);
}
