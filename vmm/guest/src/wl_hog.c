/*
 * wl_hog.c — hog:<MiB>, the 2016 "memory-consuming workload terminated just
 * before migration": allocate that much (4 MiB blocks, smaller ones for the
 * tail or when memory is fragmented), write every page with a tag, verify
 * it all, free it all. Runs once, before "ready"; afterwards the memory is
 * free in the allocator but populated on the host, which is exactly what
 * free-page hints are for.
 * If RAM runs out it touches what it got and says so.
 */
#include "workload.h"
#include "buddy.h"
#include "tag.h"

#define HOG_VERSION 1

static u32 floor_log2(u64 x) { return 63 - __builtin_clzl(x); }

void hog_run(u64 mib)
{
	u64 want = mib << (20 - PAGE_SHIFT);
	if (want == 0)
		return;
	u32 list_order;
	u64 max_blocks = (want >> BUDDY_MAX_ORDER) + 2 * BUDDY_MAX_ORDER + 2;
	u64 *list = meta_alloc(MIN(max_blocks, 512UL * 1024) * 8, &list_order);
	u64 cap_blocks = (PAGE_SIZE << list_order) / 8;

	u64 t0 = rdtsc();
	u64 got = 0, n = 0;
	u32 order = BUDDY_MAX_ORDER;
	while (got < want && n < cap_blocks) {
		order = MIN(order, floor_log2(want - got));
		u64 pfn = wl_alloc(order);
		if (pfn == BUDDY_NONE) {
			if (order == 0)
				break;
			order--;
			continue;
		}
		tag_fill_block(pfn, order, HOG_VERSION);
		list[n++] = pfn | (u64)order << 56;
		got += 1UL << order;
	}
	u64 t1 = rdtsc();
	for (u64 i = 0; i < n; i++)
		tag_verify_block(list[i] & ((1UL << 56) - 1), list[i] >> 56, HOG_VERSION, "hog");
	u64 t2 = rdtsc();
	for (u64 i = 0; i < n; i++)
		buddy_free(list[i] & ((1UL << 56) - 1), list[i] >> 56);
	buddy_free(ptr_to_pfn(list), list_order);

	u64 bytes = got << PAGE_SHIFT, us = MAX(tsc_to_us(t1 - t0), 1);
	if (got < want)
		kprintf("hog: warning: only %lu of %lu MiB available\n", bytes >> 20, mib);
	kprintf("hog: touched %lu MiB in %lu ms (%lu MB/s)\n", bytes >> 20, us / 1000, bytes / us);
	kprintf("hog: verify=ok in %lu ms, freed %lu pages in %lu blocks\n", tsc_to_ms(t2 - t1), got, n);
}
