/*
 * balloon.h — the virtio-balloon driver (device ID 5), polled from the main
 * loop, behaving like Linux's drivers/virtio/virtio_balloon.c where
 * migration cares: inflate/deflate towards num_pages, stats, free page
 * hinting (blocks held until DONE) and free page reporting.
 *
 *   balloon.c       probe, config changes, inflate/deflate, stats, OOM
 *   balloon_hint.c  free page hinting and free page reporting
 *
 * Queue numbers are compacted over the negotiated features like Linux:
 * inflate 0, deflate 1, then stats, free_page, reporting for those
 * negotiated only.
 */
#ifndef BALLOON_H
#define BALLOON_H
#include "guest.h"
#include "virtio_mmio.h"
#include "virtqueue.h"

#define VIRTIO_ID_BALLOON 5

#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON 4
#define VIRTIO_BALLOON_F_REPORTING 5

/* Config space (le32 each). */
#define BALLOON_CFG_NUM_PAGES 0
#define BALLOON_CFG_ACTUAL 4
#define BALLOON_CFG_CMD_ID 8

#define BALLOON_CMD_ID_STOP 0
#define BALLOON_CMD_ID_DONE 1

#define BALLOON_PFNS_MAX 256            /* PFNs per inflate/deflate buffer, as Linux */
#define BALLOON_REPORT_CAPACITY 32      /* blocks per report, PAGE_REPORTING_CAPACITY */

struct balloon_pages;

struct balloon {
	struct virtio_dev dev;
	struct virtq inflate_vq, deflate_vq, stats_vq, hint_vq, report_vq;
	int stats, oom, hint, report;           /* negotiated */
	u32 target;                             /* num_pages, last read */
	u32 actual;                             /* pages in the balloon */
	int resize;                             /* config changed: move towards target */
	u64 resize_after;                       /* TSC: out of puff, retry then */
	u32 *pfns;                              /* one PFN array, one request at a time */
	struct virtq *busy_vq;                  /* inflate or deflate buffer in flight */
	u32 busy_n;                             /* its PFNs */
	u64 busy_kick;                          /* TSC of its last kick */
	u64 *stack;                             /* top page of the inflated-pages stack */
	u32 stack_n;                            /* entries in the top page */
	struct balloon_stat *stat_buf;
	u64 stat_updates;
	/* free page hinting */
	u32 cmd_received, cmd_active;
	u32 *cmd_bufs;                          /* [0] STOP, [1..] ids, rotating */
	u32 cmd_slot;
	u64 hint_rounds;
	/* free page reporting */
	u64 report_next;                        /* TSC of the next pass */
	u64 report_batch[BALLOON_REPORT_CAPACITY];      /* pfn | order << 56 */
	u32 report_n;                           /* blocks in flight, 0 = idle */
	u64 report_pages;                       /* reported in this pass */
};

extern struct balloon balloon;
extern int balloon_present;

/* balloon_probe drives the first virtio-mmio balloon on the command line;
 * other devices get a line and are left alone. */
void balloon_probe(const char *cmdline);

/* balloon_poll does what the device asked for since the last call; cheap
 * when nothing happened (one InterruptStatus read). balloon_maybe_poll
 * calls it when BALLOON_POLL_US passed, from loops that run long. */
#define BALLOON_POLL_US 1000
void balloon_poll(u64 now);
extern u64 balloon_next_poll, balloon_poll_us;
static inline void balloon_maybe_poll(void)
{
	if (balloon_present) {
		u64 now = rdtsc();
		if (now >= balloon_next_poll)
			balloon_poll(now);
	}
}

/* balloon_oom gives pages back after a failed allocation when
 * DEFLATE_ON_OOM was negotiated; returns how many. */
u64 balloon_oom(u64 pages);

/* balloon_hint.c, called from balloon_poll. */
void balloon_hint_init(void);
void balloon_hint_poll(void);
void balloon_report_poll(u64 now);

/* balloon.c helpers shared with balloon_hint.c */
u32 balloon_check_config(void);         /* poll ISR; on a config change re-read it */

#endif
