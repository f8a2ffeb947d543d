package virtio

import (
	"context"
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
