/*
 * cmdline.h — the guest command line: space-separated words, "key=value"
 * or bare "key". See cmdline.c and virtio_cmdline.c.
 */
#ifndef CMDLINE_H
#define CMDLINE_H
#include "guest.h"

/* A piece of the command line: not NUL-terminated. */
struct str {
	const char *p;
	u64 n;
};

const char *cmdline_next(const char *p, struct str *word);
int cmdline_find(const char *cmdline, const char *key, struct str *value);
int cmdline_u64(const char *cmdline, const char *key, u64 *out);
int str_split(struct str *s, char sep, struct str *head);

/* One virtio_mmio.device=<size>@<base>:<irq>[:<id>] word. */
struct virtio_mmio_dev {
	u64 base;
	u64 size;
	u32 irq;
	s64 id;   /* -1: none given */
};

u32 virtio_mmio_parse(const char *cmdline, struct virtio_mmio_dev *out, u32 max);

#endif
