/*
 * workload.c — parse workload=..., run hog first, set up the others, and
 * drive steps and verification from the main loop. Also the TSC pacer and
 * meta_alloc shared by the workloads.
 *
 * Each kind runs at most once (a repeated kind is a setup error). The
 * crash kinds act on the first step after "ready": crash:ud and crash:pf
 * fault, crash:verify flips one bit of a live tagged page so that the next
 * tick reports verify=FAIL, crash:hint takes a 4 MiB block as if for a free
 * page hint and then writes to it, which must trip "balloon: ASSERT".
 */
#include "workload.h"
#include "balloon.h"
#include "buddy.h"
#include "cmdline.h"
#include "tag.h"

static struct {
	int hog, dirty, kv;
	char crash;         /* 0, 'u' (ud2), 'p' (page fault), 'v' (corrupt), 'h' (hinted) */
	u64 canary;         /* crash:verify's tagged page, 0 if none */
	int crash_armed;
	u64 hog_mib, dirty_mib, dirty_rate, kv_mib, kv_rate;
} cfg;

#define KV_DEFAULT_OPS 2000

static u64 num(struct str s, const char *what)
{
	u64 v;
	if (parse_u64(s.p, s.n, &v) != 0)
		fatal("workload %s: bad number", what);
	return v;
}

static void once(int *seen, const char *what)
{
	if (*seen)
		fatal("workload %s given twice", what);
	*seen = 1;
}

void workloads_parse(const char *spec, u64 n)
{
	struct str rest = {spec, n}, item;
	while (rest.n > 0) {
		str_split(&rest, ',', &item);
		struct str name, arg = item, a, b;
		int has_arg = str_split(&arg, ':', &name);
		if (str_eq(name.p, name.n, "idle") && !has_arg) {
			continue;
		} else if (str_eq(name.p, name.n, "hog") && has_arg) {
			once(&cfg.hog, "hog");
			cfg.hog_mib = num(arg, "hog");
		} else if (str_eq(name.p, name.n, "dirty") && has_arg) {
			once(&cfg.dirty, "dirty");
			int has_rate = str_split(&arg, '@', &a);
			cfg.dirty_mib = num(a, "dirty");
			cfg.dirty_rate = has_rate ? num(arg, "dirty rate") : cfg.dirty_mib;
		} else if (str_eq(name.p, name.n, "kv") && has_arg) {
			once(&cfg.kv, "kv");
			int has_rate = str_split(&arg, '@', &b);
			cfg.kv_mib = num(b, "kv");
			cfg.kv_rate = has_rate ? num(arg, "kv rate") : KV_DEFAULT_OPS;
		} else if (str_eq(name.p, name.n, "crash") && str_eq(arg.p, arg.n, "ud")) {
			cfg.crash = 'u';
		} else if (str_eq(name.p, name.n, "crash") && str_eq(arg.p, arg.n, "pf")) {
			cfg.crash = 'p';
		} else if (str_eq(name.p, name.n, "crash") && str_eq(arg.p, arg.n, "verify")) {
			cfg.crash = 'v';
		} else if (str_eq(name.p, name.n, "crash") && str_eq(arg.p, arg.n, "hint")) {
			cfg.crash = 'h';
		} else {
			fatal("unknown workload item (want idle, hog:<MiB>, dirty:<MiB>@<MiB/s>, "
			      "kv:<MiB>[@<ops/s>], crash:ud, crash:pf, crash:verify, crash:hint)");
		}
	}
}

void workloads_setup(void)
{
	if (cfg.hog)
		hog_run(cfg.hog_mib);
	if (cfg.dirty)
		dirty_setup(cfg.dirty_mib, cfg.dirty_rate);
	if (cfg.kv)
		kv_setup(cfg.kv_mib, cfg.kv_rate);
	if (cfg.crash == 'v') {
		u64 pfn = wl_alloc(0);
		if (pfn == BUDDY_NONE)
			fatal("crash:verify: no page");
		cfg.canary = pfn << PAGE_SHIFT;
		tag_fill(cfg.canary, 1);
	}
}

/* workloads_step does what is due and reports whether it did anything. */
int workloads_step(u64 now)
{
	int busy = 0;
	if (cfg.crash == 'u') {
		kprintf("crash: executing ud2\n");
		__asm__ volatile("ud2");
	}
	if (cfg.crash == 'p') {
		kprintf("crash: writing to unmapped address 0x7dead000bad0\n");
		*(volatile u64 *)0x7dead000bad0UL = 1;
	}
	if (cfg.crash == 'v' && cfg.crash_armed == 0) {
		kprintf("crash: corrupting word 100 of live page 0x%lx\n", cfg.canary);
		((volatile u64 *)cfg.canary)[100] ^= 1;
		cfg.crash_armed = 1;
	}
	if (cfg.crash == 'h') {
		u64 pfn = buddy_hint_take();
		if (pfn == BUDDY_NONE)
			fatal("crash:hint: no free 4 MiB block");
		kprintf("crash: writing to hinted block 0x%lx\n", pfn << PAGE_SHIFT);
		tag_fill(pfn << PAGE_SHIFT, 1);
	}
	if (cfg.dirty)
		busy |= dirty_step(now);
	if (cfg.kv)
		busy |= kv_step(now);
	return busy;
}

void workloads_verify(void)
{
	if (cfg.canary)
		tag_verify(cfg.canary, 1, "crash:verify");
	if (cfg.dirty)
		dirty_verify();
	if (cfg.kv)
		kv_verify();
}

u64 workloads_live(void)
{
	return (cfg.dirty ? dirty_live() : 0) + (cfg.kv ? kv_live() : 0) + (cfg.canary ? 1 : 0);
}

/* workloads_report prints the counters of the running workloads. */
void workloads_report(void)
{
	if (cfg.dirty)
		dirty_report();
	if (cfg.kv)
		kv_report();
}

void pacer_start(struct pacer *p, u64 rate, u64 now)
{
	p->rate = rate;
	p->last = now;
	p->credit = 0;
}

/* pacer_due returns how many operations are due now (at most max; a
 * backlog of more than a second is dropped rather than burst). */
u64 pacer_due(struct pacer *p, u64 now, u64 max)
{
	u64 hz = tsc_hz();
	u64 dt = MIN(now - p->last, hz);
	p->last = now;
	p->credit += dt * p->rate;
	u64 due = p->credit / hz;
	if (due > p->rate)
		due = p->rate, p->credit = due * hz;
	due = MIN(due, max);
	p->credit -= due * hz;
	return due;
}

u64 wl_alloc(u32 order)
{
	u64 pfn = buddy_alloc(order);
	if (pfn == BUDDY_NONE && balloon_oom(1UL << order) > 0)
		pfn = buddy_alloc(order);
	return pfn;
}

void *meta_alloc(u64 bytes, u32 *order)
{
	*order = order_for_pages(ALIGN_UP(bytes, PAGE_SIZE) >> PAGE_SHIFT);
	u64 pfn = wl_alloc(*order);
	if (pfn == BUDDY_NONE)
		fatal("out of memory for %lu bytes of workload bookkeeping", bytes);
	return memset(pfn_to_ptr(pfn), 0, bytes);
}
