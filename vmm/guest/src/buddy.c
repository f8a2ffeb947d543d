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

static struct hbm free_map[BUDDY_MAX_ORDER + 1];
static u64 nfree[BUDDY_MAX_ORDER + 1];
static u64 max_pfn;

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
		nfree[k]--;
		u64 pfn = b << k;
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
	u32 k = order;
	for (; k < BUDDY_MAX_ORDER; k++) {
		u64 buddy = (pfn >> k) ^ 1;
		if (!hbm_test(&free_map[k], buddy))
			break;
		hbm_clear(&free_map[k], buddy);
		nfree[k]--;
		pfn &= ~(1UL << k);
	}
	hbm_set(&free_map[k], pfn >> k);
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
