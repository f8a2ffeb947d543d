package virtio

import (
	"context"
	"sync"
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// echoDevice is a test device with one queue: it returns every chain with
// the total length of its writable descriptors, filling them with 0xab.
type echoDevice struct {
	q      *Queue
	mem    Memory
	sig    Signaller
	resets int
	notify int
}

func (e *echoDevice) ID() uint32                          { return 42 }
func (e *echoDevice) Features() uint64                    { return 1 << 3 }
func (e *echoDevice) QueueSizes() []uint16                { return []uint16{8} }
func (e *echoDevice) ReadConfig(off uint64, data []byte)  { CopyConfig(data, []byte{1, 2, 3, 4}, off) }
func (e *echoDevice) WriteConfig(off uint64, data []byte) {}
func (e *echoDevice) Activate(_ context.Context, q []*Queue, f uint64) error {
	e.q = q[0]
	return nil
}
func (e *echoDevice) Reset() { e.q = nil; e.resets++ }
func (e *echoDevice) Notify(int) {
	e.notify++
	for e.q != nil {
		c, ok, err := e.q.Pop(e.mem)
		if err != nil {
			e.sig.Fail(err.Error())
			e.q = nil
			return
		}
		if !ok {
			break
		}
		var n uint32
		for _, d := range c.Descs {
			if d.Write {
				b, _ := e.mem.Slice(d.Addr, uint64(d.Len))
				for i := range b {
					b[i] = 0xab
				}
				e.mem.MarkDirty(d.Addr, uint64(d.Len))
				n += d.Len
			}
		}
		if err := e.q.Push(e.mem, c.Head, n); err != nil {
			e.sig.Fail(err.Error())
			return
		}
		e.sig.SignalUsed()
	}
}

func newTest(t testing.TB) (*virtiotest.Driver, *Transport, *echoDevice, *int) {
	mem := virtiotest.NewMem(1 << 20)
	dev := &echoDevice{mem: mem}
	irqs := new(int)
	tr := NewTransport("echo", dev, mem, func() { *irqs++ }, nil)
	dev.sig = tr
	return &virtiotest.Driver{T: t, Dev: tr, Mem: mem}, tr, dev, irqs
}

// gateDevice is an echoDevice whose calls can be held: Activate closes
// activating and then waits until releaseActivate is closed; Notify
// closes notifying (once) and then waits, outside the device's lock,
// until releaseNotify is closed, as a kick on its way to a busy device
// does. It records, under its own lock, whether each Notify came after
// an Activate had returned and before a Reset was called.
type gateDevice struct {
	echoDevice
	activating, releaseActivate chan struct{}
	notifying, releaseNotify    chan struct{}
	notifyOnce                  *sync.Once

	fail error // what Activate returns

	mu        sync.Mutex
	activated bool // an Activate returned nil, and no Reset came since
	stray     int  // Notify calls when activated was false
}

func newGateDevice(mem Memory) *gateDevice {
	release := make(chan struct{})
	close(release) // Notify does not wait unless a test says so
	return &gateDevice{echoDevice: echoDevice{mem: mem},
		activating: make(chan struct{}), releaseActivate: make(chan struct{}),
		notifying: make(chan struct{}), releaseNotify: release, notifyOnce: new(sync.Once)}
}

// holdNotify makes the next Notify close a fresh notifying and wait
// until the returned release is called (the test's cleanup calls it at
// the latest). Call it while no Notify runs.
func (g *gateDevice) holdNotify(t *testing.T) (release func()) {
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	g.notifying, g.releaseNotify, g.notifyOnce = make(chan struct{}), held, new(sync.Once)
	t.Cleanup(release)
	return release
}

func (g *gateDevice) Activate(ctx context.Context, q []*Queue, f uint64) error {
	close(g.activating)
	<-g.releaseActivate // the test closes it, at the latest in its cleanup
	if g.fail != nil {
		return g.fail
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.activated = true
	return g.echoDevice.Activate(ctx, q, f)
}

func (g *gateDevice) Notify(q int) {
	g.notifyOnce.Do(func() { close(g.notifying) })
	<-g.releaseNotify
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.activated {
		g.stray++
	}
	g.echoDevice.Notify(q)
}

func (g *gateDevice) Reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.activated = false
	g.echoDevice.Reset()
}

// counts returns the Notify calls made and those made while the device
// was not activated.
func (g *gateDevice) counts() (notify, stray int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.notify, g.stray
}
