package bus

import (
	"bytes"
	"testing"
)

type recorder struct {
	reads, writes []uint64
}

func (r *recorder) Read(off uint64, data []byte) {
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}
func (r *recorder) Write(off uint64, data []byte) { r.writes = append(r.writes, off) }

func TestBus(t *testing.T) {
	var b Bus
	a, c := &recorder{}, &recorder{}
	if err := b.Register("a", 0x3f8, 8, a); err != nil {
		t.Fatal(err)
	}
	if err := b.Register("c", 0xf4, 4, c); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ base, size uint64 }{{0x3fc, 8}, {0x3f0, 9}, {0xf4, 1}, {0x10, 0}, {^uint64(0), 2}} {
		if err := b.Register("x", bad.base, bad.size, a); err == nil {
			t.Errorf("Register(%#x, %#x) accepted", bad.base, bad.size)
		}
	}
	d := make([]byte, 1)
	if !b.Read(0x3fd, d) || d[0] != 5 {
		t.Errorf("read 0x3fd: %v", d)
	}
	if !b.Write(0xf4, make([]byte, 4)) || len(c.writes) != 1 || c.writes[0] != 0 {
		t.Errorf("write 0xf4: %v", c.writes)
	}
	if b.Write(0xf6, make([]byte, 4)) {
		t.Error("write straddling the end of a device was dispatched")
	}
	d2 := []byte{0, 0}
	if b.Read(0x400, d2) || !bytes.Equal(d2, []byte{0xff, 0xff}) {
		t.Errorf("unclaimed read: %v", d2)
	}
}
