/*
 * wl_dirty.c — dirty:<MiB>@<MiB/s>: a working set of that many MiB, taken
 * as 4 MiB blocks (plus smaller ones for the remainder), in which random
 * pages are rewritten with a new version at the given rate, for ever,
 * paced by the TSC. Each block has a 4 KiB page of u32 versions beside it.
 *
 *   blocks[i] = { data pfn, order, versions page }  ->  versions[j] = version of page j
 *
 * It cannot keep up with rates above what one vCPU writes (several GB/s);
 * missed work beyond one second is dropped.
 */
#include "workload.h"
#include "balloon.h"
#include "buddy.h"
#include "tag.h"

struct dblock {
	u64 pfn;
	u32 order;
	u32 *vers;
};

static struct dblock *blocks;
static u64 nblocks, nfull, npages;
static struct pacer pace;
static u64 rng = 0x2545f4914f6cdd1dUL;
static u64 rewrites;

void dirty_setup(u64 mib, u64 mib_per_s)
{
	npages = mib << (20 - PAGE_SHIFT);
	if (npages == 0)
		return;
	u32 order;
	u64 max_blocks = (npages >> BUDDY_MAX_ORDER) + BUDDY_MAX_ORDER + 1;
	blocks = meta_alloc(max_blocks * sizeof(*blocks), &order);
	u64 left = npages;
	for (u32 k = BUDDY_MAX_ORDER + 1; k-- > 0;) {
		while (left >= (1UL << k)) {
			struct dblock *b = &blocks[nblocks++];
			u32 vo;
			b->order = k;
			b->pfn = wl_alloc(k);
			if (b->pfn == BUDDY_NONE)
				fatal("dirty: out of memory for a %lu MiB working set", mib);
			b->vers = meta_alloc(4UL << k, &vo);
			for (u64 j = 0; j < (1UL << k); j++) {
				b->vers[j] = 1;
				tag_fill((b->pfn + j) << PAGE_SHIFT, 1);
			}
			left -= 1UL << k;
			if (k == BUDDY_MAX_ORDER)
				nfull++;
		}
	}
	pacer_start(&pace, mib_per_s << (20 - PAGE_SHIFT), rdtsc());
	kprintf("dirty: working set %lu MiB (%lu pages in %lu blocks), rewriting %lu MiB/s\n",
		mib, npages, nblocks, mib_per_s);
}

/* page_of finds the block and index of working-set page i. */
static struct dblock *page_of(u64 i, u64 *j)
{
	if (i < nfull << BUDDY_MAX_ORDER) {
		*j = i & ((1UL << BUDDY_MAX_ORDER) - 1);
		return &blocks[i >> BUDDY_MAX_ORDER];
	}
	i -= nfull << BUDDY_MAX_ORDER;
	for (u64 b = nfull;; b++) {
		if (i < (1UL << blocks[b].order)) {
			*j = i;
			return &blocks[b];
		}
		i -= 1UL << blocks[b].order;
	}
}

int dirty_step(u64 now)
{
	if (npages == 0)
		return 0;
	u64 due = pacer_due(&pace, now, 256);
	for (u64 n = 0; n < due; n++) {
		u64 j;
		struct dblock *b = page_of(xorshift64(&rng) % npages, &j);
		tag_fill((b->pfn + j) << PAGE_SHIFT, ++b->vers[j]);
	}
	rewrites += due;
	return due > 0;
}

void dirty_verify(void)
{
	for (u64 i = 0; i < nblocks; i++) {
		for (u64 j = 0; j < (1UL << blocks[i].order); j++) {
			tag_verify((blocks[i].pfn + j) << PAGE_SHIFT, blocks[i].vers[j], "dirty");
			if ((j & 255) == 255)
				balloon_maybe_poll();   /* answer hint sessions during long verifies */
		}
	}
}

u64 dirty_live(void) { return npages; }

void dirty_report(void) { kprintf("dirty: pages=%lu rewrites=%lu\n", npages, rewrites); }
