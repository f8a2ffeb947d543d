/*
 * lib.c — the few libc pieces the guest needs (gcc may also emit calls to
 * memset/memcpy/memcmp on its own) and small parsing helpers.
 *
 * No allocation, no locale, no errno; parse_u64 takes decimal or 0x-hex
 * with no sign and no suffix and fails on overflow.
 */
#include "guest.h"

void *memset(void *dst, int c, u64 n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memcpy(void *dst, const void *src, u64 n)
{
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, u64 n)
{
	const u8 *x = a, *y = b;
	for (u64 i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

u64 strlen(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

/* str_eq reports whether the n bytes at s equal the NUL-terminated lit. */
int str_eq(const char *s, u64 n, const char *lit)
{
	u64 l = strlen(lit);
	return l == n && memcmp(s, lit, n) == 0;
}

/* parse_u64 parses all n bytes of s as decimal or 0x-prefixed hex. */
int parse_u64(const char *s, u64 n, u64 *out)
{
	u64 base = 10, v = 0;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return -1;
	for (u64 i = 0; i < n; i++) {
		u64 d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		if (v > (~0UL - d) / base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

/* xorshift64 advances a non-zero state and returns the new value. */
u64 xorshift64(u64 *state)
{
	u64 x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* order_for_pages returns the smallest order whose block holds pages. */
u32 order_for_pages(u64 pages)
{
	u32 order = 0;
	while ((1UL << order) < pages)
		order++;
	return order;
}
