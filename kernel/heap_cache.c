// SPDX-License-Identifier: GPL-2.0
/*
 * Freed contiguous blocks, kept a moment for the next buffer of their size.
 *
 * A contiguous buffer is costly to make: above MAX_PAGE_ORDER its pages are
 * migrated out of a range (alloc_contig_range(), or cma_alloc(), which does
 * the same inside the CMA area, draining every CPU's lists on the way), and
 * below it the buddy allocator hands out a power-of-two block that kernels
 * with init_on_alloc clear whole, up to twice the buffer. Yet the buffers of
 * compositors and camera pipelines come and go in bursts of one size: a
 * swapchain on resize or mode set, a capture queue on stream restart. So a
 * freed block is kept, and the next allocation of exactly its size from the
 * same heap takes it back and clears only the buffer's bytes.
 *
 * The cache holds memory nobody uses, so it is kept small and short-lived:
 *  - at most cache_mb MiB (module parameter, 0 turns the cache off), the
 *    oldest blocks going first; a write to either parameter applies at once;
 *  - a block unused for cache_ms milliseconds goes back to where it came
 *    from;
 *  - a shrinker gives every block back under memory pressure (and on
 *    "echo 2 > /proc/sys/vm/drop_caches");
 *  - an allocation that finds no contiguous memory empties the cache and
 *    tries again before it fails;
 *  - a heap being removed takes its blocks with it.
 *
 * Only contiguous heaps cache: scatter-gather buffers come from the buddy
 * allocator chunk by chunk, which is cheap, and are charged to a memcg,
 * which a block kept past its buffer would escape. Blocks from a CMA area
 * are never kept: other drivers allocate from the same area through the
 * DMA API, which no shrinker serves, so a kept block could fail them. Nor
 * are blocks under CACHE_MIN_BYTES, which the buddy allocator makes
 * cheaply.
 */

#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/moduleparam.h>
#include <linux/shrinker.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

#include "device_heap.h"

#define CACHE_MIN_BYTES	SZ_64K

static void cache_age(struct work_struct *work);
static DECLARE_DELAYED_WORK(cache_aging, cache_age);

/* Protects cache_blocks, cache_live and writes to cache_pages. */
static DEFINE_SPINLOCK(cache_lock);
/*
 * Set from the end of device_heap_cache_init() to the start of its exit:
 * only then may a parameter write queue the aging work. Parameters given at
 * load are set before init runs, and a load that fails then frees the
 * module without calling exit.
 */
static bool cache_live;

/* A new limit or age applies now: the aging work trims to it. */
static int cache_param_set(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_uint(val, kp);

	if (ret)
		return ret;
	spin_lock(&cache_lock);
	if (cache_live)
		mod_delayed_work(system_long_wq, &cache_aging, 0);
	spin_unlock(&cache_lock);
	return 0;
}

static const struct kernel_param_ops cache_param_ops = {
	.set = cache_param_set,
	.get = param_get_uint,
};

static unsigned int cache_mb = 64;
module_param_cb(cache_mb, &cache_param_ops, &cache_mb, 0644);
MODULE_PARM_DESC(cache_mb,
		 "Freed contiguous memory kept for buffers of the same size, in MiB (default 64, 0: off)");

static unsigned int cache_ms = 2000;
module_param_cb(cache_ms, &cache_param_ops, &cache_ms, 0644);
MODULE_PARM_DESC(cache_ms,
		 "How long a freed contiguous block is kept unused, in ms (default 2000)");

/**
 * struct device_heap_block - a freed contiguous block
 * @list:	entry in cache_blocks, oldest first
 * @heap:	heap it was allocated for; never dereferenced, only compared:
 *		device_heap_cache_drop() removes a heap's blocks before the
 *		heap can go away
 * @block:	the memory, and how to give it back
 * @freed:	jiffies when it was cached
 */
struct device_heap_block {
	struct list_head list;
	const struct device_heap *heap;
	struct device_heap_contig block;
	unsigned long freed;
};

