/*
 * buddy.h — the guest's buddy page allocator: 4 KiB pages, blocks of order
 * 0..BUDDY_MAX_ORDER (4 MiB). Blocks are named by page frame number (pfn =
 * physical address >> 12) and their order; the caller remembers the order.
 * Free memory is never written by the allocator (see buddy.c).
 */
#ifndef BUDDY_H
#define BUDDY_H
#include "guest.h"

#define BUDDY_MAX_ORDER 10
#define BUDDY_NONE (~0UL)

u64 buddy_meta_bytes(u64 npfn);
void buddy_init(void *meta, u64 npfn);
void buddy_add_range(u64 pfn_lo, u64 pfn_hi);

/* buddy_alloc returns the pfn of a free block of 2^order pages, lowest
 * address first among the smallest fitting blocks, or BUDDY_NONE. */
u64 buddy_alloc(u32 order);
/* buddy_free gives back a block from buddy_alloc (same order) and merges
 * it with free buddies; a double free powers off with EXIT_SETUP. */
void buddy_free(u64 pfn, u32 order);
/* buddy_free_count is the number of free blocks of exactly this order. */
u64 buddy_free_count(u32 order);
u64 buddy_free_pages(void);

/* Free page hinting (balloon_hint.c). buddy_hint_take removes a free
 * order-10 block and marks it hinted (BUDDY_NONE when there is none);
 * until buddy_hint_release frees them all, allocating, freeing or touching
 * (buddy_check_touch) a hinted block prints "balloon: ASSERT ..." and
 * powers off with EXIT_VERIFY. buddy_hint_release returns pages released. */
u64 buddy_hint_take(void);
u64 buddy_hint_release(void);
u64 buddy_hinted_pages(void);
void buddy_check_touch(u64 pfn, u32 order, const char *op);

/* Free page reporting: buddy_report_take removes a free block of exactly
 * order (>= BUDDY_REPORT_ORDER) not reported since it was last allocated,
 * split or merged; buddy_report_put frees it back marked reported. */
#define BUDDY_REPORT_ORDER 9
u64 buddy_report_take(u32 order);
void buddy_report_put(u64 pfn, u32 order);

static inline void *pfn_to_ptr(u64 pfn) { return (void *)(pfn << PAGE_SHIFT); }
static inline u64 ptr_to_pfn(const void *p) { return (u64)p >> PAGE_SHIFT; }

#endif
