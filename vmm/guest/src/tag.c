/*
 * tag.c — fill and verify tagged pages (layout in tag.h). The filler is a
 * splitmix-style hash of (seed, word index): independent per word, so the
 * loops run at memory speed in ring 3 (several GB/s).
 * It cannot tell which of several bad words came first in time; it reports
 * the first bad word of the page.
 */
#include "tag.h"
#include "buddy.h"

#define WORDS (PAGE_SIZE / 8)

static inline u64 mix(u64 x)
{
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9UL;
	x ^= x >> 29;
	return x;
}

static inline u64 seed_of(u64 addr, u64 version)
{
	return mix(addr ^ (version * 0x9e3779b97f4a7c15UL) ^ TAG_MAGIC);
}

static inline u64 tag_word(u64 seed, u64 i) { return mix(seed + i * 0xd1b54a32d192ed03UL); }

void tag_fill(u64 addr, u64 version)
{
	u64 *w = (u64 *)addr;
	u64 seed = seed_of(addr, version);
	buddy_check_touch(addr >> PAGE_SHIFT, 0, "write");
	w[0] = TAG_MAGIC;
	w[1] = addr;
	w[2] = version;
	for (u64 i = 3; i < WORDS; i++)
		w[i] = tag_word(seed, i);
}

static void NORETURN fail(u64 addr, u64 i, u64 want, u64 got, u64 version, const char *who)
{
	const u64 *w = (const u64 *)addr;
	kprintf("verify=FAIL addr=0x%lx want=0x%lx got=0x%lx page=0x%lx word=%lu version=%lu "
		"page-says=[magic=0x%lx addr=0x%lx version=%lu] workload=%s\n",
		addr + i * 8, want, got, addr, i, version, w[0], w[1], w[2], who);
	poweroff(EXIT_VERIFY);
}

void tag_verify(u64 addr, u64 version, const char *who)
{
	const u64 *w = (const u64 *)addr;
	u64 seed = seed_of(addr, version);
	buddy_check_touch(addr >> PAGE_SHIFT, 0, "read");
	u64 bad = w[0] ^ TAG_MAGIC;
	bad |= w[1] ^ addr;
	bad |= w[2] ^ version;
	for (u64 i = 3; i < WORDS; i++)
		bad |= w[i] ^ tag_word(seed, i);
	if (!bad)
		return;
	/* slow path: find the first bad word */
	if (w[0] != TAG_MAGIC)
		fail(addr, 0, TAG_MAGIC, w[0], version, who);
	if (w[1] != addr)
		fail(addr, 1, addr, w[1], version, who);
	if (w[2] != version)
		fail(addr, 2, version, w[2], version, who);
	for (u64 i = 3; i < WORDS; i++)
		if (w[i] != tag_word(seed, i))
			fail(addr, i, tag_word(seed, i), w[i], version, who);
}

void tag_fill_block(u64 pfn, u32 order, u64 version)
{
	for (u64 i = 0; i < (1UL << order); i++)
		tag_fill((pfn + i) << PAGE_SHIFT, version);
}

void tag_verify_block(u64 pfn, u32 order, u64 version, const char *who)
{
	for (u64 i = 0; i < (1UL << order); i++)
		tag_verify((pfn + i) << PAGE_SHIFT, version, who);
}