static LIST_HEAD(cache_blocks);
/* Read without the lock by the shrinker's count and debugfs. */
static unsigned long cache_pages;
static struct shrinker *cache_shrinker;

static unsigned long cache_limit_pages(void)
{
	return min_t(unsigned long, READ_ONCE(cache_mb),
		     ULONG_MAX >> 20) << (20 - PAGE_SHIFT);
}

static void cache_pages_add(long pages)
{
	lockdep_assert_held(&cache_lock);
	WRITE_ONCE(cache_pages, cache_pages + pages);
}

/* Called with cache_lock held: moves @b from the cache to @out. */
static void cache_unlink(struct device_heap_block *b, struct list_head *out)
{
	list_move_tail(&b->list, out);
	cache_pages_add(-(long)(b->block.len >> PAGE_SHIFT));
}

/* Gives the blocks on @blocks back; returns how many pages that was. */
static unsigned long cache_release(struct list_head *blocks)
{
	struct device_heap_block *b, *tmp;
	unsigned long pages = 0;

	list_for_each_entry_safe(b, tmp, blocks, list) {
		list_del(&b->list);
		pages += b->block.len >> PAGE_SHIFT;
		device_heap_free_block(&b->block);
		kfree(b);
		cond_resched();
	}
	return pages;
}

/**
 * device_heap_cache_take - a cached block for a new buffer
 * @heap: heap the buffer is for
 * @len: its length in bytes
 * @block: set to the block, cleared to zero, when one is found
 *
 * Return: true if a block of exactly @len bytes, allocated for @heap, was in
 * the cache (the most recently freed one is taken: its cache lines may
 * still be warm).
 */
bool device_heap_cache_take(const struct device_heap *heap, size_t len,
			    struct device_heap_contig *block)
{
	struct device_heap_block *b, *found = NULL;

	if (!READ_ONCE(cache_mb))
		return false;
	spin_lock(&cache_lock);
	list_for_each_entry_reverse(b, &cache_blocks, list) {
		if (b->heap == heap && b->block.len == len) {
			found = b;
			list_del(&b->list);
			cache_pages_add(-(long)(len >> PAGE_SHIFT));
			break;
		}
	}
	spin_unlock(&cache_lock);
	if (!found)
		return false;
	*block = found->block;
	kfree(found);
	/* The last buffer's data must not reach the next owner. */
	if (device_heap_clear(block->page, len >> PAGE_SHIFT)) {
		device_heap_free_block(block);
		return false;
	}
	return true;
}

/**
 * device_heap_cache_put - keep a freed block, if the cache has room
 * @heap: heap the block was allocated for
 * @block: the block
 *
 * Return: true if the cache took the block, false if the caller must give
 * it back (cache off, block too small, too large or from CMA, heap removed,
 * no memory for the bookkeeping).
 */
bool device_heap_cache_put(const struct device_heap *heap,
			   const struct device_heap_contig *block)
{
	unsigned long pages = block->len >> PAGE_SHIFT;
	struct device_heap_block *b, *tmp;
	unsigned long limit;
	LIST_HEAD(evicted);

	if (block->len < CACHE_MIN_BYTES || block->source == DEVICE_HEAP_FROM_CMA)
		return false;
	b = kmalloc(sizeof(*b), GFP_KERNEL | __GFP_NOWARN);
	if (!b)
		return false;
	b->heap = heap;
	b->block = *block;
	b->freed = jiffies;

	spin_lock(&cache_lock);
	/*
	 * Checked under the lock that device_heap_cache_drop() takes after
	 * the heap is marked dead: either the drop sees this block, or this
	 * sees the mark. The limit too, under the lock its setter takes
	 * before it trims.
	 */
	limit = cache_limit_pages();
	if (atomic_read(&heap->dead) || pages > limit || !READ_ONCE(cache_ms)) {
		spin_unlock(&cache_lock);
		kfree(b);
		return false;
	}
	list_add_tail(&b->list, &cache_blocks);
	cache_pages_add(pages);
	list_for_each_entry_safe(b, tmp, &cache_blocks, list) {
		if (cache_pages <= limit)
			break;
		cache_unlink(b, &evicted);
	}
	spin_unlock(&cache_lock);

	cache_release(&evicted);
	queue_delayed_work(system_long_wq, &cache_aging,
			   msecs_to_jiffies(READ_ONCE(cache_ms)));
	return true;
}

