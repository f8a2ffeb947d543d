/*
 * selftest.c — the bare command-line word "selftest" runs these checks
 * before "ready" and prints "selftest: ok" or powers off through fatal():
 *   - buddy: random allocations of every order, each block tagged, all
 *     verified (an overlap fails the tags), half freed and reallocated,
 *     then all freed: the free counts per order must come back exactly
 *     (every buddy merged again);
 *   - the balloon's allocator hooks: hinted blocks leave the free lists and
 *     all come back on release; a reported block is not offered for
 *     reporting again until it was allocated (then it is);
 *   - the command-line parsers, including virtio_mmio.device=.
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

static void check_hint_report(void)
{
	u64 free = buddy_free_pages(), n10 = buddy_free_count(BUDDY_MAX_ORDER), got[4];
	if (n10 < 4)
		return;
	for (int i = 0; i < 3; i++)
		if (buddy_hint_take() == BUDDY_NONE)
			fatal("selftest: buddy_hint_take failed with %lu order-10 blocks", n10);
	if (buddy_free_count(BUDDY_MAX_ORDER) != n10 - 3 || buddy_hinted_pages() != 3UL << BUDDY_MAX_ORDER)
		fatal("selftest: hinted blocks still counted free");
	if (buddy_hint_release() != 3UL << BUDDY_MAX_ORDER || buddy_free_pages() != free)
		fatal("selftest: hint release lost pages");
	for (int i = 0; i < 2; i++)
		got[i] = buddy_report_take(BUDDY_MAX_ORDER);
	for (int i = 0; i < 2; i++)
		buddy_report_put(got[i], BUDDY_MAX_ORDER);
	got[2] = buddy_report_take(BUDDY_MAX_ORDER);
	if (got[2] == got[0] || got[2] == got[1] || got[2] == BUDDY_NONE)
		fatal("selftest: a reported block was offered for reporting again");
	buddy_report_put(got[2], BUDDY_MAX_ORDER);
	u64 a = buddy_alloc(BUDDY_MAX_ORDER);   /* lowest: got[0], loses its mark */
	buddy_free(a, BUDDY_MAX_ORDER);
	got[3] = buddy_report_take(BUDDY_MAX_ORDER);
	if (got[3] != a)
		fatal("selftest: an allocated-then-freed block was not offered for reporting (0x%lx, 0x%lx)", got[3], a);
	buddy_free(got[3], BUDDY_MAX_ORDER);
	for (int i = 0; i < 3; i++) {           /* clear the marks we left */
		u64 b = buddy_alloc(BUDDY_MAX_ORDER);
		got[i] = b;
	}
	for (int i = 0; i < 3; i++)
		buddy_free(got[i], BUDDY_MAX_ORDER);
	if (buddy_free_pages() != free)
		fatal("selftest: reporting hooks lost pages");
}

void selftest(void)
{
	check_cmdline();
	check_buddy();
	check_hint_report();
	kprintf("selftest: ok (cmdline, virtio_mmio.device, %d buddy allocations, hint/report hooks)\n", 2 * OPS);
}
