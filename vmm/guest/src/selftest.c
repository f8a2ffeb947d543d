/*
 * selftest.c — the bare command-line word "selftest" runs these checks
 * before "ready" and prints "selftest: ok" or powers off through fatal():
 *   - buddy: random allocations of every order, each block tagged, all
 *     verified (an overlap fails the tags), half freed and reallocated,
 *     then all freed: the free counts per order must come back exactly
 *     (every buddy merged again);
 *   - the command-line parsers, including virtio_mmio.device=, which has no
 *     other user yet.
 * It writes the pages it allocates, so it costs host memory; leave it off
 * in migration measurements.
 */
#include "buddy.h"
#include "cmdline.h"
#include "tag.h"

#define OPS 1024

static u64 blocks[OPS];    /* pfn | order << 56 */

static void check_buddy(void)
{
	u64 before[BUDDY_MAX_ORDER + 1], rng = 0x1234567887654321UL, n = 0;
	for (u32 k = 0; k <= BUDDY_MAX_ORDER; k++)
		before[k] = buddy_free_count(k);
	for (int round = 0; round < 2; round++) {
		for (; n < OPS; n++) {
			u32 order = xorshift64(&rng) % (BUDDY_MAX_ORDER + 1);
			order = order > 6 && (rng & 3) ? order - 6 : order;  /* mostly small */
			u64 pfn = buddy_alloc(order);
			if (pfn == BUDDY_NONE)
				fatal("selftest: buddy_alloc(%u) failed with %lu pages free", order, buddy_free_pages());
			if (pfn & ((1UL << order) - 1))
				fatal("selftest: block 0x%lx of order %u is misaligned", pfn, order);
			blocks[n] = pfn | (u64)order << 56;
			tag_fill_block(pfn, order, n);
		}
		for (u64 i = 0; i < n; i++)
			tag_verify_block(blocks[i] & ((1UL << 56) - 1), blocks[i] >> 56, i, "selftest");
		for (u64 i = 0; i < n;) {       /* free a random half, compact */
			if (xorshift64(&rng) & 1) {
				buddy_free(blocks[i] & ((1UL << 56) - 1), blocks[i] >> 56);
				blocks[i] = blocks[--n];
			} else {
				i++;
			}
		}
		for (u64 i = 0; i < n; i++)     /* versions moved with compaction */
			tag_fill_block(blocks[i] & ((1UL << 56) - 1), blocks[i] >> 56, i);
	}
	while (n > 0) {
		n--;
		buddy_free(blocks[n] & ((1UL << 56) - 1), blocks[n] >> 56);
	}
	for (u32 k = 0; k <= BUDDY_MAX_ORDER; k++)
		if (buddy_free_count(k) != before[k])
			fatal("selftest: order %u has %lu free blocks, had %lu", k, buddy_free_count(k), before[k]);
}

static void check_cmdline(void)
{
	static const char line[] = "  a=1 virtio_mmio.device=512@0xfeb00e00:12 flag a=0x20\t"
				   "virtio_mmio.device=4K@0xd0000000:5:3 virtio_mmio.device=bad@x:1 b=";
	struct virtio_mmio_dev d[4];
	struct str v;
	u64 x;
	if (cmdline_u64(line, "a", &x) != 0 || x != 0x20)
		fatal("selftest: cmdline a=%lu, want 32 (last one wins)", x);
	if (cmdline_find(line, "flag", &v) != 0 || v.n != 0 || cmdline_find(line, "fla", &v) != -1)
		fatal("selftest: cmdline bare word lookup");
	if (cmdline_find(line, "b", &v) != 0 || v.n != 0 || cmdline_u64(line, "b", &x) != -2)
		fatal("selftest: cmdline empty value");
	u32 n = virtio_mmio_parse(line, d, 4);
	if (n != 2 || d[0].size != 512 || d[0].base != 0xfeb00e00 || d[0].irq != 12 || d[0].id != -1 ||
	    d[1].size != 4096 || d[1].base != 0xd0000000 || d[1].irq != 5 || d[1].id != 3)
		fatal("selftest: virtio_mmio.device parser found %u devices", n);
}

void selftest(void)
{
	check_cmdline();
	check_buddy();
	kprintf("selftest: ok (cmdline, virtio_mmio.device, %d buddy allocations)\n", 2 * OPS);
}