/*
 * Gives back the blocks older than cache_ms and, oldest first, those over
 * cache_mb; then waits for the next block to age.
 */
static void cache_age(struct work_struct *work)
{
	unsigned long age = msecs_to_jiffies(READ_ONCE(cache_ms));
	unsigned long limit = cache_limit_pages();
	struct device_heap_block *b, *tmp;
	unsigned long now = jiffies;
	unsigned long next = 0;
	LIST_HEAD(old);

	spin_lock(&cache_lock);
	list_for_each_entry_safe(b, tmp, &cache_blocks, list) {
		if (cache_pages <= limit && time_before(now, b->freed + age)) {
			next = max(b->freed + age - now, 1UL);
			break;
		}
		cache_unlink(b, &old);
	}
	spin_unlock(&cache_lock);

	cache_release(&old);
	if (next)
		queue_delayed_work(system_long_wq, &cache_aging, next);
}

/* Gives back blocks, oldest first, until @pages pages are freed. */
static unsigned long cache_shrink(unsigned long pages)
{
	struct device_heap_block *b, *tmp;
	unsigned long taken = 0;
	LIST_HEAD(out);

	spin_lock(&cache_lock);
	list_for_each_entry_safe(b, tmp, &cache_blocks, list) {
		if (taken >= pages)
			break;
		taken += b->block.len >> PAGE_SHIFT;
		cache_unlink(b, &out);
	}
	spin_unlock(&cache_lock);
	return cache_release(&out);
}

/**
 * device_heap_cache_drain - give back every cached block
 *
 * Return: whether there was anything to give back.
 */
bool device_heap_cache_drain(void)
{
	return cache_shrink(ULONG_MAX) > 0;
}

/**
 * device_heap_cache_drop - give back the blocks of a heap being removed
 * @heap: the heap, already marked dead
 */
void device_heap_cache_drop(const struct device_heap *heap)
{
	struct device_heap_block *b, *tmp;
	LIST_HEAD(out);

	spin_lock(&cache_lock);
	list_for_each_entry_safe(b, tmp, &cache_blocks, list) {
		if (b->heap == heap)
			cache_unlink(b, &out);
	}
	spin_unlock(&cache_lock);
	cache_release(&out);
}

/* Bytes in the cache, for debugfs. */
u64 device_heap_cache_bytes(void)
{
	return (u64)READ_ONCE(cache_pages) << PAGE_SHIFT;
}

static unsigned long cache_count(struct shrinker *shrinker,
				 struct shrink_control *sc)
{
	return READ_ONCE(cache_pages) ?: SHRINK_EMPTY;
}

static unsigned long cache_scan(struct shrinker *shrinker,
				struct shrink_control *sc)
{
	unsigned long freed = cache_shrink(sc->nr_to_scan);

	return freed ?: SHRINK_STOP;
}

int device_heap_cache_init(void)
{
	cache_shrinker = shrinker_alloc(0, "device_heap-cache");
	if (!cache_shrinker)
		return -ENOMEM;
	cache_shrinker->count_objects = cache_count;
	cache_shrinker->scan_objects = cache_scan;
	shrinker_register(cache_shrinker);
	spin_lock(&cache_lock);
	cache_live = true;
	spin_unlock(&cache_lock);
	return 0;
}

/* Called once no buffer and no heap is left. */
void device_heap_cache_exit(void)
{
	spin_lock(&cache_lock);
	cache_live = false;
	spin_unlock(&cache_lock);
	shrinker_free(cache_shrinker);
	cancel_delayed_work_sync(&cache_aging);
	device_heap_cache_drain();
}
