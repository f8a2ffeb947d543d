package balloon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ferryvm/ferry/vmm/guestlog"
	"github.com/ferryvm/ferry/vmm/internal/ctxlock"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// DeviceID is virtio-balloon's device id.
const DeviceID = 5

// Feature bits.
const (
	FMustTellHost  = 1 << 0
	FStatsVQ       = 1 << 1
	FDeflateOnOOM  = 1 << 2
	FFreePageHint  = 1 << 3
	FPagePoison    = 1 << 4
	FPageReporting = 1 << 5

	offered = FStatsVQ | FDeflateOnOOM | FFreePageHint | FPageReporting
)

// QueueSize is the size offered for every queue (QEMU uses 1024 for the
// hint queue; Linux needs >= 32 for reporting).
const QueueSize = 1024

const pfnShift = 12

// Memory is guest RAM as the balloon needs it.
type Memory interface {
	virtio.Memory
	// Discard punches [gpa, gpa+n) out of guest RAM (it reads as zero).
	Discard(gpa, n uint64) error
}

// HintSink receives hinted ranges: [gpa, gpa+n) was free in the guest
// when it was hinted in session cmdID. Called with the device's lock held,
// from a vCPU thread: it must be quick and must not call back into the
// device.
type HintSink interface {
	HintRange(cmdID uint32, gpa, n uint64)
}

// Device is a virtio-balloon device. Create it with New, wrap it in a
// virtio.Transport and hand that to SetSignaller.
type Device struct {
	mem  Memory
	log  *slog.Logger
	glog *guestlog.Limiter // what the guest can trigger at will

	mu       ctxlock.Mutex // see lock.go
	changed  chan struct{} // closed on session, target and stats changes if a waiter made it (changedLocked), else nil
	sig      virtio.Signaller
	features uint64
	q        queues
	target   uint32 // num_pages (config, host-written)
	actual   uint32 // actual (config, driver-written)
	hint     session
	sink     HintSink
	stats    Stats
	statsReq *virtio.Chain // the stats buffer the device holds
	inflated uint64        // pages punched by inflation, net of deflation
	reported uint64        // bytes punched by free page reporting
	discards int           // discards the current kick may still make

	noReporting bool // set before the guest runs; see WithoutReporting
}

type queues struct {
	inflate, deflate, stats, hint, report *virtio.Queue
}

// New returns a balloon device over guest RAM.
func New(mem Memory, log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{mem: mem, log: log, glog: guestlog.New(log, 0), hint: newSession(), mu: ctxlock.New()}
}

// SetSignaller connects the device to its transport; call once, before
// the guest runs.
func (d *Device) SetSignaller(s virtio.Signaller) { d.sig = s }

// SetHintSinkContext directs hinted ranges to s (nil: only count them)
// from its return on. It fails, changing nothing, when ctx ends before
// the device's lock is free.
func (d *Device) SetHintSinkContext(ctx context.Context, s HintSink) error {
	if err := d.lockContext(ctx); err != nil {
		return err
	}
	d.sink = s
	d.mu.Unlock()
	return nil
}

// ID implements virtio.Device.
func (d *Device) ID() uint32 { return DeviceID }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	if d.noReporting {
		return offered &^ FPageReporting
	}
	return offered
}

// WithoutReporting leaves free page reporting out of the offered features
// (as in the 2016 setting: memory a guest frees stays populated). Call it
// before the guest starts.
func (d *Device) WithoutReporting() { d.noReporting = true }

// QueueSizes implements virtio.Device: inflate, deflate, stats, free page
// hint, reporting, as numbered when every offered feature is negotiated.
func (d *Device) QueueSizes() []uint16 {
	return []uint16{QueueSize, QueueSize, QueueSize, QueueSize, QueueSize}
}

// config returns the 16-byte config space: num_pages, actual,
// free_page_hint_cmd_id, poison_val (0: PAGE_POISON is not offered).
func (d *Device) config() []byte {
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:], d.target)
	binary.LittleEndian.PutUint32(b[4:], d.actual)
	binary.LittleEndian.PutUint32(b[8:], d.hint.config)
	return b[:12]
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	virtio.CopyConfig(data, d.config(), off)
}

