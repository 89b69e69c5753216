// SPDX-License-Identifier: GPL-2.0
/*
 * Where device heap memory comes from.
 *
 * The memory is plain pages, never a mapping owned by a served device: a
 * buffer must outlive the driver of every device it was made for, and each
 * importer maps it through its own DMA API at attach time. What the devices
 * dictate is placement: below their DMA limit, and physically contiguous
 * when the heap's backing says so. Every allocation is checked against the
 * limit as dma_coherent_ok() checks the DMA API's own.
 *
 * Contiguous memory comes, in order of preference:
 *  - from the CMA area the served devices' DMA API allocations come from
 *    (their own, else the default one): memory set aside for exactly this;
 *  - from the page allocator, up to its largest order (MAX_PAGE_ORDER);
 *  - above that, only where the contig_migrate parameter allows it: from a
 *    range carved out of the lowmem zones with alloc_contig_range(), which
 *    migrates whatever lives there. For kernels without a CMA area.
 * Scattered pages come from the page allocator, from the zone the limit
 * asks for, as dma_direct_optimal_gfp_mask() picks it: a failure there is a
 * failure, never a step down into the zones other devices need.
 *
 * Memory is never taken from ZONE_MOVABLE: a dma-buf pins its pages for as
 * long as anyone holds it, and pinned pages in ZONE_MOVABLE make memory
 * offline (the reason the zone exists) fail.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cma.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/mem_encrypt.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
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

bool device_heap_contig_migrate;
module_param_named(contig_migrate, device_heap_contig_migrate, bool, 0644);
MODULE_PARM_DESC(contig_migrate,
		 "Contiguous buffers above the page allocator's largest block, without a CMA area, by migrating pages (default off)");

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

/*
 * Whether the device reaches [pfn, pfn + nr_pages): the last byte's bus
 * address below the limit, as dma_coherent_ok() decides (with the memory
 * encryption bit SME hosts put in bus addresses).
 */
static bool device_heap_reachable(const struct device_heap *heap,
				  unsigned long pfn, unsigned long nr_pages)
{
	phys_addr_t last = PFN_PHYS(pfn + nr_pages) - 1;

	return last <= heap->phys_limit && __sme_set(last) <= heap->dma_limit;
}

/* The last byte of ZONE_DMA, or 0 where the kernel has none. */
static u64 device_heap_zone_dma_end(void)
{
#ifdef CONFIG_ZONE_DMA
	unsigned long end = 0;
	int nid;

	for_each_online_node(nid) {
		struct zone *zone = &NODE_DATA(nid)->node_zones[ZONE_DMA];

		if (populated_zone(zone))
			end = max(end, zone_end_pfn(zone));
	}
	return end ? PFN_PHYS(end) - 1 : 0;
#else
	return 0;
#endif
}

/*
 * The zone modifier for the heap's limit, as dma_direct_optimal_gfp_mask()
 * picks it: ZONE_DMA for devices reaching no further, ZONE_DMA32 for devices
 * below 4 GiB, else none. The page allocator falls back to lower zones on
 * its own, keeping their lowmem reserves. @highmem: scattered pages may be
 * highmem (32-bit kernels), as the system heap's are.
 */
static gfp_t device_heap_zone_gfp(const struct device_heap *heap, bool highmem)
{
	u64 dma_end = device_heap_zone_dma_end();

	if (heap->phys_limit < device_heap_ram_top) {
		if (dma_end && heap->phys_limit <= dma_end)
			return GFP_DMA;
#ifdef CONFIG_ZONE_DMA32
		if (heap->phys_limit <= DMA_BIT_MASK(32))
			return GFP_DMA32;
#endif
	}
	return highmem ? __GFP_HIGHMEM : 0;
}

