package virtio

import "context"

// Feature bits the transport knows.
const (
	FVersion1 = 1 << 32
)

// Device status bits.
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// Interrupt status bits.
const (
	InterruptUsed   = 1
	InterruptConfig = 2
)

// Device is a virtio device behind a Transport.
//
// The transport calls these methods from vCPU threads (and Activate also
// from Transport.Restore, on the host's), never with its register lock
// held; a driver's register write holds the transport's lock of register
// writes over the Activate or Reset it makes, so that the next write
// waits for it (Restore holds none of the transport's locks). A device
// serialises the calls with its own lock. After Reset returns the device
// must not touch the queues it was given at Activate.
//
// A device may assume that Notify comes only between an Activate that
// returned nil and the next Reset, overlapping neither (kick.go): a kick
// that lands while Activate runs is dropped, every queue the driver set
// up is notified once after a driver's Status write activated the
// device, and Reset is called once the Notify calls in progress have
// returned. Notify may overlap ReadConfig, WriteConfig and other Notify
// calls (several vCPUs), and, after a device's own Signaller.Fail, its
// Notify calls in progress run on.
type Device interface {
	// ID is the virtio device ID (5 for the balloon).
	ID() uint32
	// Features are the feature bits offered; the transport adds VERSION_1.
	Features() uint64
	// QueueSizes gives the maximum size of each queue, by index.
	QueueSizes() []uint16
	// ReadConfig and WriteConfig access the device config space at offset.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate hands over the queues and negotiated features when the
	// device's status becomes live (DRIVER_OK and FEATURES_OK); an error
	// marks the device NEEDS_RESET, or fails a Restore. ctx bounds the
	// device's wait for its own lock and nothing else: Restore passes
	// its caller's, so that a state load fails, rather than hangs, while
	// something holds the device; a driver's Status write passes
	// context.Background(): a vCPU thread waits for the lock in Activate
	// as it does in every other method here.
	Activate(ctx context.Context, queues []*Queue, features uint64) error
	// Notify reports that queue index q, a queue the driver set up, may
	// hold new buffers: the driver kicked it, or a driver's Status write
	// activated the device (that vCPU then calls Notify for every such
	// queue once Activate returned nil, kicked or not, so a device must
	// take an empty or unchanged ring as nothing to do). That Notify
	// stands for the kicks made before the status became live (Linux's
	// balloon kicks its stats queue then) and while Activate ran, which
	// themselves never arrive; kicks made after a reset or a failure
	// began never arrive. Transport.Restore's activation notifies no
	// queue.
	Notify(q int)
	// Reset returns the device to its initial state (driver wrote 0 to
	// Status). The transport resets the queues only after Reset returns.
	Reset()
}

// Signaller is what a device uses to reach its driver.
type Signaller interface {
	// SignalUsed raises the used-buffer interrupt.
	SignalUsed()
	// ConfigChanged bumps the config generation and raises the
	// config-change interrupt.
	ConfigChanged()
	// Fail puts the device into NEEDS_RESET, logging reason, and raises
	// the config-change interrupt as the spec asks. Queue notifications
	// stop reaching the device; a device that calls Fail stops using its
	// queues itself (the transport does not call Reset, which would take
	// the device's lock) until the driver resets it.
	Fail(reason string)
}
