/*
 * buddy.c — a buddy allocator whose free lists are bitmaps kept outside
 * the free memory.
 *
 * For each order k there is one bit per aligned block of 2^k pages: set
 * means "this block is free and is not part of a larger free block". To
 * find a free block fast each bitmap carries summary levels (a bit per
 * non-zero 64-bit word of the level below), so alloc is a walk of at most
 * six words per order and free is a few bit flips plus the merge loop.
 *
 *   order k, level 2:  [ 1 ]                       one word
 *            level 1:  [ 0 1 0 ... ]               bit = word below non-zero
 *            level 0:  [ ... 0 0 1 0 ... ]         bit = block free
 *
 * The bitmaps take about 2 bits per page (0.006% of RAM, 512 KiB for
 * 8 GiB) and are the only memory the allocator writes: free pages are never
 * touched, so RAM the guest never used stays unpopulated on the host, and
 * initialising 16 GiB costs one memset of 1 MiB plus one bit per 4 MiB.
 *
 * Two more flat bitmaps serve the balloon driver (balloon_hint.c):
 *   hinted:   one bit per 4 MiB block held for a free page hint; such a
 *             block must not be allocated, freed or touched until the
 *             device says DONE (buddy_hint_release), else "balloon: ASSERT"
 *             and power-off with EXIT_VERIFY;
 *   reported: per free block of order >= BUDDY_REPORT_ORDER, set once the
 *             block went through free page reporting, cleared whenever the
 *             block leaves the free lists (allocated, split or merged), as
 *             Linux's PageReported.
 *
 * It cannot: allocate more than 4 MiB contiguously, track who owns a block
 * or its order (callers pass the order back to buddy_free), or detect the
 * free of a block that was never allocated when it overlaps no free block.
 */
#include "buddy.h"

#define HBM_LEVELS 7    /* 64^7 bits: far beyond any guest */

struct hbm {
	u64 *lv[HBM_LEVELS];
	u32 nlv;
};

#define NREP (BUDDY_MAX_ORDER + 1 - BUDDY_REPORT_ORDER)

static struct hbm free_map[BUDDY_MAX_ORDER + 1];
static u64 nfree[BUDDY_MAX_ORDER + 1];
static u64 max_pfn;
static u64 *hinted;             /* bit per order-10 block */
static u64 nhinted;
static u64 *reported[NREP];     /* bit per block of order BUDDY_REPORT_ORDER + i */

static int bit_test(const u64 *m, u64 b) { return (m[b >> 6] >> (b & 63)) & 1; }
static void bit_set(u64 *m, u64 b) { m[b >> 6] |= 1UL << (b & 63); }
static void bit_clear(u64 *m, u64 b) { m[b >> 6] &= ~(1UL << (b & 63)); }
static u64 flat_bytes(u64 nbits) { return (nbits + 63) / 64 * 8; }

/* unreport: block b of order k left (or joined) the free lists. */
static void unreport(u32 k, u64 b)
{
	if (k >= BUDDY_REPORT_ORDER)
		bit_clear(reported[k - BUDDY_REPORT_ORDER], b);
}

static void NORETURN hint_assert(const char *op, u64 pfn, u32 order)
{
	kprintf("balloon: ASSERT %s of 0x%lx (order %u) inside hinted block 0x%lx before DONE\n", op,
		pfn << PAGE_SHIFT, order, (pfn & ~((1UL << BUDDY_MAX_ORDER) - 1)) << PAGE_SHIFT);
	poweroff(EXIT_VERIFY);
}

/* hbm_layout places a bitmap of nbits at *cursor (NULL: only size it) and
 * returns the bytes it takes. */
static u64 hbm_layout(struct hbm *h, u64 nbits, u8 **cursor)
{
	u64 bytes = 0;
	u32 l = 0;
	do {
		u64 words = (nbits + 63) / 64;
		if (cursor) {
			h->lv[l] = (u64 *)(*cursor + bytes);
			h->nlv = l + 1;
		}
		bytes += words * 8;
		nbits = words;
		l++;
	} while (nbits > 1);
	return bytes;
}

