/*
 * virtqueue.h — polled split virtqueues (virtio spec split-ring.tex), the
 * driver side. Rings live in pages taken from the buddy allocator for good:
 *
 *   +0                 descriptor table   16 x num    (align 16)
 *   +16 x num          available ring     6 + 2 x num (align 2)
 *   next 4 KiB page    used ring          6 + 8 x num (align 4)
 *   after it           driver bookkeeping: token (u64) and chain length
 *                      (u16) per head descriptor
 *
 * Free descriptors form a list through desc.next, as in Linux. A buffer is
 * a chain of device-readable (out) then device-writable (in) descriptors;
 * each chain carries a non-zero token that comes back with its used entry.
 * No indirect descriptors, no event index, no interrupts: the driver kicks
 * through QueueNotify unless the device set VRING_USED_F_NO_NOTIFY, and
 * reaps the used ring by polling.
 *
 * Ordering: x86 keeps stores in order and loads in order, so a compiler
 * barrier between "fill descriptors" and "publish avail idx" (and between
 * "read used idx" and "read used entry") is enough; publishing avail idx
 * before reading used->flags for the kick decision needs a full fence.
 */
#ifndef VIRTQUEUE_H
#define VIRTQUEUE_H
#include "guest.h"
#include "virtio_mmio.h"

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct vring_avail {
	u16 flags;
	u16 idx;
	u16 ring[];
};

struct vring_used_elem {
	u32 id;
	u32 len;
};

struct vring_used {
	u16 flags;
	u16 idx;
	struct vring_used_elem ring[];
};

struct virtq {
	struct virtio_dev *dev;
	u32 index;              /* queue number on the device */
	u32 num;                /* ring size, a power of 2 */
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	u64 *token;             /* per head: the caller's token, 0 = free */
	u16 *chain;             /* per head: descriptors in the chain */
	u16 free_head;
	u32 num_free;
	u16 avail_idx;          /* shadow of avail->idx */
	u16 last_used;          /* next used entry to reap */
	u64 kicks, adds;
};

/* One piece of a buffer: guest-physical address and length. */
struct vq_sg {
	u64 addr;
	u32 len;
};

#define barrier() __asm__ volatile("" ::: "memory")
#define mb() __asm__ volatile("mfence" ::: "memory")

/* vq_setup sizes queue index of dev to min(QueueNumMax, want) (rounded
 * down to a power of 2), allocates its rings and registers them. Returns
 * 0, or -1 with a line printed. */
int vq_setup(struct virtq *vq, struct virtio_dev *dev, u32 index, u32 want);

/* vq_add publishes one chain of nout readable then nin writable pieces.
 * Returns 0, or -1 when fewer than nout + nin descriptors are free. The
 * device sees it only after vq_kick (or when it polls). */
int vq_add(struct virtq *vq, const struct vq_sg *sg, u32 nout, u32 nin, u64 token);
void vq_kick(struct virtq *vq);

/* vq_get_used reaps one used chain: returns its token (and the length the
 * device wrote in *len if len is not NULL), or 0 when none is pending. */
u64 vq_get_used(struct virtq *vq, u32 *len);

static inline u32 vq_num_free(const struct virtq *vq) { return vq->num_free; }
static inline int vq_busy(const struct virtq *vq) { return vq->num_free != vq->num; }

#endif
