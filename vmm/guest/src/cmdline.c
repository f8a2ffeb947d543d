/*
 * cmdline.c — split the PVH command line into words and look up
 * "key=value" words.
 *
 * The whole command line is one NUL-terminated string. Words are separated
 * by spaces or tabs; there is no quoting. Unknown words are ignored by the
 * callers (QEMU appends virtio_mmio.device=... words, for example). When a
 * key appears more than once the last one wins, as in Linux.
 */
#include "cmdline.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

/* cmdline_next stores the next word at or after p in *word and returns the
 * position after it, or NULL when there are no more words. */
const char *cmdline_next(const char *p, struct str *word)
{
	if (!p)
		return NULL;
	while (*p && is_space(*p))
		p++;
	if (!*p)
		return NULL;
	word->p = p;
	while (*p && !is_space(*p))
		p++;
	word->n = p - word->p;
	return p;
}

/* cmdline_find stores the value of the last "key=value" word (or an empty
 * value for a bare "key") and returns 0, or -1 when key is absent. */
int cmdline_find(const char *cmdline, const char *key, struct str *value)
{
	u64 kn = strlen(key);
	int found = -1;
	struct str w;
	for (const char *p = cmdline; (p = cmdline_next(p, &w)) != NULL;) {
		if (w.n < kn || memcmp(w.p, key, kn) != 0)
			continue;
		if (w.n == kn) {
			value->p = w.p + kn;
			value->n = 0;
			found = 0;
		} else if (w.p[kn] == '=') {
			value->p = w.p + kn + 1;
			value->n = w.n - kn - 1;
			found = 0;
		}
	}
	return found;
}

/* cmdline_u64 parses the value of key as a number: 0 ok, -1 absent,
 * -2 malformed. */
int cmdline_u64(const char *cmdline, const char *key, u64 *out)
{
	struct str v;
	if (cmdline_find(cmdline, key, &v) != 0)
		return -1;
	return parse_u64(v.p, v.n, out) == 0 ? 0 : -2;
}

/* str_split cuts *s at the first sep: the part before goes to *head, *s
 * keeps the rest. Returns 1 if sep was found, 0 if *head took all of *s. */
int str_split(struct str *s, char sep, struct str *head)
{
	for (u64 i = 0; i < s->n; i++) {
		if (s->p[i] == sep) {
			head->p = s->p;
			head->n = i;
			s->p += i + 1;
			s->n -= i + 1;
			return 1;
		}
	}
	*head = *s;
	s->p += s->n;
	s->n = 0;
	return 0;
}
