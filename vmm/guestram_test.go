package vmm

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/virtio"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// recordingToucher records the guest physical ranges device code
// touched, found from the slice's place in the mapping.
type recordingToucher struct {
	host []byte
	err  error

	mu      sync.Mutex
	touched [][2]uint64 // memfd offset (= GPA below 3 GiB), length
	writes  int
}

func (r *recordingToucher) Touch(b []byte, write bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	off := uint64(reflect.ValueOf(b).Pointer() - reflect.ValueOf(r.host).Pointer())
	r.touched = append(r.touched, [2]uint64{off, uint64(len(b))})
	if write {
		r.writes++
	}
	return r.err
}

// overlaps reports whether a touched range overlaps [gpa, gpa+n).
func (r *recordingToucher) overlaps(gpa, n uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.touched {
		if t[0] < gpa+n && gpa < t[0]+t[1] {
			return true
		}
	}
	return false
}

func newGuestRAM(t *testing.T) *guestRAM {
	g, err := memory.New(memory.MinSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &guestRAM{Guest: g}
}

// TestGuestRAMTouches: while a Toucher is set, Slice touches exactly the
// bytes it returns (for writing) before returning them; Check never
// does; without a Toucher nothing is touched; after halt Slice fails.
func TestGuestRAMTouches(t *testing.T) {
	ram := newGuestRAM(t)
	rec := &recordingToucher{host: ram.Host()}
	if _, err := ram.Slice(0x1000, 16); err != nil || len(rec.touched) != 0 {
		t.Fatalf("without a Toucher: %v, touched %v", err, rec.touched)
	}
	ram.setToucher(rec)
	b, err := ram.Slice(0x2010, 0x2000)
	if err != nil || len(b) != 0x2000 {
		t.Fatal(err)
	}
	if len(rec.touched) != 1 || rec.touched[0] != [2]uint64{0x2010, 0x2000} || rec.writes != 1 {
		t.Errorf("touched %v (%d for writing), want [0x2010 0x2000] once, for writing", rec.touched, rec.writes)
	}
	if err := ram.Check(0x100000, 0x10000); err != nil || len(rec.touched) != 1 {
		t.Errorf("Check: %v, touched %v", err, rec.touched)
	}
	if err := ram.Check(memory.MinSize-8, 16); err == nil {
		t.Error("Check passed a range beyond RAM")
	}
	if _, err := ram.Slice(0x3000, 0); err != nil || len(rec.touched) != 1 {
		t.Errorf("empty slice: %v, touched %v", err, rec.touched)
	}
	rec.err = errors.New("service gone")
	if _, err := ram.Slice(0x4000, 8); err == nil || !strings.Contains(err.Error(), "during post-copy: service gone") {
		t.Errorf("a failed Touch gave %v", err)
	}
	ram.setToucher(nil)
	if _, err := ram.Slice(0x4000, 8); err != nil || len(rec.touched) != 2 {
		t.Errorf("after the Toucher was cleared: %v, touched %d", err, len(rec.touched))
	}
	ram.halt()
	if _, err := ram.Slice(0x4000, 8); !errors.Is(err, errHalted) {
		t.Errorf("after halt: %v, want errHalted", err)
	}
}

// TestBalloonTouchesThroughGuestRAM: the balloon and its virtio queues,
// built on guestRAM as the VM builds them, touch the rings and the PFN
// array they read, and never the pages the guest gives back (inflated or
// reported free): those are punched out, not fetched over the network.
func TestBalloonTouchesThroughGuestRAM(t *testing.T) {
	ram := newGuestRAM(t)
	rec := &recordingToucher{host: ram.Host()}
	dev := balloon.New(ram, nil)
	tr := virtio.NewTransport("balloon", dev, ram, nil, nil)
	dev.SetSignaller(tr)
	mem := &virtiotest.Mem{B: ram.Host(), Dirty: map[uint64]bool{}, Discarded: map[uint64]bool{}}
	drv := &virtiotest.Driver{T: t, Dev: tr, Mem: mem}
	if !drv.Setup(balloon.FPageReporting|virtio.FVersion1, 3, 64, 0x10000) { // inflate, deflate, report
		t.Fatal("features refused")
	}
	ram.setToucher(rec) // post-copy starts after the driver set up its rings

	const pfnBuf, inflated, reported = 0x100000, 0x200000, 0x400000
	binary.LittleEndian.PutUint32(mem.B[pfnBuf:], inflated>>12)
	binary.LittleEndian.PutUint32(mem.B[pfnBuf+4:], inflated>>12+1)
	drv.Add(0, virtiotest.Buf{Addr: pfnBuf, Len: 8})
	drv.Kick(0)
	drv.Add(2, virtiotest.Buf{Addr: reported, Len: 2 << 20, Write: true})
	drv.Kick(2)
	if len(drv.Used(0)) != 1 || len(drv.Used(2)) != 1 {
		t.Fatal("the balloon did not complete its buffers")
	}
	if tg := deviceCall(t, dev.TargetContext); tg.Inflated != 2 || tg.Reported != 2<<20 {
		t.Fatalf("balloon %+v: want 2 pages inflated, 2 MiB reported", tg)
	}
	if !rec.overlaps(pfnBuf, 8) || !rec.overlaps(0x10000, 0x30000) {
		t.Errorf("the PFN array or the rings were read without a touch: %v", rec.touched)
	}
	if rec.overlaps(inflated, 2<<12) || rec.overlaps(reported, 2<<20) {
		t.Errorf("pages the guest gave back were touched (fetched): %v", rec.touched)
	}
}

// TestPostcopyTarget: the VM's incoming side hands the engine the mapping
// KVM uses, passes the Toucher to its devices' guest RAM, and Halt ends
// the VM for good: stopped, with the post-copy error, and device code
// can no longer reach guest RAM.
func TestPostcopyTarget(t *testing.T) {
	v := fakeWithRAM(t, StateIncoming)
	v.ram = &guestRAM{Guest: v.mem}
	m := migrationVM{v: v}
	for i, r := range v.mem.Regions() {
		g := m.GuestMemory(i)
		if uint64(len(g)) != r.Size || reflect.ValueOf(g).Pointer() != reflect.ValueOf(v.mem.Host()[r.Offset:]).Pointer() {
			t.Errorf("region %d: GuestMemory is not the VM's mapping of it", i)
		}
	}
	rec := &recordingToucher{host: v.mem.Host()}
	m.Postcopy(rec)
	if _, err := v.ram.Slice(0x1000, 8); err != nil || len(rec.touched) != 1 {
		t.Errorf("with the engine's Toucher: %v, touched %v", err, rec.touched)
	}
	m.Postcopy(nil)
	if _, err := v.ram.Slice(0x1000, 8); err != nil || len(rec.touched) != 1 {
		t.Errorf("after Postcopy(nil): %v, touched %v", err, rec.touched)
	}
	if err := m.Halt(); err != nil {
		t.Fatal(err)
	}
	if st := v.Status().State; st != StateStopped {
		t.Errorf("state %s after Halt, want stopped", st)
	}
	if _, err := v.ram.Slice(0x1000, 8); !errors.Is(err, errHalted) {
		t.Errorf("guest RAM after Halt: %v", err)
	}
	v.mu.Lock()
	code, err := v.exitCode, v.exitErr
	v.mu.Unlock()
	if code != 1 || !errors.Is(err, errPostcopyHalted) {
		t.Errorf("the VM ends with %d, %v; want 1, %v", code, err, errPostcopyHalted)
	}
	if err := v.resume(); err == nil {
		t.Error("a halted VM resumed")
	}
}