/*
 * The next zone to try after a block came out of reach, as
 * __dma_direct_alloc_pages() retries: ZONE_DMA32 for a device whose limit
 * is below the top of RAM but at or above 4 GiB, then ZONE_DMA; 0 when
 * there is nothing lower to try. Only reach decides: a zone that has no
 * free memory is a failure, not a reason to go lower.
 */
static gfp_t device_heap_retry_gfp(const struct device_heap *heap, gfp_t gfp)
{
#ifdef CONFIG_ZONE_DMA32
	if (!(gfp & (GFP_DMA32 | GFP_DMA)) &&
	    heap->phys_limit < device_heap_ram_top)
		return (gfp & ~__GFP_HIGHMEM) | GFP_DMA32;
#endif
	if (device_heap_zone_dma_end() && !(gfp & GFP_DMA) &&
	    heap->phys_limit <= DMA_BIT_MASK(32))
		return (gfp & ~(GFP_DMA32 | __GFP_HIGHMEM)) | GFP_DMA;
	return 0;
}

/* One allocation from the zone the limit asks for, lower only if out of reach. */
static struct page *buddy_alloc(struct device_heap *heap, unsigned int order,
				gfp_t gfp)
{
	struct page *page;

	gfp |= device_heap_zone_gfp(heap, true);
	do {
		page = alloc_pages(gfp, order);
		if (!page)
			return NULL;
		if (device_heap_reachable(heap, page_to_pfn(page), 1 << order))
			return page;
		__free_pages(page, order);
		gfp = device_heap_retry_gfp(heap, gfp);
	} while (gfp);
	return NULL;
}

/**
 * device_heap_clear - clear memory that came without __GFP_ZERO
 * @page: first page of a contiguous range
 * @nr_pages: its length in pages
 *
 * Return: 0, or -EINTR if the caller was killed meanwhile (the memory is
 * then only partly cleared, and must not be handed out).
 */
