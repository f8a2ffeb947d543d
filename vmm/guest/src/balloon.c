/*
 * balloon.c — virtio-balloon: probe and feature negotiation, config-change
 * polling, inflate/deflate towards num_pages, the stats queue and deflate
 * on OOM. Hinting and reporting are in balloon_hint.c.
 *
 * Like Linux: the config (num_pages, free_page_hint_cmd_id) is re-read only
 * after InterruptStatus shows a config change; inflate/deflate send at most
 * 256 le32 PFNs per buffer, one buffer at a time, and write `actual` once
 * the device used it; deflated pages go back to the allocator only then
 * (so MUST_TELL_HOST is honoured and is accepted when offered). Waiting is
 * bounded per poll (2 ms), so a slow device delays the balloon, never the
 * workloads. PAGE_POISON is never accepted: this guest does
 * not poison free pages. Inflated pages come from the buddy allocator as
 * blocks of up to 256 pages and are remembered on a stack of pages:
 *
 *   stack page: [0] previous stack page (physical, 0 = none)
 *               [1..511] pfn | count << 40   (a run of inflated pages)
 *
 * It cannot: take interrupts, drive more than one balloon, or give
 * inflated pages back before the device acknowledged the deflate buffer.
 */
#include "balloon.h"
#include "buddy.h"
#include "cmdline.h"
#include "mem.h"

struct balloon_stat {
	u16 tag;
	u64 val;
} __attribute__((packed));

enum { S_SWAP_IN, S_SWAP_OUT, S_MAJFLT, S_MINFLT, S_MEMFREE, S_MEMTOT, S_AVAIL, S_CACHES, S_NR };

#define STACK_SLOTS (PAGE_SIZE / 8 - 1)
#define RUN_SHIFT 40
#define INFLATE_RESERVE 256             /* pages left free, without DEFLATE_ON_OOM */
#define OOM_WAIT_US 100000UL            /* for the device to use a deflate on OOM */
#define RESIZE_BUDGET_US 2000           /* per poll */
#define PUFF_RETRY_US 200000UL          /* Linux: msleep(200) when out of puff */

struct balloon balloon;
int balloon_present;
u64 balloon_next_poll;
u64 balloon_poll_us = BALLOON_POLL_US;
static int polling;
static int puff_said;

static u64 us_to_tsc(u64 us) { return us * tsc_khz / 1000; }

static void write_actual(void)
{
	virtio_config_write32(&balloon.dev, BALLOON_CFG_ACTUAL, balloon.actual);
}

u32 balloon_check_config(void)
{
	u32 isr = virtio_poll_isr(&balloon.dev);
	if (isr & VIRTIO_INT_CONFIG) {
		balloon.target = virtio_config_read32(&balloon.dev, BALLOON_CFG_NUM_PAGES);
		if (balloon.hint)
			balloon.cmd_received = virtio_config_read32(&balloon.dev, BALLOON_CFG_CMD_ID);
		balloon.resize = balloon.target != balloon.actual;
		balloon.resize_after = 0;
		puff_said = 0;
	}
	return isr;
}

/* ---- One inflate or deflate buffer in flight at a time. ----------------- */

/* submit sends n PFNs from balloon.pfns on vq; complete() finishes it. */
static void submit(struct virtq *vq, u32 n)
{
	struct vq_sg sg = {(u64)balloon.pfns, n * 4};
	if (vq_add(vq, &sg, 1, 0, 1) != 0)
		fatal("balloon: queue %u full", vq->index);
	vq_kick(vq);
	balloon.busy_vq = vq;
	balloon.busy_n = n;
	balloon.busy_kick = rdtsc();
}

/* complete reports whether nothing is in flight (any finished buffer is
 * accounted first: actual updated, deflated pages freed). A buffer unused
 * after 100 ms is kicked again: a kick may be lost across migration. */
static int complete(void)
{
	struct virtq *vq = balloon.busy_vq;
	if (!vq)
		return 1;
	u64 t = vq_get_used(vq, NULL);
	if (t == 0) {
		u64 now = rdtsc();
		if (now - balloon.busy_kick > us_to_tsc(100000)) {
			vm_write(vq->dev, VM_QUEUE_NOTIFY, vq->index);
			balloon.busy_kick = now;
		}
		return 0;
	}
	if (vq == &balloon.inflate_vq) {
		balloon.actual += balloon.busy_n;
	} else {
		for (u32 i = 0; i < balloon.busy_n; i++)
			buddy_free(balloon.pfns[i], 0);
		balloon.actual -= balloon.busy_n;
	}
	balloon.busy_vq = NULL;
	write_actual();
	return 1;
}

