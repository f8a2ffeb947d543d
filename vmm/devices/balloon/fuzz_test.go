package balloon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// FuzzGuestDriver plays a hostile guest driver against the balloon
// behind its virtio-mmio transport: well-formed and raw descriptors,
// writes anywhere in RAM, register and config writes, kicks of any
// queue, mixed with the host's calls (hint sessions, stats, target).
// Whatever the guest does, it may lose its balloon, never the VMM or the
// VM's migration:
//   - nothing panics;
//   - a hinted range reaches the sink only while its session is active,
//     and lies in guest RAM;
//   - one kick makes at most MaxKickDiscards discards;
//   - every byte the device or the host's calls change in guest RAM is
//     marked dirty (an unmarked write would not travel in a migration);
//   - after every step the transport and the device save, encode, decode
//     and restore into a fresh pair, which saves the same bytes again.
func FuzzGuestDriver(f *testing.F) {
	f.Add([]byte{}) // the driver's setup alone
	// Linux's hint round: StartHintContext, echo the id, hint two 16 KiB blocks, STOP.
	f.Add([]byte{opStartHint, opEchoID, 3,
		opAdd, 3, 0, 0x00, 0x08, 0x00, 0x40, 1, 0,
		opAdd, 3, 0, 0x00, 0x10, 0x00, 0x40, 1, 0,
		opAdd, 3, 0, 0x02, 0x00, 4, 0, 0, 0, opKick, 3, opStopHint, opDoneHint})
	// Inflate PFN 100, deflate it, report a page, send stats, ask for more.
	f.Add([]byte{opAdd, 0, 0, 0x00, 0x01, 4, 0, 0, 100, opKick, 0,
		opAdd, 1, 0, 0x00, 0x01, 4, 0, 0, 100, opKick, 1,
		opAdd, 4, 0, 0x00, 0x02, 0x00, 0x10, 1, 0, opKick, 4,
		opAdd, 2, 0, 0x00, 0x03, 20, 0, 0, 4, opKick, 2, opRequestStats, opSetTarget, 8, 0})
	// A reset, VERSION_1, DRIVER_OK before FEATURES_OK; a descriptor
	// that loops on itself.
	f.Add([]byte{opReg, 0x70 / 4, 0, 0, 0, 0, opReg, 0x24 / 4, 1, 0, 0, 0, opReg, 0x20 / 4, 1, 0, 0, 0,
		opReg, 0x70 / 4, 7, 0, 0, 0, opReg, 0x70 / 4, 15, 0, 0, 0,
		opDesc, 0, 0, 0, 0, 6, 0, 0, 0x10, 0, 0, 1, 0, 0, 0, opAvail, 0, 0, 0, opKick, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		g := newFuzzGuest(t)
		g.check()
		for steps := 0; len(script) > 0 && steps < 64; steps++ {
			script = g.step(script)
			g.check()
		}
	})
}

// Script operations: an opcode byte, then its arguments.
const (
	opAdd          = iota // qi, n, n%4+1 × (addr u16 ×8, len u16, write u8, value u8 written at addr): a well-formed chain
	opDesc                // qi, idx, addr u32, len u32, flags u16, next u16: a raw descriptor
	opAvail               // qi, head u16: publish a head as is
	opPoke                // off u32, value u32: any 4 bytes of RAM
	opKick                // qi
	opReg                 // reg u8 ×4, value u32: a transport register
	opConfig              // off u8, value u32, len u8: a config write
	opSetup               // features u8 (bit i: offered feature i)
	opStartHint           // the host starts a hint session
	opEchoID              // qi: the driver echoes the config's cmd_id
	opStopHint            //
	opDoneHint            //
	opRequestStats        //
	opSetTarget           // pages u16
	opCount
)

const (
	fuzzRAM   = 512 << 10 // rings from 0x10000 (64 KiB per queue), buffers from fuzzBufs
	fuzzBufs  = 0x60000
	fuzzQueue = 8
)

type fuzzGuest struct {
	t    *testing.T
	mem  *fuzzMem
	dev  *Device
	tr   *virtio.Transport
	drv  *virtiotest.Driver
	sink *fuzzSink
	ctx  context.Context // bounds the host calls (bounded)

	before []byte // guest RAM before a device operation
}

// fuzzMem is guest RAM that records the ranges the VMM marked dirty and
// counts discards.
type fuzzMem struct {
	*virtiotest.Mem
	marked   [][2]uint64
	discards int
}

