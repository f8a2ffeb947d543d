package virtio

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ferryvm/ferry/vmm/guestlog"
)

// MMIO register offsets (virtio-mmio version 2).
const (
	regMagic             = 0x000
	regVersion           = 0x004
	regDeviceID          = 0x008
	regVendorID          = 0x00c
	regDeviceFeatures    = 0x010
	regDeviceFeaturesSel = 0x014
	regDriverFeatures    = 0x020
	regDriverFeaturesSel = 0x024
	regQueueSel          = 0x030
	regQueueNumMax       = 0x034
	regQueueNum          = 0x038
	regQueueReady        = 0x044
	regQueueNotify       = 0x050
	regInterruptStatus   = 0x060
	regInterruptACK      = 0x064
	regStatus            = 0x070
	regQueueDescLow      = 0x080
	regQueueDescHigh     = 0x084
	regQueueDriverLow    = 0x090
	regQueueDriverHigh   = 0x094
	regQueueDeviceLow    = 0x0a0
	regQueueDeviceHigh   = 0x0a4
	regConfigGeneration  = 0x0fc
	regConfig            = 0x100

	mmioMagic   = 0x74726976 // "virt"
	mmioVersion = 2
	vendorID    = 0x46455259 // "FERY"

	// MMIOSize is the register window of one device.
	MMIOSize = 0x1000
)

// Transport is a virtio-mmio version 2 device window; it implements
// bus.Device.
type Transport struct {
	dev  Device
	mem  Memory
	irq  func()            // raises the device's interrupt line; may be nil
	glog *guestlog.Limiter // what the driver can trigger at will
	name string

	// ctl serialises register writes with the device calls they make
	// (Activate, Reset), so a reset finishes before the next write;
	// notifications do not take it. Order: ctl, then the device's lock,
	// then mu.
	ctl         sync.Mutex
	mu          sync.Mutex
	kicks       kickGate // under mu; see kick.go
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	queues      []*Queue
	intStatus   uint32
	configGen   uint32
	failReason  string
}

// NewTransport wraps dev. irq is called (without locks held) whenever an
// interrupt status bit becomes set.
func NewTransport(name string, dev Device, mem Memory, irq func(), log *slog.Logger) *Transport {
	t := &Transport{dev: dev, mem: mem, irq: irq, glog: guestlog.New(log, 0), name: name}
	for _, max := range dev.QueueSizes() {
		t.queues = append(t.queues, &Queue{MaxSize: max})
	}
	t.kicks.init(&t.mu)
	return t
}

func (t *Transport) offered() uint64 { return t.dev.Features() | FVersion1 }

