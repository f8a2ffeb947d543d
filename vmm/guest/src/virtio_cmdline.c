/*
 * virtio_cmdline.c — parse Linux's virtio_mmio.device=<size>@<base>:<irq>[:<id>]
 * command-line words (drivers/virtio/virtio_mmio.c, vm_cmdline_set), as QEMU
 * microvm (acpi=off) and Ferry's VMM append them. <size> takes an optional
 * K/M/G suffix (memparse); <base> and <irq> are decimal or 0x-hex.
 *
 * balloon_probe (balloon.c) hands each word to virtio_mmio_probe.
 * Malformed words are skipped, not reported.
 */
#include "cmdline.h"

/* memparse: a number with an optional K, M or G suffix. */
static int memparse(struct str s, u64 *out)
{
	u32 shift = 0;
	if (s.n > 0) {
		switch (s.p[s.n - 1]) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		}
		if (shift)
			s.n--;
	}
	if (parse_u64(s.p, s.n, out) != 0 || (*out << shift) >> shift != *out)
		return -1;
	*out <<= shift;
	return 0;
}

static int parse_one(struct str v, struct virtio_mmio_dev *d)
{
	struct str size, base, irq;
	u64 x;
	if (!str_split(&v, '@', &size) || memparse(size, &d->size) != 0 || d->size == 0)
		return -1;
	if (!str_split(&v, ':', &base) || parse_u64(base.p, base.n, &d->base) != 0)
		return -1;
	int has_id = str_split(&v, ':', &irq);
	if (parse_u64(irq.p, irq.n, &x) != 0 || x > 0xffffffffUL)
		return -1;
	d->irq = (u32)x;
	d->id = -1;
	if (has_id) {
		if (parse_u64(v.p, v.n, &x) != 0)
			return -1;
		d->id = (s64)x;
	}
	return 0;
}

/* virtio_mmio_parse fills out[] with up to max devices in command-line
 * order and returns how many it found. */
u32 virtio_mmio_parse(const char *cmdline, struct virtio_mmio_dev *out, u32 max)
{
	static const char key[] = "virtio_mmio.device=";
	u32 n = 0;
	struct str w;
	for (const char *p = cmdline; n < max && (p = cmdline_next(p, &w)) != NULL;) {
		if (w.n <= sizeof(key) - 1 || memcmp(w.p, key, sizeof(key) - 1) != 0)
			continue;
		struct str v = {w.p + sizeof(key) - 1, w.n - (sizeof(key) - 1)};
		if (parse_one(v, &out[n]) == 0)
			n++;
	}
	return n;
}
