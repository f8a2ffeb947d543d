/*
 * tag.h — self-describing page contents for live workload data.
 *
 *   word 0: TAG_MAGIC
 *   word 1: the page's own physical address
 *   word 2: version (bumped on every rewrite)
 *   word 3..511: tag_word(seed(addr, version), i)
 *
 * A page copied to the wrong place, a stale version, a torn copy or a zero
 * page all fail tag_verify, which prints verify=FAIL and powers off with
 * EXIT_VERIFY. The expected version must come from the caller's own
 * records, never from the page.
 */
#ifndef TAG_H
#define TAG_H
#include "guest.h"

#define TAG_MAGIC 0x46455252595f5047UL  /* "GP_YRREF" little-endian */

void tag_fill(u64 addr, u64 version);
void tag_verify(u64 addr, u64 version, const char *who);
void tag_fill_block(u64 pfn, u32 order, u64 version);
void tag_verify_block(u64 pfn, u32 order, u64 version, const char *who);

#endif
