/*
 * virtio_mmio.c — the virtio-mmio transport, version 2 only: probe a
 * window from the command line, the status/feature handshake, queue
 * registration, polled InterruptStatus and config-space access.
 *
 * It cannot: drive legacy (version 1) devices, use shared memory regions,
 * reset single queues, or take interrupts (InterruptStatus is polled and
 * acknowledged like Linux's vm_interrupt does).
 */
#include "virtio_mmio.h"
#include "virtqueue.h"
#include "mem.h"

u32 virtio_mmio_probe(struct virtio_dev *d, const struct virtio_mmio_dev *w)
{
	if (w->size < VM_CONFIG || w->base + w->size > boot.map_limit || (w->base & 3)) {
		kprintf("virtio: 0x%lx size %lu: window not usable, ignored\n", w->base, w->size);
		return 0;
	}
	d->base = (volatile u8 *)w->base;
	d->size = w->size;
	d->irq = w->irq;
	u32 magic = vm_read(d, VM_MAGIC);
	if (magic != VIRTIO_MMIO_MAGIC) {
		kprintf("virtio: 0x%lx: bad magic 0x%x, ignored\n", w->base, magic);
		return 0;
	}
	u32 version = vm_read(d, VM_VERSION);
	if (version != 2) {
		kprintf("virtio: 0x%lx: version %u device ignored (only version 2 is supported; "
			"QEMU: -global virtio-mmio.force-legacy=false)\n", w->base, version);
		return 0;
	}
	d->device_id = vm_read(d, VM_DEVICE_ID);
	return d->device_id;    /* 0: placeholder, ignored silently like Linux */
}

void virtio_fail(struct virtio_dev *d)
{
	vm_write(d, VM_STATUS, vm_read(d, VM_STATUS) | VIRTIO_S_FAILED);
}

static u64 read_features(struct virtio_dev *d)
{
	vm_write(d, VM_DEVICE_FEATURES_SEL, 1);
	u64 hi = vm_read(d, VM_DEVICE_FEATURES);
	vm_write(d, VM_DEVICE_FEATURES_SEL, 0);
	u64 lo = vm_read(d, VM_DEVICE_FEATURES);
	return hi << 32 | lo;
}

int virtio_negotiate(struct virtio_dev *d, u64 wanted, u64 required)
{
	vm_write(d, VM_STATUS, 0);
	for (int i = 0; i < 1000 && vm_read(d, VM_STATUS) != 0; i++)
		cpu_relax();
	vm_write(d, VM_STATUS, VIRTIO_S_ACKNOWLEDGE);
	vm_write(d, VM_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	d->offered = read_features(d);
	required |= 1UL << VIRTIO_F_VERSION_1;
	if ((d->offered & required) != required) {
		kprintf("virtio: 0x%lx: device features 0x%lx lack required 0x%lx, giving up\n",
			(u64)d->base, d->offered, required & ~d->offered);
		virtio_fail(d);
		return -1;
	}
	d->features = d->offered & (wanted | required);
	vm_write(d, VM_DRIVER_FEATURES_SEL, 1);
	vm_write(d, VM_DRIVER_FEATURES, (u32)(d->features >> 32));
	vm_write(d, VM_DRIVER_FEATURES_SEL, 0);
	vm_write(d, VM_DRIVER_FEATURES, (u32)d->features);
	vm_write(d, VM_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(vm_read(d, VM_STATUS) & VIRTIO_S_FEATURES_OK)) {
		kprintf("virtio: 0x%lx: device refused features 0x%lx\n", (u64)d->base, d->features);
		virtio_fail(d);
		return -1;
	}
	return 0;
}

u32 virtio_queue_max(struct virtio_dev *d, u32 idx)
{
	vm_write(d, VM_QUEUE_SEL, idx);
	if (vm_read(d, VM_QUEUE_READY) != 0)
		return 0;
	return vm_read(d, VM_QUEUE_NUM_MAX);
}

int virtio_queue_register(struct virtio_dev *d, const struct virtq *vq)
{
	if (virtio_queue_max(d, vq->index) < vq->num)    /* also selects it */
		return -1;
	u64 desc = (u64)vq->desc, avail = (u64)vq->avail, used = (u64)vq->used;
	vm_write(d, VM_QUEUE_NUM, vq->num);
	vm_write(d, VM_QUEUE_DESC_LOW, (u32)desc);
	vm_write(d, VM_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	vm_write(d, VM_QUEUE_DRIVER_LOW, (u32)avail);
	vm_write(d, VM_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	vm_write(d, VM_QUEUE_DEVICE_LOW, (u32)used);
	vm_write(d, VM_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
	vm_write(d, VM_QUEUE_READY, 1);
	return vm_read(d, VM_QUEUE_READY) == 1 ? 0 : -1;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	vm_write(d, VM_STATUS, vm_read(d, VM_STATUS) | VIRTIO_S_DRIVER_OK);
}

u32 virtio_poll_isr(struct virtio_dev *d)
{
	u32 isr = vm_read(d, VM_INTERRUPT_STATUS);
	if (isr)
		vm_write(d, VM_INTERRUPT_ACK, isr);
	return isr;
}

u32 virtio_config_read32(struct virtio_dev *d, u32 off)
{
	u32 gen, v;
	do {
		gen = vm_read(d, VM_CONFIG_GENERATION);
		v = vm_read(d, VM_CONFIG + off);
	} while (vm_read(d, VM_CONFIG_GENERATION) != gen);
	return v;
}

void virtio_config_write32(struct virtio_dev *d, u32 off, u32 v)
{
	vm_write(d, VM_CONFIG + off, v);
}
