package memory

import "testing"

func TestMarkDirty(t *testing.T) {
	g, err := New(LowRAMTop + 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.MarkDirty(0x1ff8, 16)                     // straddles pages 1 and 2
	g.MarkDirty(HighRAMBase+5*PageSize, 1)      // first high page is memfd page LowRAMTop/4K
	g.MarkDirty(LowRAMTop-PageSize, 2*PageSize) // runs into the hole: only the last low page
	g.MarkDirty(0xfee00000, 4)                  // not RAM
	g.MarkDirty(^uint64(0)-10, 100)             // wraps
	for _, gpa := range []uint64{0x1000, 0x2000, HighRAMBase + 5*PageSize, LowRAMTop - 1} {
		if !g.IsDirty(gpa) {
			t.Errorf("%#x not dirty", gpa)
		}
	}
	for _, gpa := range []uint64{0, 0x3000, HighRAMBase + 4*PageSize, HighRAMBase} {
		if g.IsDirty(gpa) {
			t.Errorf("%#x dirty", gpa)
		}
	}
	dst := make([]uint64, g.DirtyWords())
	g.TakeDirty(dst)
	n := 0
	for _, w := range dst {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	if n != 4 {
		t.Errorf("took %d dirty pages, want 4", n)
	}
	if hp := uint64(LowRAMTop/PageSize + 5); dst[hp/64]&(1<<(hp%64)) == 0 {
		t.Error("high page not at its memfd index")
	}
	if g.IsDirty(0x1000) {
		t.Error("TakeDirty did not clear")
	}
}

func TestDiscard(t *testing.T) {
	g, err := New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, _ := g.Slice(0x10000, 3*PageSize)
	for i := range b {
		b[i] = 0x5a
	}
	if err := g.Discard(0x11000, PageSize); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x5a || b[PageSize] != 0 || b[PageSize+100] != 0 || b[2*PageSize] != 0x5a {
		t.Errorf("after discard: %x %x %x", b[0], b[PageSize], b[2*PageSize])
	}
	if !g.IsDirty(0x11000) || g.IsDirty(0x10000) {
		t.Error("discarded page not marked dirty (or its neighbour was)")
	}
	for _, bad := range [][2]uint64{{0x11001, PageSize}, {0x11000, 100}, {64 << 20, PageSize}} {
		if err := g.Discard(bad[0], bad[1]); err == nil {
			t.Errorf("Discard(%#x, %#x) succeeded", bad[0], bad[1])
		}
	}
}