func (m *fuzzMem) MarkDirty(gpa, n uint64) {
	m.marked = append(m.marked, [2]uint64{gpa, n})
	m.Mem.MarkDirty(gpa, n)
}

func (m *fuzzMem) Discard(gpa, n uint64) error {
	m.discards++
	b, err := m.Mem.Slice(gpa, n)
	if err != nil {
		return err
	}
	clear(b)
	m.MarkDirty(gpa, n)
	return nil
}

// fuzzSink checks each hinted range as it arrives, under the device's lock.
type fuzzSink struct {
	t   *testing.T
	dev *Device
}

func (s *fuzzSink) HintRange(id uint32, gpa, n uint64) {
	if h := s.dev.hint; h.state != Active || h.id != id {
		s.t.Fatalf("hint for session %#x delivered while session %#x is %s", id, h.id, h.state)
	}
	if n == 0 || gpa >= fuzzRAM || n > fuzzRAM-gpa {
		s.t.Fatalf("hinted range %#x+%#x outside guest RAM", gpa, n)
	}
}

func newFuzzGuest(t *testing.T) *fuzzGuest {
	mem := &fuzzMem{Mem: virtiotest.NewMem(fuzzRAM)}
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	sink := &fuzzSink{t: t, dev: dev}
	setHintSink(t, dev, sink)
	g := &fuzzGuest{t: t, mem: mem, dev: dev, tr: tr, drv: &virtiotest.Driver{T: t, Dev: tr, Mem: mem.Mem}, sink: sink, ctx: bounded(t),
		before: make([]byte, fuzzRAM)}
	g.drv.Setup(offered|virtio.FVersion1, 5, fuzzQueue, 0x10000)
	return g
}

// args takes n bytes of the script, zero-padded.
func args(script []byte, n int) ([]byte, []byte) {
	var b [16]byte
	k := copy(b[:n], script)
	return b[:n], script[k:]
}

// step runs the script's first operation and returns the rest.
func (g *fuzzGuest) step(script []byte) []byte {
	op := script[0] % opCount
	script = script[1:]
	var a []byte
	switch op {
	case opAdd:
		a, script = args(script, 2)
		var bufs []virtiotest.Buf
		for range int(a[1]%4) + 1 {
			var b []byte
			b, script = args(script, 6)
			addr := fuzzBufs + uint64(binary.LittleEndian.Uint16(b))*8%(fuzzRAM-fuzzBufs)
			bufs = append(bufs, virtiotest.Buf{Addr: addr, Len: uint32(binary.LittleEndian.Uint16(b[2:])), Write: b[4]&1 != 0})
			if addr+4 <= fuzzRAM {
				g.drv.PutLE32(addr, uint32(b[5]))
			}
		}
		g.drv.Add(int(a[0]%5), bufs...)
	case opDesc:
		a, script = args(script, 14)
		g.drv.PutDesc(int(a[0]%5), uint16(a[1]%fuzzQueue), uint64(binary.LittleEndian.Uint32(a[2:])),
			binary.LittleEndian.Uint32(a[6:]), binary.LittleEndian.Uint16(a[10:]), binary.LittleEndian.Uint16(a[12:]))
	case opAvail:
		a, script = args(script, 3)
		avail := 0x10000 + uint64(a[0]%5)<<16 + 16*fuzzQueue
		idx := binary.LittleEndian.Uint16(g.mem.B[avail+2:])
		binary.LittleEndian.PutUint16(g.mem.B[avail+4+2*uint64(idx%fuzzQueue):], binary.LittleEndian.Uint16(a[1:]))
		binary.LittleEndian.PutUint16(g.mem.B[avail+2:], idx+1)
	case opPoke:
		a, script = args(script, 8)
		g.drv.PutLE32(uint64(binary.LittleEndian.Uint32(a))%(fuzzRAM-3), binary.LittleEndian.Uint32(a[4:]))
	case opSetup:
		a, script = args(script, 1)
		var features uint64
		for i := range 6 {
			if a[0]&(1<<i) != 0 {
				features |= 1 << i
			}
		}
		g.drv.Setup(features|virtio.FVersion1, 5, fuzzQueue, 0x10000)
	case opEchoID:
		a, script = args(script, 1)
		id := g.drv.Config(8)
		g.drv.PutLE32(fuzzBufs, id)
		g.drv.Add(int(a[0]%5), virtiotest.Buf{Addr: fuzzBufs, Len: 4})
	default:
		script = g.device(op, script)
	}
	return script
}