static int hbm_test(const struct hbm *h, u64 b) { return (h->lv[0][b >> 6] >> (b & 63)) & 1; }

static void hbm_set(struct hbm *h, u64 b)
{
	for (u32 l = 0; l < h->nlv; l++, b >>= 6) {
		u64 old = h->lv[l][b >> 6];
		h->lv[l][b >> 6] = old | (1UL << (b & 63));
		if (old)
			break;
	}
}

static void hbm_clear(struct hbm *h, u64 b)
{
	for (u32 l = 0; l < h->nlv; l++, b >>= 6) {
		h->lv[l][b >> 6] &= ~(1UL << (b & 63));
		if (h->lv[l][b >> 6])
			break;
	}
}

static u64 hbm_first(const struct hbm *h)
{
	u32 l = h->nlv - 1;
	u64 w = h->lv[l][0];
	if (!w)
		return BUDDY_NONE;
	u64 b = __builtin_ctzl(w);
	while (l-- > 0)
		b = (b << 6) | __builtin_ctzl(h->lv[l][b]);
	return b;
}

/* buddy_meta_bytes is the metadata size for page frames 0..npfn-1. Each
 * order gets (npfn >> k) + 2 bits: the buddy of the last block may lie one
 * past it. */
u64 buddy_meta_bytes(u64 npfn)
{
	struct hbm h;
	u64 bytes = 0;
	for (u32 k = 0; k <= BUDDY_MAX_ORDER; k++)
		bytes += hbm_layout(&h, (npfn >> k) + 2, NULL);
	bytes += flat_bytes((npfn >> BUDDY_MAX_ORDER) + 2);
	for (u32 k = BUDDY_REPORT_ORDER; k <= BUDDY_MAX_ORDER; k++)
		bytes += flat_bytes((npfn >> k) + 2);
	return bytes;
}

/* buddy_init zeroes buddy_meta_bytes(npfn) bytes at meta and starts with
 * no free memory; buddy_add_range then hands RAM over. */
void buddy_init(void *meta, u64 npfn)
{
	u8 *cur = meta;
	max_pfn = npfn;
	memset(meta, 0, buddy_meta_bytes(npfn));
	for (u32 k = 0; k <= BUDDY_MAX_ORDER; k++) {
		cur += hbm_layout(&free_map[k], (npfn >> k) + 2, &cur);
		nfree[k] = 0;
	}
	hinted = (u64 *)cur;
	cur += flat_bytes((npfn >> BUDDY_MAX_ORDER) + 2);
	for (u32 k = BUDDY_REPORT_ORDER; k <= BUDDY_MAX_ORDER; k++) {
		reported[k - BUDDY_REPORT_ORDER] = (u64 *)cur;
		cur += flat_bytes((npfn >> k) + 2);
	}
	nhinted = 0;
}

/* buddy_add_range frees the pages [pfn_lo, pfn_hi) as maximal aligned
 * blocks. */
void buddy_add_range(u64 pfn_lo, u64 pfn_hi)
{
	while (pfn_lo < pfn_hi) {
		u32 k = BUDDY_MAX_ORDER;
		while (k > 0 && ((pfn_lo & ((1UL << k) - 1)) || pfn_lo + (1UL << k) > pfn_hi))
			k--;
		buddy_free(pfn_lo, k);
		pfn_lo += 1UL << k;
	}
}

u64 buddy_alloc(u32 order)
{
	if (order > BUDDY_MAX_ORDER)
		return BUDDY_NONE;
	for (u32 k = order; k <= BUDDY_MAX_ORDER; k++) {
		u64 b = hbm_first(&free_map[k]);
		if (b == BUDDY_NONE)
			continue;
		hbm_clear(&free_map[k], b);
		unreport(k, b);
		nfree[k]--;
		u64 pfn = b << k;
		if (bit_test(hinted, pfn >> BUDDY_MAX_ORDER))
			hint_assert("alloc", pfn, order);
		while (k > order) {   /* split: the upper halves stay free */
			k--;
			hbm_set(&free_map[k], (pfn >> k) + 1);
			nfree[k]++;
		}
		return pfn;
	}
	return BUDDY_NONE;
}

