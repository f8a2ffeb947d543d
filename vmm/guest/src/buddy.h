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

static inline void *pfn_to_ptr(u64 pfn) { return (void *)(pfn << PAGE_SHIFT); }
static inline u64 ptr_to_pfn(const void *p) { return (u64)p >> PAGE_SHIFT; }

#endif
