// SPDX-License-Identifier: GPL-2.0
/*
 * How much one user may pin.
 *
 * A buffer's memory stays pinned until the last reference to it goes. It
 * cannot be swapped or reclaimed, and the OOM killer does not see it: no
 * task counts it in its RSS (mappings are VM_PFNMAP) and any process the
 * dma-buf was passed to may hold it. A memory cgroup charge (heap_charge.c)
 * bounds it only where some ancestor sets memory.max, which no default
 * system does for user sessions, and contiguous heaps charge nobody.
 *
 * So the module keeps a count of its own: the bytes of live buffers per
 * user, by the real uid of the allocating task, as the kernel counts a
 * user's locked memory (struct user_struct). An allocation that would take
 * a user past max_user_bytes fails with -ENOMEM before any memory is taken:
 * nobody is OOM-killed, and the caller can free buffers and retry. Charging
 * a memcg, where the heap does, comes on top.
 *
 * Tasks with CAP_IPC_LOCK are not limited, as mlock() does not limit them:
 * their buffers are counted like anyone's, and the capability is asked for
 * only when an allocation is over the limit (no audit record, no privilege
 * used, otherwise). The count belongs to the buffer and drops when the
 * buffer is released, whoever holds it last, so a user who leaves a session
 * keeps at most max_user_bytes pinned through buffers and heap files opened
 * before.
 *
 * The limit is kept in pages, an unsigned long, so that it is read and
 * written whole on 32-bit machines too.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/hashtable.h>
#include <linux/kstrtox.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uidgid.h>

#include "device_heap.h"

/**
 * struct device_heap_user - what one user has pinned
 * @node:	entry in device_heap_users, keyed by @uid
 * @uid:	the user
 * @bytes:	bytes of the user's live buffers
 * @buffers:	number of those buffers; the entry goes with the last
 */
struct device_heap_user {
	struct hlist_node node;
	kuid_t uid;
	u64 bytes;
	unsigned int buffers;
};

static DEFINE_HASHTABLE(device_heap_users, 6);
static DEFINE_MUTEX(device_heap_users_lock);

/* In pages; set at module init when not given at load. */
static unsigned long max_user_pages = ULONG_MAX;

/*
 * Decimal bytes, as max_alloc_bytes reads, rounded down to a page. A limit
 * above RAM would bound nothing and is refused, as is anything but a number;
 * nothing changes then.
 */
static int max_user_bytes_set(const char *val, const struct kernel_param *kp)
{
	u64 bytes;

	if (kstrtou64(val, 10, &bytes) ||
	    bytes >> PAGE_SHIFT > totalram_pages())
		return -EINVAL;
	WRITE_ONCE(max_user_pages, bytes >> PAGE_SHIFT);
	return 0;
}

static int max_user_bytes_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", device_heap_max_user_bytes());
}

static const struct kernel_param_ops max_user_bytes_ops = {
	.set = max_user_bytes_set,
	.get = max_user_bytes_get,
};
module_param_cb(max_user_bytes, &max_user_bytes_ops, NULL, 0644);
MODULE_PARM_DESC(max_user_bytes,
		 "Most bytes one user may have in live buffers of all heaps unless it has CAP_IPC_LOCK (default: an eighth of RAM; at most RAM)");

/**
 * device_heap_max_user_bytes - the per-user limit now in force
 *
 * Return: the limit in bytes, a multiple of PAGE_SIZE.
 */
u64 device_heap_max_user_bytes(void)
{
	return (u64)READ_ONCE(max_user_pages) << PAGE_SHIFT;
}

/*
 * An eighth of RAM: room for dozens of full-screen 4K buffers on a desktop,
 * and it takes eight users at the limit to pin all of RAM.
 */
void device_heap_user_limit_init(void)
{
	if (READ_ONCE(max_user_pages) == ULONG_MAX)
		WRITE_ONCE(max_user_pages, totalram_pages() / 8);
}