// Read implements bus.Device.
func (t *Transport) Read(off uint64, data []byte) {
	if off >= regConfig {
		t.dev.ReadConfig(off-regConfig, data)
		return
	}
	clear(data)
	if len(data) != 4 || off%4 != 0 {
		return // registers are 32-bit; the spec makes anything else undefined
	}
	t.mu.Lock()
	v := t.readReg(off)
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func (t *Transport) readReg(off uint64) uint32 {
	q := t.selected()
	switch off {
	case regMagic:
		return mmioMagic
	case regVersion:
		return mmioVersion
	case regDeviceID:
		return t.dev.ID()
	case regVendorID:
		return vendorID
	case regDeviceFeatures:
		if t.devFeatSel > 1 {
			return 0
		}
		return uint32(t.offered() >> (32 * t.devFeatSel))
	case regQueueNumMax:
		if q == nil || q.Ready {
			return 0
		}
		return uint32(q.MaxSize)
	case regQueueReady:
		if q != nil && q.Ready {
			return 1
		}
		return 0
	case regInterruptStatus:
		return t.intStatus
	case regStatus:
		return t.status
	case regConfigGeneration:
		return t.configGen
	}
	return 0
}

func (t *Transport) selected() *Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// Write implements bus.Device.
func (t *Transport) Write(off uint64, data []byte) {
	if off >= regConfig {
		t.dev.WriteConfig(off-regConfig, data)
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	if off == regQueueNotify {
		t.kick(v) // without ctl: a kick does not wait for a register write's Activate
		return
	}
	t.ctl.Lock()
	defer t.ctl.Unlock()
	t.mu.Lock()
	act := t.writeReg(off, v)
	t.mu.Unlock()
	act()
}

// writeReg updates a register under t.mu and returns what must run after
// the lock is dropped (device callbacks, interrupts).
func (t *Transport) writeReg(off uint64, v uint32) func() {
	nothing := func() {}
	q := t.selected()
	setupOK := t.status&StatusDriverOK == 0 && q != nil && !q.Ready
	switch off {
	case regDeviceFeaturesSel:
		t.devFeatSel = v
	case regDriverFeaturesSel:
		t.drvFeatSel = v
	case regDriverFeatures:
		if t.status&StatusFeaturesOK == 0 && t.drvFeatSel <= 1 {
			shift := 32 * t.drvFeatSel
			t.drvFeatures = t.drvFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
		}
	case regQueueSel:
		t.queueSel = v
	case regQueueNum:
		if setupOK {
			// A size over QueueNumMax is kept as 0, not as written: it is
			// rejected at QueueReady either way, and a saved size over
			// MaxSize is refused by the destination (QueueState.check).
			q.Size = 0
			if v <= uint32(q.MaxSize) {
				q.Size = uint16(v)
			}
		}
	case regQueueDescLow, regQueueDescHigh, regQueueDriverLow, regQueueDriverHigh, regQueueDeviceLow, regQueueDeviceHigh:
		if setupOK {
			setHalf(q, off, v)
		}
	case regQueueReady:
		return t.setQueueReady(q, v == 1)
	case regInterruptACK:
		t.intStatus &^= v
	case regStatus:
		return t.setStatus(v)
	}
	return nothing
}

func setHalf(q *Queue, off uint64, v uint32) {
	var p *uint64
	switch off {
	case regQueueDescLow, regQueueDescHigh:
		p = &q.DescAddr
	case regQueueDriverLow, regQueueDriverHigh:
		p = &q.AvailAddr
	default:
		p = &q.UsedAddr
	}
	if off%8 == 0 { // the Low halves sit at multiples of 8
		*p = *p&^0xffffffff | uint64(v)
	} else {
		*p = *p&0xffffffff | uint64(v)<<32
	}
}

func (t *Transport) setQueueReady(q *Queue, ready bool) func() {
	if q == nil {
		return func() {}
	}
	if !ready {
		if t.status&StatusDriverOK == 0 { // a running device keeps its queues until reset
			q.reset()
		}
		return func() {}
	}
	if t.status&StatusDriverOK != 0 || q.Ready {
		return func() {}
	}
	if err := q.validate(t.mem); err != nil {
		return t.failLocked(fmt.Sprintf("queue %d: %v", t.queueSel, err))
	}
	q.Ready = true
	return func() {}
}

// setStatus handles a Status write. Bits only accumulate until a reset
// (the spec forbids a driver to clear one), so a running device keeps its
// features and queues; bits a driver may not set (driverStatus) are
// dropped. The device is activated when the status becomes
// live (DRIVER_OK and FEATURES_OK, not NEEDS_RESET), in whichever order
// a driver sets the bits, and never while the transport needs a reset
// (its kicks are ignored then): Restore activates a restored device by
// the same rule, so a destination's device is activated exactly when the
// source's was. A reset resets the queues only after the device's
// Reset returned: a kick in progress on another vCPU finishes on the
// rings it started with. What that kick did to the registers meanwhile
// (a failure: NEEDS_RESET; interrupt bits) belongs to the device before
// the reset, so they are reset again with the queues: the driver reads
// Status 0 once its reset returned. Kicks and the device's Activate and
// Reset are ordered as kick.go says: once Activate returned nil, every
// ready queue is notified (buffers made available before DRIVER_OK or
// while Activate ran are seen then), and Reset waits for the kicks that
// reached the device before the status went to 0.
func (t *Transport) setStatus(v uint32) func() {
	if v == 0 {
		t.resetLocked() // status 0: no kick reaches the device from here on
		return func() {
			t.mu.Lock()
			t.kicks.waitIdleLocked()
			t.mu.Unlock()
			t.dev.Reset()
			t.mu.Lock()
			t.resetLocked()
			for _, q := range t.queues {
				q.reset()
			}
			t.mu.Unlock()
		}
	}
	old := t.status
	v &= driverStatus // a driver sets no other bit: a saved status has none (TransportState's check)
	if v&^old&StatusFeaturesOK != 0 {
		if t.drvFeatures&^t.offered() != 0 || t.drvFeatures&FVersion1 == 0 {
			t.glog.Warn("virtio: driver features refused", "device", t.name,
				"driver", fmt.Sprintf("%#x", t.drvFeatures), "offered", fmt.Sprintf("%#x", t.offered()))
			v &^= StatusFeaturesOK // the driver reads it back and gives up
		}
	}
	v |= old
	t.status = v
	if live(v) && !live(old) {
		queues, features := t.queues, t.drvFeatures
		t.kicks.activating = true // with the status, under mu: no kick reaches the device before Activate returned
		return func() {
			err := t.dev.Activate(context.Background(), queues, features) // a vCPU's register write: see Device
			t.mu.Lock()
			after := func() {}
			if err != nil { // under mu with the end of activating, so no kick slips in between
				after = t.failLocked(fmt.Sprintf("activate: %v", err))
			}
			t.kicks.activating = false
			t.mu.Unlock()
			after()
			t.notifyReady() // before this write returns (kick.go): also the kicks dropped meanwhile, and any before DRIVER_OK
		}
	}
	return func() {}
}

// driverStatus is the status bits a driver may set; NEEDS_RESET is the
// device's, the rest undefined.
const driverStatus = StatusAcknowledge | StatusDriver | StatusDriverOK | StatusFeaturesOK | StatusFailed

// live reports whether a device with this status runs: the driver set
// DRIVER_OK and FEATURES_OK, and the transport does not need a reset.
func live(status uint32) bool {
	const on = StatusDriverOK | StatusFeaturesOK
	return status&on == on && status&StatusNeedsReset == 0
}

// resetLocked resets the registers; setStatus resets the queues later,
// and the registers once more, after the device's Reset returned.
func (t *Transport) resetLocked() {
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0, 0
	t.intStatus, t.failReason = 0, ""
}

// SignalUsed implements Signaller.
func (t *Transport) SignalUsed() { t.interrupt(InterruptUsed, false) }

// ConfigChanged implements Signaller.
func (t *Transport) ConfigChanged() { t.interrupt(InterruptConfig, true) }

func (t *Transport) interrupt(bit uint32, bumpGen bool) {
	t.mu.Lock()
	t.intStatus |= bit
	if bumpGen {
		t.configGen++
	}
	t.mu.Unlock()
	if t.irq != nil {
		t.irq()
	}
}

// Fail implements Signaller.
func (t *Transport) Fail(reason string) {
	t.mu.Lock()
	act := t.failLocked(reason)
	t.mu.Unlock()
	act()
}

func (t *Transport) failLocked(reason string) func() {
	if t.status&StatusNeedsReset == 0 {
		t.glog.Error("virtio: device needs reset", "device", t.name, "reason", reason)
		t.failReason = reason
	}
	t.status |= StatusNeedsReset
	t.intStatus |= InterruptConfig
	return func() {
		if t.irq != nil {
			t.irq()
		}
	}
}

// Status returns the device status register and, after a failure, why.
func (t *Transport) Status() (status uint32, failReason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status, t.failReason
}

// CmdlineArg is the Linux command-line word announcing a device at base
// with the given interrupt line.
func CmdlineArg(base uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", base, irq)
}
