/*
 * wl_kv.c — kv:<MiB>[@<ops/s>]: a key-value store whose values live in
 * pages from the buddy allocator, about <MiB> of them, under random
 * (xorshift) inserts, updates and deletes at the given rate (default 2000
 * operations per second), so pages are allocated and freed all the time.
 *
 * Keys are 1..keyspace; key k's value is a block of 2^(k % 3) tagged pages
 * (1, 2 or 4). The index is an open-addressing hash table (linear probing,
 * backward-shift deletion) in its own buddy blocks, at most half full:
 *
 *   slot = { key, version, pfn, order }   key 0 = empty
 *
 * An operation picks a random key: present -> update (new version, rewrite)
 * or delete (free the block), half each; absent -> insert if the data stays
 * under <MiB>. The table is filled to about <MiB> before "ready".
 * It cannot grow the table or exceed 2^32 keys.
 */
#include "workload.h"
#include "balloon.h"
#include "buddy.h"
#include "tag.h"

struct kv_slot {
	u32 key;
	u32 version;
	u32 pfn;
	u32 order;
};

#define CHUNK_SLOTS (4UL * MIB / sizeof(struct kv_slot))
#define MAX_CHUNKS 64

static struct kv_slot *chunks[MAX_CHUNKS];
static u64 nslots, mask;
static u32 bits;
static u64 keyspace, budget, live, entries;
static u64 n_ins, n_upd, n_del, n_oom;
static struct pacer pace;
static u64 rng = 0x9e3779b97f4a7c15UL;

static struct kv_slot *slot(u64 i) { return &chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]; }
static u64 home(u32 key) { return (u32)(key * 2654435769U) >> (32 - bits); }

/* find returns the slot index holding key, or of the empty slot ending
 * its probe sequence. */
static u64 find(u32 key)
{
	u64 i = home(key);
	while (slot(i)->key != 0 && slot(i)->key != key)
		i = (i + 1) & mask;
	return i;
}

static void erase(u64 i)
{
	for (u64 j = (i + 1) & mask; slot(j)->key != 0; j = (j + 1) & mask) {
		u64 k = home(slot(j)->key);
		int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			*slot(i) = *slot(j);
			i = j;
		}
	}
	slot(i)->key = 0;
}

static void op(u32 key, int allow_change)
{
	u64 i = find(key);
	struct kv_slot *s = slot(i);
	if (s->key == key && allow_change) {
		if (xorshift64(&rng) & 1) {
			s->version++;
			tag_fill_block(s->pfn, s->order, s->version);
			n_upd++;
		} else {
			buddy_free(s->pfn, s->order);
			live -= 1UL << s->order;
			entries--;
			erase(i);
			n_del++;
		}
	} else if (s->key == 0 && live + (1UL << key % 3) <= budget) {
		u64 pfn = wl_alloc(key % 3);
		if (pfn == BUDDY_NONE) {
			n_oom++;
			return;
		}
		*s = (struct kv_slot){key, 1, (u32)pfn, key % 3};
		tag_fill_block(pfn, s->order, 1);
		live += 1UL << s->order;
		entries++;
		n_ins++;
	}
}

void kv_setup(u64 mib, u64 ops_per_s)
{
	budget = mib << (20 - PAGE_SHIFT);
	if (budget == 0)
		return;
	keyspace = MAX(budget * 3 / 7 * 2, 2);   /* ~2x the keys that fit */
	if (keyspace > 0xffffffffUL)
		fatal("kv: %lu MiB is too large", mib);
	for (bits = 1; (1UL << bits) < 2 * keyspace; bits++)
		;
	nslots = 1UL << bits;
	mask = nslots - 1;
	if (nslots > MAX_CHUNKS * CHUNK_SLOTS)
		fatal("kv: %lu MiB needs more than %d index chunks", mib, MAX_CHUNKS);
	for (u64 c = 0; c * CHUNK_SLOTS < nslots; c++) {
		u32 order;
		chunks[c] = meta_alloc(MIN(nslots - c * CHUNK_SLOTS, CHUNK_SLOTS) * sizeof(struct kv_slot), &order);
	}
	for (u64 tries = 0; live + 4 <= budget && tries < 8 * keyspace; tries++)
		op(1 + xorshift64(&rng) % keyspace, 0);
	pacer_start(&pace, ops_per_s, rdtsc());
	kprintf("kv: %lu entries in %lu pages (budget %lu), %lu keys, %lu slots, %lu ops/s\n",
		entries, live, budget, keyspace, nslots, ops_per_s);
}

int kv_step(u64 now)
{
	if (budget == 0)
		return 0;
	u64 due = pacer_due(&pace, now, 256);
	for (u64 n = 0; n < due; n++)
		op(1 + xorshift64(&rng) % keyspace, 1);
	return due > 0;
}

void kv_verify(void)
{
	for (u64 i = 0; i < nslots; i++) {
		struct kv_slot *s = slot(i);
		if (s->key != 0)
			tag_verify_block(s->pfn, s->order, s->version, "kv");
		if ((i & 255) == 255)
			balloon_maybe_poll();   /* answer hint sessions during long verifies */
	}
}

u64 kv_live(void) { return live; }

void kv_report(void)
{
	kprintf("kv: entries=%lu live=%lu inserts=%lu updates=%lu deletes=%lu oom=%lu\n",
		entries, live, n_ins, n_upd, n_del, n_oom);
}