static struct device_heap_user *device_heap_user_find(kuid_t uid)
{
	struct device_heap_user *user;

	lockdep_assert_held(&device_heap_users_lock);
	hash_for_each_possible(device_heap_users, user, node, __kuid_val(uid)) {
		if (uid_eq(user->uid, uid))
			return user;
	}
	return NULL;
}

static void device_heap_user_drop(struct device_heap_user *user)
{
	lockdep_assert_held(&device_heap_users_lock);
	if (user->buffers)
		return;
	hash_del(&user->node);
	kfree(user);
}

/**
 * device_heap_user_pin - count a new buffer against its allocating user
 * @buffer: buffer whose @len is set and whose memory is not yet allocated
 *
 * Return: 0, with @buffer->user set, or -ENOMEM when the buffer would take
 * a user without CAP_IPC_LOCK past max_user_bytes.
 */
int device_heap_user_pin(struct device_heap_buffer *buffer)
{
	u64 limit = device_heap_max_user_bytes();
	struct device_heap_user *user, *new = NULL;
	kuid_t uid = current_uid();
	u64 pinned;
	bool over;

	/*
	 * The entry lives while the user has buffers, whichever process or
	 * cgroup allocated first: not charged, as user_struct is not, and
	 * allocated outside the lock every release takes.
	 */
	mutex_lock(&device_heap_users_lock);
	user = device_heap_user_find(uid);
	if (!user) {
		mutex_unlock(&device_heap_users_lock);
		new = kzalloc(sizeof(*new), GFP_KERNEL);
		if (!new)
			return -ENOMEM;
		new->uid = uid;
		mutex_lock(&device_heap_users_lock);
		user = device_heap_user_find(uid);
		if (!user) {
			user = new;
			new = NULL;
			hash_add(device_heap_users, &user->node, __kuid_val(uid));
		}
	}

	pinned = user->bytes;
	over = buffer->len > limit || pinned > limit - buffer->len;
	if (over && !capable(CAP_IPC_LOCK)) {
		device_heap_user_drop(user);
		mutex_unlock(&device_heap_users_lock);
		kfree(new);
		pr_info_ratelimited("uid %u has %llu bytes in buffers: %zu more is past max_user_bytes (%llu)\n",
				    from_kuid_munged(&init_user_ns, uid),
				    pinned, buffer->len, limit);
		return -ENOMEM;
	}
	user->bytes += buffer->len;
	user->buffers++;
	buffer->user = user;
	mutex_unlock(&device_heap_users_lock);
	kfree(new);
	return 0;
}

/**
 * device_heap_user_unpin - give back what device_heap_user_pin() counted
 * @buffer: the buffer, being released or never exported
 */
void device_heap_user_unpin(struct device_heap_buffer *buffer)
{
	struct device_heap_user *user = buffer->user;

	if (!user)
		return;
	mutex_lock(&device_heap_users_lock);
	user->bytes -= buffer->len;
	user->buffers--;
	device_heap_user_drop(user);
	mutex_unlock(&device_heap_users_lock);
	buffer->user = NULL;
}

/*
 * /sys/kernel/debug/device_heap/users: "<uid> <bytes> <buffers>" for every
 * user with live buffers, uids as the initial namespace sees them.
 */
static int device_heap_users_show(struct seq_file *m, void *unused)
{
	struct device_heap_user *user;
	unsigned int bkt;

	mutex_lock(&device_heap_users_lock);
	hash_for_each(device_heap_users, bkt, user, node)
		seq_printf(m, "%u %llu %u\n",
			   from_kuid_munged(&init_user_ns, user->uid),
			   user->bytes, user->buffers);
	mutex_unlock(&device_heap_users_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(device_heap_users);

void device_heap_users_debugfs(struct dentry *dir)
{
	debugfs_create_file("users", 0400, dir, NULL, &device_heap_users_fops);
}