/* wait_complete spins on complete() until end (TSC). */
static int wait_complete(u64 end)
{
	while (!complete()) {
		if (rdtsc() > end)
			return 0;
		cpu_relax();
	}
	return 1;
}

/* ---- The stack of inflated runs. --------------------------------------- */

static int stack_push(u64 pfn, u64 count)
{
	u64 *top = balloon.stack;
	if (top && balloon.stack_n > 0) {
		u64 *e = &top[balloon.stack_n];
		u64 epfn = *e & ((1UL << RUN_SHIFT) - 1), en = *e >> RUN_SHIFT;
		if (epfn + en == pfn && en + count < (1UL << 20)) {
			*e = epfn | (en + count) << RUN_SHIFT;
			return 0;
		}
	}
	if (!top || balloon.stack_n == STACK_SLOTS) {
		u64 page = buddy_alloc(0);
		if (page == BUDDY_NONE)
			return -1;
		u64 *p = pfn_to_ptr(page);
		p[0] = (u64)top;
		balloon.stack = top = p;
		balloon.stack_n = 0;
	}
	top[++balloon.stack_n] = pfn | count << RUN_SHIFT;
	return 0;
}

/* stack_pop takes up to max pages from the top run into balloon.pfns[at..]
 * and returns how many. */
static u32 stack_pop(u32 at, u32 max)
{
	u64 *top = balloon.stack;
	if (!top)
		return 0;
	u64 *e = &top[balloon.stack_n];
	u64 pfn = *e & ((1UL << RUN_SHIFT) - 1), count = *e >> RUN_SHIFT;
	u32 k = MIN(count, max);
	for (u32 i = 0; i < k; i++)
		balloon.pfns[at + i] = (u32)(pfn + count - k + i);
	*e = pfn | (count - k) << RUN_SHIFT;
	if (count == k && --balloon.stack_n == 0) {
		balloon.stack = (u64 *)top[0];
		balloon.stack_n = balloon.stack ? STACK_SLOTS : 0;
		buddy_free(ptr_to_pfn(top), 0);
	}
	return k;
}

/* ---- Inflate and deflate. ---------------------------------------------- */

static u32 floor_log2(u64 x) { return 63 - __builtin_clzl(x); }

/* inflate_batch takes up to want pages (at most 256) out of the allocator
 * and submits them; returns how many (0: out of puff). */
static u32 inflate_batch(u32 want)
{
	u32 n = 0;
	want = MIN(want, BALLOON_PFNS_MAX);
	u64 reserve = balloon.oom ? 0 : INFLATE_RESERVE;   /* with it, OOM takes pages back */
	while (n < want && buddy_free_pages() > reserve) {
		u32 order = MIN(floor_log2(want - n), 8), o = order + 1;
		u64 pfn = BUDDY_NONE;
		while (pfn == BUDDY_NONE && o-- > 0)
			pfn = buddy_alloc(o);
		if (pfn == BUDDY_NONE)
			break;
		if ((pfn + (1UL << o)) >> 32 || stack_push(pfn, 1UL << o) != 0) {
			buddy_free(pfn, o);   /* PFNs are le32; no room for bookkeeping */
			break;
		}
		for (u64 i = 0; i < (1UL << o); i++)
			balloon.pfns[n++] = (u32)(pfn + i);
	}
	if (n)
		submit(&balloon.inflate_vq, n);
	return n;
}

/* deflate_batch submits up to want (at most 256) inflated pages; they go
 * back to the allocator when the device has used the buffer. */
static u32 deflate_batch(u32 want)
{
	u32 n = 0;
	want = MIN(want, BALLOON_PFNS_MAX);
	while (n < want) {
		u32 k = stack_pop(n, want - n);
		if (k == 0)
			break;
		n += k;
	}
	if (n)
		submit(&balloon.deflate_vq, n);
	return n;
}