int device_heap_clear(struct page *page, unsigned long nr_pages)
{
	unsigned long i;

	if (!PageHighMem(page)) {
		size_t len = nr_pages << PAGE_SHIFT, off, n;

		/* In 2 MiB steps: a buffer may be hundreds of MiB. */
		for (off = 0; off < len; off += n) {
			if (fatal_signal_pending(current))
				return -EINTR;
			n = min_t(size_t, len - off, SZ_2M);
			memset(page_address(page) + off, 0, n);
			cond_resched();
		}
		return 0;
	}
	for (i = 0; i < nr_pages; i++) {
		if (!(i % 512) && fatal_signal_pending(current))
			return -EINTR;
		clear_highpage(page + i);
		cond_resched();
	}
	return 0;
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
 * Not cleared here: the caller clears only where the allocator did not,
 * since __GFP_ZERO would clear the whole power-of-two block, up to twice
 * the buffer. Lowmem only: alloc_pages_exact() returns a kernel address.
 */
static struct page *buddy_alloc_exact(struct device_heap *heap, size_t len,
				      gfp_t gfp)
{
	struct page *page;
	void *vaddr;

	gfp |= device_heap_zone_gfp(heap, false);
	do {
		vaddr = alloc_pages_exact(len, gfp);
		if (!vaddr)
			return NULL;
		page = virt_to_page(vaddr);
		if (device_heap_reachable(heap, page_to_pfn(page),
					  len >> PAGE_SHIFT))
			return page;
		free_pages_exact(vaddr, len);
		gfp = device_heap_retry_gfp(heap, gfp);
	} while (gfp);
	return NULL;
}

#ifdef DEVICE_HEAP_HAVE_CMA
/*
 * Whether the heap's CMA area lies within reach. Areas are placed at boot
 * (x86 puts them above 4 GiB where it can) and nothing exported says where:
 * the first allocation takes one page of the area and gives it back, with no
 * lock held, and the answer is kept. An area that is full when asked is
 * asked again next time. Every allocation is checked again anyway.
 */
static bool cma_usable(struct device_heap *heap)
{
	int state = READ_ONCE(heap->cma_state);
	struct page *page;
	bool usable;

	if (!heap->cma || state)
		return state > 0;
	page = cma_alloc(heap->cma, 1, 0, true);
	if (!page)
		return true;
	usable = device_heap_reachable(heap, page_to_pfn(page), 1) &&
		 page_zonenum(page) <= ZONE_NORMAL;
	cma_release(heap->cma, page, 1);
	WRITE_ONCE(heap->cma_state, usable ? 1 : -1);
	if (!usable)
		pr_info("%s: CMA area %s is out of reach, not used\n",
			heap->name, cma_get_name(heap->cma));
	return usable;
}

static struct page *cma_range_alloc(struct device_heap *heap,
				    unsigned long nr_pages)
{
	struct page *page;

	if (!cma_usable(heap))
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

/*
 * Makes a new contiguous block for @heap, from the first source that has
 * one, cleared. cma_alloc(), alloc_pages_exact() and alloc_contig_range()
 * all hand pages through post_alloc_hook() with GFP_KERNEL, which clears
 * them on init_on_alloc kernels (Debian's default): one pass clears them
 * here only where it did not.
 */
static int device_heap_new_contig(struct device_heap *heap,
				  struct device_heap_contig *block)
{
	unsigned long nr_pages = block->len >> PAGE_SHIFT;
	bool buddy_fits = get_order(block->len) <= MAX_PAGE_ORDER;
	struct page *page;
	int ret;

	block->source = DEVICE_HEAP_FROM_CMA;
	block->cma = heap->cma;
	page = cma_range_alloc(heap, nr_pages);

	if (!page && buddy_fits) {
		block->source = DEVICE_HEAP_FROM_BUDDY;
		page = buddy_alloc_exact(heap, block->len,
					 GFP_KERNEL | __GFP_NOWARN |
					 __GFP_RETRY_MAYFAIL);
	}

	if (!page && !buddy_fits && READ_ONCE(device_heap_contig_migrate)) {
		block->source = DEVICE_HEAP_FROM_RANGE;
		page = contig_range_alloc(heap, nr_pages);
		if (IS_ERR(page))
			return PTR_ERR(page);
	}

	if (!page) {
		if (!buddy_fits && !READ_ONCE(device_heap_contig_migrate))
			pr_warn_ratelimited("%s: %zu KiB is more than the page allocator's largest block (%lu KiB) and %s; boot with cma=<size>, or set contig_migrate=1\n",
					    heap->name, block->len >> 10,
					    (PAGE_SIZE << MAX_PAGE_ORDER) >> 10,
					    heap->cma ? "the CMA area has no room" :
					    "no CMA area serves the heap");
		return -ENOMEM;
	}
	block->page = page;
	if (!device_heap_allocator_clears()) {
		ret = device_heap_clear(page, nr_pages);
		if (ret) {
			device_heap_free_block(block);
			return ret;
		}
	}
	return 0;
}

static int device_heap_alloc_contig(struct device_heap_buffer *buffer)
{
	struct device_heap *heap = buffer->heap;
	struct device_heap_contig block = { .len = buffer->len };
	int ret = 0;

	if (!device_heap_cache_take(heap, block.len, &block)) {
		/* A cached block whose clearing a fatal signal stopped. */
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = device_heap_new_contig(heap, &block);
		/* Memory the cache holds may be what is missing. */
		if (ret == -ENOMEM && device_heap_cache_drain())
			ret = device_heap_new_contig(heap, &block);
	}
	if (ret) {
		pr_warn_ratelimited("%s: no contiguous %zu KiB below %#llx: %d\n",
				    heap->name, block.len >> 10,
				    heap->phys_limit, ret);
		return ret;
	}

	ret = sg_alloc_table(&buffer->sg_table, 1, device_heap_meta_gfp(heap));
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

	ret = sg_alloc_table(&buffer->sg_table, nents,
			     device_heap_meta_gfp(buffer->heap));
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
