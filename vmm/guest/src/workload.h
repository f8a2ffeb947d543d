/*
 * workload.h — the workloads chosen with workload=<a>,<b>,... (README.md):
 * idle, hog:<MiB>, dirty:<MiB>@<MiB/s>, kv:<MiB>[@<ops/s>], crash:ud|pf|verify.
 * Each keeps its own record of what it wrote, so verification never trusts
 * the data pages themselves.
 */
#ifndef WORKLOAD_H
#define WORKLOAD_H
#include "guest.h"

/* workload.c: parse, then drive them all from the main loop. */
void workloads_parse(const char *spec, u64 n);
void workloads_setup(void);
int workloads_step(u64 now);
void workloads_verify(void);
u64 workloads_live(void);
void workloads_report(void);

/* wl_hog.c */
void hog_run(u64 mib);

/* wl_dirty.c */
void dirty_setup(u64 mib, u64 mib_per_s);
int dirty_step(u64 now);
void dirty_verify(void);
u64 dirty_live(void);
void dirty_report(void);

/* wl_kv.c */
void kv_setup(u64 mib, u64 ops_per_s);
int kv_step(u64 now);
void kv_verify(void);
u64 kv_live(void);
void kv_report(void);

/* pacer: converts TSC time into a number of operations due at a rate. */
struct pacer {
	u64 rate;       /* operations per second */
	u64 last;       /* TSC of the last call */
	u64 credit;     /* TSC ticks x rate not yet turned into operations */
};

void pacer_start(struct pacer *p, u64 rate, u64 now);
u64 pacer_due(struct pacer *p, u64 now, u64 max);

/* wl_alloc: buddy_alloc for workloads; when it fails and the balloon holds
 * pages with DEFLATE_ON_OOM negotiated, deflate some and try once more. */
u64 wl_alloc(u32 order);

/* meta_alloc: zeroed workload bookkeeping of at most 4 MiB (not live data). */
void *meta_alloc(u64 bytes, u32 *order);

#endif
