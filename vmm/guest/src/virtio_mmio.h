/*
 * virtio_mmio.h — the virtio-mmio (version 2) transport as the guest's
 * drivers see it: register access, the status/feature handshake, queue
 * registration and polled interrupt status. Register map and handshake
 * follow the virtio spec (transport-mmio.tex) and Linux's virtio_mmio.c.
 *
 *   base + 0x000  MagicValue "virt"   base + 0x060  InterruptStatus
 *   base + 0x004  Version (2)         base + 0x064  InterruptACK
 *   base + 0x008  DeviceID            base + 0x070  Status
 *   base + 0x010  DeviceFeatures      base + 0x080.. queue addresses
 *   base + 0x030  QueueSel ...        base + 0x0fc  ConfigGeneration
 *                                     base + 0x100  device config
 *
 * Every register access is one 32-bit load or store from ring 3 (a VM
 * exit); interrupts stay off, so the driver polls InterruptStatus.
 */
#ifndef VIRTIO_MMIO_H
#define VIRTIO_MMIO_H
#include "guest.h"
#include "cmdline.h"

#define VIRTIO_MMIO_MAGIC 0x74726976    /* "virt" */

enum {
	VM_MAGIC = 0x000,
	VM_VERSION = 0x004,
	VM_DEVICE_ID = 0x008,
	VM_VENDOR_ID = 0x00c,
	VM_DEVICE_FEATURES = 0x010,
	VM_DEVICE_FEATURES_SEL = 0x014,
	VM_DRIVER_FEATURES = 0x020,
	VM_DRIVER_FEATURES_SEL = 0x024,
	VM_QUEUE_SEL = 0x030,
	VM_QUEUE_NUM_MAX = 0x034,
	VM_QUEUE_NUM = 0x038,
	VM_QUEUE_READY = 0x044,
	VM_QUEUE_NOTIFY = 0x050,
	VM_INTERRUPT_STATUS = 0x060,
	VM_INTERRUPT_ACK = 0x064,
	VM_STATUS = 0x070,
	VM_QUEUE_DESC_LOW = 0x080,
	VM_QUEUE_DESC_HIGH = 0x084,
	VM_QUEUE_DRIVER_LOW = 0x090,
	VM_QUEUE_DRIVER_HIGH = 0x094,
	VM_QUEUE_DEVICE_LOW = 0x0a0,
	VM_QUEUE_DEVICE_HIGH = 0x0a4,
	VM_CONFIG_GENERATION = 0x0fc,
	VM_CONFIG = 0x100,
};

/* Device status bits. */
#define VIRTIO_S_ACKNOWLEDGE 1
#define VIRTIO_S_DRIVER 2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_FAILED 0x80

#define VIRTIO_F_VERSION_1 32

/* InterruptStatus bits. */
#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

struct virtio_dev {
	volatile u8 *base;
	u64 size;
	u32 irq;
	u32 device_id;
	u64 offered;        /* DeviceFeatures */
	u64 features;       /* negotiated */
};

static inline u32 vm_read(const struct virtio_dev *d, u32 off) { return *(volatile u32 *)(d->base + off); }
static inline void vm_write(const struct virtio_dev *d, u32 off, u32 v) { *(volatile u32 *)(d->base + off) = v; }
static inline int virtio_has(const struct virtio_dev *d, u32 bit) { return (d->features >> bit) & 1; }

/* virtio_mmio_probe checks the window named by a command-line word and
 * returns the DeviceID (> 0), or 0 when there is nothing to drive (no
 * magic, legacy version 1, placeholder DeviceID 0; a line says why). */
u32 virtio_mmio_probe(struct virtio_dev *d, const struct virtio_mmio_dev *w);

/* virtio_negotiate resets the device, sets ACKNOWLEDGE and DRIVER, and
 * accepts offered & wanted; required bits (VERSION_1 at least) must be
 * offered. Returns 0 with FEATURES_OK accepted by the device, or -1 after
 * setting FAILED and printing why. */
int virtio_negotiate(struct virtio_dev *d, u64 wanted, u64 required);

/* virtio_queue_register tells the device where queue idx lives; returns
 * -1 if the queue is absent or already live. */
struct virtq;
int virtio_queue_register(struct virtio_dev *d, const struct virtq *vq);
u32 virtio_queue_max(struct virtio_dev *d, u32 idx);

void virtio_driver_ok(struct virtio_dev *d);
void virtio_fail(struct virtio_dev *d);

/* virtio_poll_isr reads InterruptStatus, acknowledges what it saw and
 * returns it (VIRTIO_INT_* bits). */
u32 virtio_poll_isr(struct virtio_dev *d);

/* Config space: le32 fields at byte offset off. virtio_config_read32 retries
 * until ConfigGeneration is stable around the read. */
u32 virtio_config_read32(struct virtio_dev *d, u32 off);
void virtio_config_write32(struct virtio_dev *d, u32 off, u32 v);

#endif