/* resize_step moves towards the target for at most RESIZE_BUDGET_US. */
static void resize_step(u64 now)
{
	u64 end = now + us_to_tsc(RESIZE_BUDGET_US);
	while (wait_complete(end) && balloon.resize) {
		if (balloon.target > balloon.actual) {
			if (inflate_batch(balloon.target - balloon.actual) == 0) {
				if (!puff_said++)
					kprintf("balloon: out of puff at actual=%u target=%u free=%lu\n", balloon.actual,
						balloon.target, buddy_free_pages());
				balloon.resize_after = rdtsc() + us_to_tsc(PUFF_RETRY_US);
				return;
			}
		} else if (balloon.target < balloon.actual) {
			deflate_batch(balloon.actual - balloon.target);
		} else {
			balloon.resize = 0;
			kprintf("balloon: actual=%u pages (%u MiB) target=%u free=%lu\n", balloon.actual,
				balloon.actual >> 8, balloon.target, buddy_free_pages());
			return;
		}
	}
}

/* balloon_oom deflates up to 256 pages (Linux: VIRTIO_BALLOON_OOM_NR_PAGES)
 * and waits for the device at most OOM_WAIT_US. */
u64 balloon_oom(u64 pages)
{
	if (!balloon_present || !balloon.oom || polling)
		return 0;
	static u64 events, said_at;
	u64 now = rdtsc(), end = now + us_to_tsc(OOM_WAIT_US);
	if (!wait_complete(end) || balloon.actual == 0)
		return 0;
	u32 n = deflate_batch(MAX(pages, BALLOON_PFNS_MAX));
	if (n == 0 || !wait_complete(end))
		return 0;
	events++;
	if (said_at == 0 || now - said_at > tsc_hz()) {    /* at most a line a second */
		kprintf("balloon: oom: deflated %u pages, actual=%u, oom events=%lu\n", n, balloon.actual, events);
		said_at = now;
	}
	return n;
}

/* ---- Stats. ------------------------------------------------------------- */

static void stats_fill(void)
{
	static const u16 tags[S_NR] = {0, 1, 2, 3, 4, 5, 6, 7};
	u64 vals[S_NR] = {0};
	vals[S_MEMFREE] = buddy_free_pages() << PAGE_SHIFT;
	vals[S_MEMTOT] = boot.ram_bytes - ((u64)balloon.actual << PAGE_SHIFT);
	vals[S_AVAIL] = vals[S_MEMFREE];
	for (u32 i = 0; i < S_NR; i++)
		balloon.stat_buf[i] = (struct balloon_stat){tags[i], vals[i]};
}

static void stats_send(void)
{
	struct vq_sg sg = {(u64)balloon.stat_buf, S_NR * sizeof(struct balloon_stat)};
	stats_fill();
	if (vq_add(&balloon.stats_vq, &sg, 1, 0, 1) == 0)
		vq_kick(&balloon.stats_vq);
}

/* ---- Probe and poll. ---------------------------------------------------- */

static int setup_queues(void)
{
	u32 q = 0;
	if (vq_setup(&balloon.inflate_vq, &balloon.dev, q++, 128) || vq_setup(&balloon.deflate_vq, &balloon.dev, q++, 128))
		return -1;
	if (balloon.stats && vq_setup(&balloon.stats_vq, &balloon.dev, q++, 8))
		return -1;
	if (balloon.hint && vq_setup(&balloon.hint_vq, &balloon.dev, q++, 1024))
		return -1;
	if (balloon.hint && balloon.hint_vq.num < 2) {
		kprintf("balloon: free_page_vq has %u entries, need 2\n", balloon.hint_vq.num);
		return -1;
	}
	if (balloon.report && vq_setup(&balloon.report_vq, &balloon.dev, q++, BALLOON_REPORT_CAPACITY))
		return -1;
	return 0;
}

/* put appends s, then the decimal v when v >= 0, to *p. */
static void put(char **p, const char *end, const char *s, s64 v)
{
	char digits[24];
	u32 n = 0;
	while (*s && *p < end)
		*(*p)++ = *s++;
	if (v < 0)
		return;
	do
		digits[n++] = '0' + v % 10;
	while ((v /= 10) > 0);
	while (n > 0 && *p < end)
		*(*p)++ = digits[--n];
}