void buddy_free(u64 pfn, u32 order)
{
	if (order > BUDDY_MAX_ORDER || (pfn & ((1UL << order) - 1)) || pfn + (1UL << order) > max_pfn)
		fatal("buddy_free: bad block pfn=0x%lx order=%u", pfn, order);
	for (u32 k = order; k <= BUDDY_MAX_ORDER; k++)
		if (hbm_test(&free_map[k], pfn >> k))
			fatal("buddy_free: double free pfn=0x%lx order=%u", pfn, order);
	if (bit_test(hinted, pfn >> BUDDY_MAX_ORDER))
		hint_assert("free", pfn, order);
	u32 k = order;
	for (; k < BUDDY_MAX_ORDER; k++) {
		u64 buddy = (pfn >> k) ^ 1;
		if (!hbm_test(&free_map[k], buddy))
			break;
		hbm_clear(&free_map[k], buddy);
		unreport(k, buddy);
		nfree[k]--;
		pfn &= ~(1UL << k);
	}
	hbm_set(&free_map[k], pfn >> k);
	unreport(k, pfn >> k);
	nfree[k]++;
}

u64 buddy_free_count(u32 order) { return order <= BUDDY_MAX_ORDER ? nfree[order] : 0; }

u64 buddy_free_pages(void)
{
	u64 n = 0;
	for (u32 k = 0; k <= BUDDY_MAX_ORDER; k++)
		n += nfree[k] << k;
	return n;
}

/* ---- Free page hinting: order-10 blocks held until DONE. ---------------- */

u64 buddy_hint_take(void)
{
	u64 b = hbm_first(&free_map[BUDDY_MAX_ORDER]);
	if (b == BUDDY_NONE)
		return BUDDY_NONE;
	hbm_clear(&free_map[BUDDY_MAX_ORDER], b);
	unreport(BUDDY_MAX_ORDER, b);
	nfree[BUDDY_MAX_ORDER]--;
	bit_set(hinted, b);
	nhinted++;
	return b << BUDDY_MAX_ORDER;
}

u64 buddy_hint_release(void)
{
	u64 n = 0;
	for (u64 w = 0; nhinted > 0 && w <= (max_pfn >> BUDDY_MAX_ORDER) / 64; w++) {
		while (hinted[w]) {
			u64 b = w * 64 + __builtin_ctzl(hinted[w]);
			bit_clear(hinted, b);
			nhinted--;
			buddy_free(b << BUDDY_MAX_ORDER, BUDDY_MAX_ORDER);
			n++;
		}
	}
	return n << BUDDY_MAX_ORDER;
}

u64 buddy_hinted_pages(void) { return nhinted << BUDDY_MAX_ORDER; }

void buddy_check_touch(u64 pfn, u32 order, const char *op)
{
	if (nhinted && bit_test(hinted, pfn >> BUDDY_MAX_ORDER))
		hint_assert(op, pfn, order);
}

/* ---- Free page reporting: a reported bit per free block of order >= 9. -- */

u64 buddy_report_take(u32 order)
{
	if (order < BUDDY_REPORT_ORDER || order > BUDDY_MAX_ORDER)
		return BUDDY_NONE;
	const u64 *free = free_map[order].lv[0], *rep = reported[order - BUDDY_REPORT_ORDER];
	u64 nwords = ((max_pfn >> order) + 2 + 63) / 64;
	for (u64 w = 0; w < nwords; w++) {
		u64 cand = free[w] & ~rep[w];
		if (!cand)
			continue;
		u64 b = w * 64 + __builtin_ctzl(cand);
		hbm_clear(&free_map[order], b);
		nfree[order]--;
		return b << order;
	}
	return BUDDY_NONE;
}

void buddy_report_put(u64 pfn, u32 order)
{
	buddy_free(pfn, order);
	if (hbm_test(&free_map[order], pfn >> order))   /* not merged: keep the mark */
		bit_set(reported[order - BUDDY_REPORT_ORDER], pfn >> order);
}