// WriteConfig implements virtio.Device; only actual is driver-writable.
func (d *Device) WriteConfig(off uint64, data []byte) {
	if off != 4 || len(data) != 4 {
		return
	}
	d.mu.Lock()
	d.actual = binary.LittleEndian.Uint32(data)
	d.changedLocked()
	d.mu.Unlock()
}

// Activate implements virtio.Device. Queue numbers are compacted by the
// negotiated features, as Linux numbers them: virtio_balloon.c's
// init_vqs names only the queues of negotiated features, and virtio-mmio's
// vm_find_vqs gives indices to named queues only. It waits for the
// device's lock under ctx (lock.go) and fails, activating nothing, when
// ctx ends first.
func (d *Device) Activate(ctx context.Context, qs []*virtio.Queue, features uint64) error {
	if err := d.lockContext(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	next := 0
	take := func(want bool) (*virtio.Queue, error) {
		if !want {
			return nil, nil
		}
		q := qs[next]
		next++
		if !q.Ready {
			return nil, fmt.Errorf("queue %d not set up by the driver", next-1)
		}
		return q, nil
	}
	var err error
	var q queues
	for _, t := range []struct {
		dst  **virtio.Queue
		want bool
	}{{&q.inflate, true}, {&q.deflate, true}, {&q.stats, features&FStatsVQ != 0},
		{&q.hint, features&FFreePageHint != 0}, {&q.report, features&FPageReporting != 0}} {
		if *t.dst, err = take(t.want); err != nil {
			return err
		}
	}
	d.q, d.features = q, features
	d.glog.Info("balloon: driver ready", "features", fmt.Sprintf("%#x", features))
	return nil
}

// Reset implements virtio.Device. A reset guest has freed its hinted pages.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.q, d.features, d.actual, d.statsReq = queues{}, 0, 0, nil
	if d.hint.state != Idle {
		d.hint.done()
	}
	d.changedLocked()
}

// Notify implements virtio.Device: it drains the kicked queue.
func (d *Device) Notify(idx int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.discards = MaxKickDiscards
	var err error
	used := false
	switch q := d.queueAt(idx); {
	case q == nil:
		return
	case q == d.q.inflate:
		used, err = d.drain(q, d.inflate)
	case q == d.q.deflate:
		used, err = d.drain(q, d.deflate)
	case q == d.q.stats:
		err = d.takeStats()
	case q == d.q.hint:
		used, err = d.drain(q, d.hintBuf)
	case q == d.q.report:
		used, err = d.drain(q, d.report)
	}
	if err != nil {
		d.failLocked(err)
		return
	}
	if used {
		d.sig.SignalUsed()
	}
	d.changedLocked()
}

// failLocked puts the device into NEEDS_RESET for a guest's mistake. It
// drops its queues and the stats buffer it held on one of them, keeping
// the negotiated features, so that its saved state stays consistent (a
// held buffer needs a stats queue): a guest that breaks its balloon loses
// the balloon until its driver resets it, never the VM's migration.
// Waiters on the device see the queues gone.
func (d *Device) failLocked(err error) {
	d.q, d.statsReq = queues{}, nil
	d.sig.Fail(err.Error())
	d.changedLocked()
}

func (d *Device) queueAt(idx int) *virtio.Queue {
	n := 0
	for _, q := range []*virtio.Queue{d.q.inflate, d.q.deflate, d.q.stats, d.q.hint, d.q.report} {
		if q == nil {
			continue
		}
		if n == idx {
			return q
		}
		n++
	}
	return nil
}

// drain pops every available chain, handles it and returns it used.
func (d *Device) drain(q *virtio.Queue, handle func(virtio.Chain) error) (bool, error) {
	used := false
	for i := 0; i < int(q.Size)+1; i++ { // at most one ring's worth per kick
		c, ok, err := q.Pop(d.mem)
		if err != nil || !ok {
			return used, err
		}
		if err := handle(c); err != nil {
			return used, err
		}
		if err := q.Push(d.mem, c.Head, 0); err != nil {
			return used, err
		}
		used = true
	}
	return used, nil
}

// errGuest marks protocol violations that fail the device.
var errGuest = errors.New("balloon")

// MaxPFNs bounds the PFNs read from one inflate or deflate buffer, as
// Linux's driver sends them (VIRTIO_BALLOON_ARRAY_PFNS_MAX): the rest of
// a longer buffer is used but ignored, so one kick costs at most this many
// discards per buffer, whatever the guest sends. Ignoring an inflated PFN
// only leaves that page on the host.
const MaxPFNs = 256

