package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// checkingMem records the ranges Slice reached; Check only checks.
type checkingMem struct {
	*virtiotest.Mem
	sliced [][2]uint64
}

func (m *checkingMem) Slice(gpa, n uint64) ([]byte, error) {
	m.sliced = append(m.sliced, [2]uint64{gpa, n})
	return m.Mem.Slice(gpa, n)
}

func (m *checkingMem) Check(gpa, n uint64) error {
	_, err := m.Mem.Slice(gpa, n)
	return err
}

// TestQueueChecksWithoutReaching: with a Memory that is a Checker (the
// VMM's guest RAM, which brings pages in during post-copy), validating
// the rings and a chain's buffers never reaches their bytes: only the
// avail ring, the descriptor table and the used ring are sliced.
func TestQueueChecksWithoutReaching(t *testing.T) {
	mem := &checkingMem{Mem: virtiotest.NewMem(1 << 16)}
	q := Queue{MaxSize: 4, Size: 4, Ready: true, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000}
	if err := q.validate(mem); err != nil {
		t.Fatal(err)
	}
	d := mem.B[0x1000:]
	binary.LittleEndian.PutUint64(d, 0x8000)     // buffer address
	binary.LittleEndian.PutUint32(d[8:], 0x4000) // length: four pages
	binary.LittleEndian.PutUint16(mem.B[0x2002:], 1)
	c, ok, err := q.Pop(mem)
	if err != nil || !ok || len(c.Descs) != 1 || c.Descs[0].Addr != 0x8000 {
		t.Fatalf("pop: %+v, %v, %v", c, ok, err)
	}
	if err := q.Push(mem, c.Head, 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range mem.sliced {
		if r[0]+r[1] > 0x8000 || r[0] < 0x1000 {
			t.Errorf("sliced %#x+%#x: the queue reached bytes it only had to check", r[0], r[1])
		}
	}
	if len(mem.sliced) == 0 {
		t.Error("nothing sliced: the rings must be read through Slice")
	}
	// A buffer outside RAM is still refused through Check.
	binary.LittleEndian.PutUint64(d, 0xff000)
	binary.LittleEndian.PutUint16(mem.B[0x2002:], 2)
	binary.LittleEndian.PutUint16(mem.B[0x2006:], 0)
	if _, _, err := q.Pop(mem); err == nil {
		t.Error("a buffer outside RAM passed Check")
	}
}
