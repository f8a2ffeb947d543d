/*
 * balloon_hint.c — free page hinting (VIRTIO_BALLOON_F_FREE_PAGE_HINT) and
 * free page reporting (VIRTIO_BALLOON_F_REPORTING), as Linux does them.
 *
 * Hinting, one round per new command id (>= 2, not the active one):
 *
 *   out [id] -> in [4 MiB] -> in [4 MiB] -> ... -> out [STOP]
 *
 * The 4 MiB blocks are free order-10 blocks taken out of the allocator
 * (buddy_hint_take marks them hinted) while more than one descriptor is
 * free (one stays for STOP), until none is left or the command id changes
 * (STOP, DONE or a newer id; read only after a config-change interrupt,
 * because QEMU reports 0 while a round is running). Blocks stay held,
 * across rounds, until the id is DONE; then all go back at once.
 *
 * Reporting: every REPORT_PERIOD_US, free blocks of order 10 then 9 that
 * were not reported since they were last allocated leave the allocator in
 * batches of up to 32, go to reporting_vq as one chain of device-writable
 * buffers, and come back marked reported once the device used the chain.
 * The device may discard them, so their contents are undefined afterwards
 * (free pages are never read before being written, so that is fine).
 *
 * It cannot: give hinted blocks back under memory pressure before DONE
 * (Linux's shrinker does; here a write to a hinted block is a bug that
 * buddy.c turns into "balloon: ASSERT").
 */
#include "balloon.h"
#include "buddy.h"

#define HINT_BYTES (PAGE_SIZE << BUDDY_MAX_ORDER)
#define HINT_CHECK_EVERY 16             /* blocks between config checks */
#define HINT_KICK_EVERY 16              /* blocks between kicks: each kick is a VM exit */
#define HINT_STALL_US 1000000UL         /* ring full and no progress: end the round */
#define REPORT_PERIOD_US 2000000UL
#define TOKEN_CMD 2
#define TOKEN_REPORT 3
#define CMD_SLOTS 16                    /* cmd_bufs[0] = STOP, 1..15 rotate */

static u32 done_handled;

void balloon_hint_init(void)
{
	balloon.cmd_received = BALLOON_CMD_ID_STOP;
	balloon.cmd_active = BALLOON_CMD_ID_STOP;
	balloon.cmd_bufs[0] = BALLOON_CMD_ID_STOP;
}

static int send_cmd(u32 id)
{
	u32 *buf = &balloon.cmd_bufs[0];
	if (id != BALLOON_CMD_ID_STOP) {
		buf = &balloon.cmd_bufs[1 + balloon.cmd_slot++ % (CMD_SLOTS - 1)];
		*buf = id;
	}
	struct vq_sg sg = {(u64)buf, 4};
	if (vq_add(&balloon.hint_vq, &sg, 1, 0, TOKEN_CMD) != 0)
		return -1;
	vq_kick(&balloon.hint_vq);
	return 0;
}

static void reap(void)
{
	while (vq_get_used(&balloon.hint_vq, NULL))
		;
}

/* hint_round hints blocks for command id and returns how many. */
static u64 hint_round(u32 id)
{
	struct virtq *vq = &balloon.hint_vq;
	u64 blocks = 0, stall = 0;
	reap();
	balloon.cmd_active = id;
	if (send_cmd(id) != 0) {
		kprintf("balloon: hint cmd=0x%x: free_page_vq full, round skipped\n", id);
		return 0;
	}
	for (;;) {
		reap();
		if (blocks % HINT_CHECK_EVERY == 0 || stall) {
			balloon_check_config();
			if (balloon.cmd_received != id)
				break;
		}
		if (vq_num_free(vq) > 1) {
			u64 pfn = buddy_hint_take();
			if (pfn == BUDDY_NONE)
				break;
			struct vq_sg sg = {pfn << PAGE_SHIFT, HINT_BYTES};
			vq_add(vq, &sg, 0, 1, pfn << 1 | 1);
			blocks++;
			/* Linux kicks per block; batching saves exits, and the
			 * device sees every block by the final kick. */
			if (blocks % HINT_KICK_EVERY == 0 || vq_num_free(vq) <= 2)
				vq_kick(vq);
			stall = 0;
			continue;
		}
		if (!stall) {
			vq_kick(vq);    /* the ring is full: make sure the device knows */
			stall = rdtsc();
		}
		else if (rdtsc() - stall > HINT_STALL_US * tsc_khz / 1000)
			break;
		cpu_relax();
	}
	if (send_cmd(BALLOON_CMD_ID_STOP) != 0)  /* cannot happen: one kept free */
		kprintf("balloon: hint cmd=0x%x: no room for STOP\n", id);
	return blocks;
}

void balloon_hint_poll(void)
{
	reap();
	u32 id = balloon.cmd_received;
	if (id == BALLOON_CMD_ID_DONE) {
		if (done_handled)
			return;
		done_handled = 1;
		u64 pages = buddy_hint_release();
		kprintf("balloon: done released=%lu\n", pages >> 8);
		return;
	}
	done_handled = 0;
	if (id == BALLOON_CMD_ID_STOP || id == balloon.cmd_active)
		return;
	u64 t0 = rdtsc();
	u64 blocks = hint_round(id);
	balloon.hint_rounds++;
	kprintf("balloon: hint cmd=0x%x blocks=%lu MiB=%lu held=%lu us=%lu\n", id, blocks,
		blocks * (HINT_BYTES >> 20), buddy_hinted_pages() >> 8, tsc_to_us(rdtsc() - t0));
}

/* ---- Free page reporting. ----------------------------------------------- */

static u32 report_gather(struct vq_sg *sg, u32 max)
{
	u32 n = 0;
	for (u32 order = BUDDY_MAX_ORDER + 1; order-- > BUDDY_REPORT_ORDER;) {
		while (n < max) {
			u64 pfn = buddy_report_take(order);
			if (pfn == BUDDY_NONE)
				break;
			balloon.report_batch[n] = pfn | (u64)order << 56;
			sg[n].addr = pfn << PAGE_SHIFT;
			sg[n].len = PAGE_SIZE << order;
			n++;
		}
	}
	return n;
}

static void report_finish(void)
{
	for (u32 i = 0; i < balloon.report_n; i++) {
		u64 e = balloon.report_batch[i];
		u32 order = e >> 56;
		buddy_report_put(e & ((1UL << 56) - 1), order);
		balloon.report_pages += 1UL << order;
	}
	balloon.report_n = 0;
}

void balloon_report_poll(u64 now)
{
	struct virtq *vq = &balloon.report_vq;
	if (balloon.report_n) {
		if (!vq_get_used(vq, NULL))
			return;
		report_finish();
	} else if (now < balloon.report_next) {
		return;
	}
	struct vq_sg sg[BALLOON_REPORT_CAPACITY];
	u32 n = report_gather(sg, MIN(BALLOON_REPORT_CAPACITY, vq->num));
	if (n == 0) {
		if (balloon.report_pages)
			kprintf("balloon: report MiB=%lu\n", balloon.report_pages >> 8);
		balloon.report_pages = 0;
		balloon.report_next = now + REPORT_PERIOD_US * tsc_khz / 1000;
		return;
	}
	balloon.report_n = n;
	if (vq_add(vq, sg, 0, n, TOKEN_REPORT) != 0)
		fatal("balloon: reporting_vq refused %u buffers", n);
	vq_kick(vq);
}