// pfns calls fn for each run of consecutive PFNs in the chain's readable
// buffers (le32 PFN arrays), reading at most MaxPFNs of them.
func (d *Device) pfns(c virtio.Chain, fn func(gpa, n uint64) error) error {
	var runStart, runLen uint64
	left := uint64(MaxPFNs)
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		err := fn(runStart<<pfnShift, runLen<<pfnShift)
		runLen = 0
		return err
	}
	for _, desc := range c.Descs {
		if desc.Write || desc.Len%4 != 0 {
			return fmt.Errorf("%w: PFN buffer of %d bytes (writable=%v)", errGuest, desc.Len, desc.Write)
		}
		n := min(uint64(desc.Len)/4, left)
		left -= n
		b, err := d.mem.Slice(desc.Addr, 4*n)
		if err != nil {
			return err
		}
		for i := 0; i+4 <= len(b); i += 4 {
			pfn := uint64(binary.LittleEndian.Uint32(b[i:]))
			if runLen > 0 && pfn == runStart+runLen {
				runLen++
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			runStart, runLen = pfn, 1
		}
	}
	return flush()
}

// MaxKickDiscards bounds the discards (fallocate calls, 2 to 20 us each)
// one kick makes over all the chains it drains; Linux makes at most 256
// (one inflate buffer) or 32 (one report) per kick. Past it, inflated and
// reported pages are used but stay on the host: a driver that queues more
// for one kick loses only the memory it meant to give back.
const MaxKickDiscards = 1024

// discard punches [gpa, gpa+n) out while the kick's budget lasts; it
// reports whether it tried.
func (d *Device) discard(gpa, n uint64) (bool, error) {
	if d.discards <= 0 {
		d.glog.Warn("balloon: pages past a kick's discard budget left on the host", "budget", MaxKickDiscards)
		return false, nil
	}
	d.discards--
	return true, d.mem.Discard(gpa, n)
}

func (d *Device) inflate(c virtio.Chain) error {
	return d.pfns(c, func(gpa, n uint64) error {
		done, err := d.discard(gpa, n)
		if err != nil {
			d.glog.Warn("balloon: inflate of a page that is not RAM ignored", "err", err)
			return nil
		}
		if done {
			d.inflated += n >> pfnShift
		}
		return nil
	})
}

func (d *Device) deflate(c virtio.Chain) error {
	return d.pfns(c, func(gpa, n uint64) error {
		d.inflated -= min(d.inflated, n>>pfnShift)
		return nil
	})
}

// hintBuf handles one chain on the free page hint queue: a 4-byte command
// (readable) or hinted free pages (writable buffers the device never writes).
func (d *Device) hintBuf(c virtio.Chain) error {
	for _, desc := range c.Descs {
		if !desc.Write {
			if desc.Len != 4 {
				return fmt.Errorf("%w: hint command buffer of %d bytes, want 4", errGuest, desc.Len)
			}
			b, err := d.mem.Slice(desc.Addr, 4)
			if err != nil {
				return err
			}
			d.hint.outBuf(binary.LittleEndian.Uint32(b))
			continue
		}
		if desc.Len == 0 {
			continue
		}
		if ok, dropped := d.hint.inBuf(uint64(desc.Len)); !ok {
			if dropped {
				d.glog.Warn("balloon: hint ranges over the per-session cap dropped",
					"cmd_id", fmt.Sprintf("%#x", d.hint.id), "cap", d.hint.limit(), "dropped", d.hint.dropped)
			}
			continue
		}
		if d.sink != nil {
			d.sink.HintRange(d.hint.id, desc.Addr, uint64(desc.Len))
		}
	}
	return nil
}

// report punches reported free pages out and completes the buffers.
func (d *Device) report(c virtio.Chain) error {
	for _, desc := range c.Descs {
		start := (desc.Addr + 4095) &^ 4095
		end := (desc.Addr + uint64(desc.Len)) &^ 4095
		if end <= start {
			continue
		}
		done, err := d.discard(start, end-start)
		if err != nil {
			d.glog.Warn("balloon: reported range not discarded", "err", err)
			continue
		}
		if done {
			d.reported += end - start
		}
	}
	return nil
}