// device runs an operation that reaches the device (a kick, a register
// or config write, a host call) and checks that every byte of guest RAM
// it changed was marked dirty.
func (g *fuzzGuest) device(op byte, script []byte) []byte {
	var a []byte
	before := append(g.before[:0], g.mem.B...)
	g.mem.marked, g.mem.discards = g.mem.marked[:0], 0
	switch op {
	case opKick:
		a, script = args(script, 1)
		g.drv.Kick(int(a[0] % 8))
	case opReg:
		a, script = args(script, 5)
		g.drv.SetReg(uint64(a[0])*4%0x100, binary.LittleEndian.Uint32(a[1:]))
	case opConfig:
		a, script = args(script, 6)
		var v [4]byte
		binary.LittleEndian.PutUint32(v[:], binary.LittleEndian.Uint32(a[1:]))
		g.tr.Write(0x100+uint64(a[0]%16), v[:a[5]%5])
	case opStartHint:
		_, err := g.dev.StartHintContext(g.ctx)
		g.host(err)
	case opStopHint:
		_, err := g.dev.StopHintContext(g.ctx)
		g.host(err)
	case opDoneHint:
		_, err := g.dev.DoneHintContext(g.ctx)
		g.host(err)
	case opRequestStats:
		_, err := g.dev.RequestStatsContext(g.ctx)
		g.host(err)
	case opSetTarget:
		a, script = args(script, 2)
		_, err := g.dev.SetTargetContext(g.ctx, uint32(binary.LittleEndian.Uint16(a)))
		g.host(err)
	}
	if g.mem.discards > MaxKickDiscards {
		g.t.Fatalf("one step made %d discards, at most %d", g.mem.discards, MaxKickDiscards)
	}
	for page := 0; page < fuzzRAM; page += 4096 {
		if bytes.Equal(before[page:page+4096], g.mem.B[page:page+4096]) {
			continue
		}
		for i := page; i < page+4096; i++ {
			if before[i] != g.mem.B[i] && !g.marked(uint64(i)) {
				g.t.Fatalf("operation %d changed guest RAM at %#x without marking it dirty", op, i)
			}
		}
	}
	return script
}

// host checks a host call's error: the guest may make the call fail (a
// queue it did not set up, a session still running), never wait for the
// device's lock, which nothing else holds here.
func (g *fuzzGuest) host(err error) {
	g.t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		g.t.Fatalf("a host call waited for the device's lock for %v: %v", testBound, err)
	}
}

func (g *fuzzGuest) marked(gpa uint64) bool {
	for _, r := range g.mem.marked {
		if gpa >= r[0] && gpa-r[0] < r[1] {
			return true
		}
	}
	return false
}

// check saves the transport and the device as a migration would,
// restores them into a fresh pair over the same RAM, and saves that
// again: the same bytes.
func (g *fuzzGuest) check() {
	g.t.Helper()
	tb, db := g.save(g.tr, g.dev)
	var ts virtio.TransportState
	var ds State
	if err := ts.UnmarshalBinary(tb); err != nil {
		g.t.Fatalf("decode the transport's state: %v", err)
	}
	if err := ds.UnmarshalBinary(db); err != nil {
		g.t.Fatalf("decode the balloon's state: %v", err)
	}
	dev := New(g.mem, nil)
	tr := virtio.NewTransport("balloon", dev, g.mem, nil, nil)
	dev.SetSignaller(tr)
	if err := tr.Restore(g.ctx, ts); err != nil {
		g.t.Fatalf("the guest made its VM unmigratable: %v", err)
	}
	if err := dev.RestoreContext(g.ctx, ds); err != nil {
		g.t.Fatalf("the guest made its VM unmigratable: %v", err)
	}
	tb2, db2 := g.save(tr, dev)
	if !bytes.Equal(tb, tb2) || !bytes.Equal(db, db2) {
		g.t.Fatalf("restored state saves differently:\ntransport %x\n       now %x\nballoon %x\n     now %x", tb, tb2, db, db2)
	}
}

func (g *fuzzGuest) save(tr *virtio.Transport, dev *Device) (transport, balloon []byte) {
	g.t.Helper()
	tb, err := tr.Save().MarshalBinary()
	if err != nil {
		g.t.Fatalf("the guest made its transport's state unsaveable: %v", err)
	}
	db, err := hostCall(g.t, dev.SaveContext).MarshalBinary()
	if err != nil {
		g.t.Fatalf("the guest made the balloon's state unsaveable: %v", err)
	}
	return tb, db
}
