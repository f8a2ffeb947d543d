/*
 * virtqueue.c — polled split virtqueues over virtio-mmio (layout and
 * ordering rules in virtqueue.h).
 *
 * It cannot: use indirect descriptors or event indices, free its rings
 * (they stay allocated for the guest's life), or survive a device that
 * returns an id it never made available (that is fatal).
 */
#include "virtqueue.h"
#include "buddy.h"

int vq_setup(struct virtq *vq, struct virtio_dev *dev, u32 index, u32 want)
{
	u32 max = virtio_queue_max(dev, index);
	if (max == 0) {
		kprintf("virtio: queue %u is not available\n", index);
		return -1;
	}
	u32 num = 1;
	while (num * 2 <= MIN(max, want) && num * 2 <= 32768)
		num *= 2;
	u64 ring_bytes = ALIGN_UP(16UL * num + 6 + 2UL * num, PAGE_SIZE);
	u64 used_bytes = ALIGN_UP(6 + 8UL * num, PAGE_SIZE);
	u64 book_bytes = ALIGN_UP(10UL * num, PAGE_SIZE);
	u64 pages = (ring_bytes + used_bytes + book_bytes) >> PAGE_SHIFT;
	u32 order = order_for_pages(pages);
	u64 pfn = buddy_alloc(order);
	if (pfn == BUDDY_NONE) {
		kprintf("virtio: no memory for queue %u (%lu pages)\n", index, pages);
		return -1;
	}
	u8 *mem = memset(pfn_to_ptr(pfn), 0, pages << PAGE_SHIFT);

	*vq = (struct virtq){
		.dev = dev,
		.index = index,
		.num = num,
		.desc = (volatile struct vring_desc *)mem,
		.avail = (volatile struct vring_avail *)(mem + 16UL * num),
		.used = (volatile struct vring_used *)(mem + ring_bytes),
		.token = (u64 *)(mem + ring_bytes + used_bytes),
		.chain = (u16 *)(mem + ring_bytes + used_bytes + 8UL * num),
		.num_free = num,
	};
	for (u32 i = 0; i + 1 < num; i++)
		vq->desc[i].next = i + 1;
	vq->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;  /* we poll anyway */
	if (virtio_queue_register(dev, vq) != 0) {
		kprintf("virtio: queue %u refused its rings\n", index);
		return -1;
	}
	return 0;
}

int vq_add(struct virtq *vq, const struct vq_sg *sg, u32 nout, u32 nin, u64 token)
{
	u32 n = nout + nin;
	if (n == 0 || n > vq->num_free || token == 0)
		return -1;
	u16 head = vq->free_head, i = head, last = head;
	for (u32 k = 0; k < n; k++) {
		volatile struct vring_desc *d = &vq->desc[i];
		d->addr = sg[k].addr;
		d->len = sg[k].len;
		d->flags = (k + 1 < n ? VRING_DESC_F_NEXT : 0) | (k >= nout ? VRING_DESC_F_WRITE : 0);
		last = i;
		i = d->next;
	}
	vq->free_head = vq->desc[last].next;
	vq->num_free -= n;
	vq->token[head] = token;
	vq->chain[head] = n;
	vq->avail->ring[vq->avail_idx & (vq->num - 1)] = head;
	barrier();              /* descriptors and ring entry before idx */
	vq->avail->idx = ++vq->avail_idx;
	vq->adds++;
	return 0;
}

void vq_kick(struct virtq *vq)
{
	mb();                   /* avail idx visible before reading flags */
	if (!(vq->used->flags & VRING_USED_F_NO_NOTIFY)) {
		vm_write(vq->dev, VM_QUEUE_NOTIFY, vq->index);
		vq->kicks++;
	}
}

u64 vq_get_used(struct virtq *vq, u32 *len)
{
	if (vq->last_used == vq->used->idx)
		return 0;
	barrier();              /* idx before the entry it covers */
	volatile struct vring_used_elem *e = &vq->used->ring[vq->last_used & (vq->num - 1)];
	u32 id = e->id, l = e->len;
	if (id >= vq->num || vq->token[id] == 0)
		fatal("virtio: queue %u: device used unknown descriptor %u", vq->index, id);
	vq->last_used++;
	u64 token = vq->token[id];
	u16 last = id;
	for (u32 k = 1; k < vq->chain[id]; k++)
		last = vq->desc[last].next;
	vq->desc[last].next = vq->free_head;
	vq->free_head = id;
	vq->num_free += vq->chain[id];
	vq->token[id] = 0;
	if (len)
		*len = l;
	return token;
}