static void print_probe(void)
{
	static const char *const names[] = {"inflate:", "deflate:", "stats:", "free_page:", "reporting:"};
	const struct virtq *vqs[] = {&balloon.inflate_vq, &balloon.deflate_vq, &balloon.stats_vq, &balloon.hint_vq,
				     &balloon.report_vq};
	int on[] = {1, 1, balloon.stats, balloon.hint, balloon.report};
	char q[160], *p = q, *end = q + sizeof(q) - 1;
	for (u32 i = 0; i < 5; i++) {
		if (!on[i])
			continue;
		put(&p, end, p == q ? "" : ",", -1);
		put(&p, end, names[i], vqs[i]->index);
		put(&p, end, "/", vqs[i]->num);
	}
	*p = 0;
	kprintf("virtio: balloon at 0x%lx irq %u offered=0x%lx features=0x%lx queues=%s\n", (u64)balloon.dev.base,
		balloon.dev.irq, balloon.dev.offered, balloon.dev.features, q);
}

static void balloon_start(const struct virtio_dev *d)
{
	balloon.dev = *d;
	u64 wanted = 1UL << VIRTIO_BALLOON_F_MUST_TELL_HOST | 1UL << VIRTIO_BALLOON_F_STATS_VQ |
		     1UL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM | 1UL << VIRTIO_BALLOON_F_FREE_PAGE_HINT |
		     1UL << VIRTIO_BALLOON_F_REPORTING;
	if (virtio_negotiate(&balloon.dev, wanted, 0) != 0)
		return;
	balloon.stats = virtio_has(&balloon.dev, VIRTIO_BALLOON_F_STATS_VQ);
	balloon.oom = virtio_has(&balloon.dev, VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	balloon.hint = virtio_has(&balloon.dev, VIRTIO_BALLOON_F_FREE_PAGE_HINT);
	balloon.report = virtio_has(&balloon.dev, VIRTIO_BALLOON_F_REPORTING);
	u64 page = buddy_alloc(0);
	if (page == BUDDY_NONE || setup_queues() != 0) {
		kprintf("balloon: setup failed, device left alone\n");
		virtio_fail(&balloon.dev);
		return;
	}
	u8 *buf = memset(pfn_to_ptr(page), 0, PAGE_SIZE);
	balloon.pfns = (u32 *)buf;                                      /* 1 KiB */
	balloon.stat_buf = (struct balloon_stat *)(buf + 1024);         /* 80 bytes */
	balloon.cmd_bufs = (u32 *)(buf + 2048);                         /* 16 x 4 bytes */
	balloon_hint_init();
	virtio_driver_ok(&balloon.dev);
	balloon_present = 1;
	print_probe();
	if (balloon.stats)
		stats_send();
	balloon.target = virtio_config_read32(&balloon.dev, BALLOON_CFG_NUM_PAGES);
	balloon.resize = balloon.target != 0;
	balloon.report_next = rdtsc() + us_to_tsc(2000000);
}

void balloon_probe(const char *cmdline)
{
	struct virtio_mmio_dev w[16];
	if (cmdline_u64(cmdline, "balloon_poll_us", &balloon_poll_us) == -2 || balloon_poll_us == 0)
		fatal("balloon_poll_us= wants a positive number of microseconds");
	u32 n = virtio_mmio_parse(cmdline, w, 16);
	for (u32 i = 0; i < n; i++) {
		struct virtio_dev d = {0};
		u32 id = virtio_mmio_probe(&d, &w[i]);
		if (id == 0)
			continue;
		if (id != VIRTIO_ID_BALLOON || balloon_present) {
			kprintf("virtio: device id %u at 0x%lx irq %u: no driver, ignored\n", id, w[i].base, w[i].irq);
			continue;
		}
		balloon_start(&d);
	}
}

void balloon_poll(u64 now)
{
	balloon_next_poll = now + us_to_tsc(balloon_poll_us);
	if (!balloon_present || polling)
		return;
	polling = 1;
	balloon_check_config();
	if (balloon.stats && vq_get_used(&balloon.stats_vq, NULL)) {
		balloon.stat_updates++;
		stats_send();
	}
	if (balloon.hint)
		balloon_hint_poll();
	if ((balloon.resize && now >= balloon.resize_after) || balloon.busy_vq)
		resize_step(now);
	if (balloon.report)
		balloon_report_poll(now);
	polling = 0;
}
