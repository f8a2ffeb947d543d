package pagemap

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

func TestEntryPopulated(t *testing.T) {
	for _, c := range []struct {
		e    entry
		want bool
	}{
		{0, false},
		{entrySoftDirty, false},          // empty entry of a VM_SOFTDIRTY area
		{entryPresent | 0x1234, true},    // mapped page with its PFN
		{entryPresent | entryFile, true}, // page cache page
		{entrySwapped | 0x55, true},      // swap or migration entry
		{entrySwapped | entryFile, true}, // shmem page being migrated
		{entryGuard, true},               // guard region marker
		{entryUffdWP, true},              // uffd-wp marker on an empty entry
		{entryExclusive, true},           // never alone, but counts
		{1 << 59, true},                  // unknown bits: be careful
		{1 << 60, true},                  //
		{entryPFNMask, false},            // a PFN without present or swapped means nothing
		{entryPFNMask | entrySoftDirty, false},
	} {
		if got := c.e.populated(); got != c.want {
			t.Errorf("%v: populated = %t, want %t", c.e, got, c.want)
		}
	}
}

func entries(es ...entry) []byte {
	b := make([]byte, 0, len(es)*entrySize)
	for _, e := range es {
		b = binary.NativeEndian.AppendUint64(b, uint64(e))
	}
	return b
}

func TestDecodeEntries(t *testing.T) {
	P, S, D := entryPresent, entrySwapped, entrySoftDirty
	got, err := decodeEntries(nil, 100, entries(0, P, P|1, S, 0, D, P, 0))
	want := []hint.Range{{First: 101, Count: 3}, {First: 106, Count: 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	// Appending continues a run that ended at the previous buffer's end.
	got, _ = decodeEntries(got, 107, entries(P, 0))
	if want := []hint.Range{{First: 101, Count: 3}, {First: 106, Count: 2}}; !slices.Equal(got, want) {
		t.Fatalf("continued: %v, want %v", got, want)
	}
	for _, n := range []int{1, 7, 9, 15} {
		if _, err := decodeEntries(nil, 0, make([]byte, n)); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
	}
	if got, err := decodeEntries(nil, 0, nil); err != nil || got != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
}

// FuzzDecodeEntries: any bytes decode without panic into sorted, disjoint,
// non-adjacent runs of exactly the populated entries.
func FuzzDecodeEntries(f *testing.F) {
	f.Add(entries(0, entryPresent, entrySwapped, entrySoftDirty), uint64(0))
	f.Add([]byte{1, 2, 3}, uint64(5))
	f.Add(entries(entryGuard, entryUffdWP, 1<<59), uint64(1)<<40)
	f.Fuzz(func(t *testing.T, buf []byte, first uint64) {
		first %= 1 << 52
		got, err := decodeEntries(nil, first, buf)
		if len(buf)%entrySize != 0 {
			if err == nil {
				t.Fatalf("%d bytes accepted", len(buf))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		in := map[uint64]bool{}
		for i, r := range got {
			if r.Count == 0 || (i > 0 && r.First <= got[i-1].First+got[i-1].Count) {
				t.Fatalf("runs %v not sorted, disjoint and apart", got)
			}
			for p := r.First; p < r.First+r.Count; p++ {
				in[p] = true
			}
		}
		for i := 0; i < len(buf)/entrySize; i++ {
			e := entry(binary.NativeEndian.Uint64(buf[i*entrySize:]))
			if in[first+uint64(i)] != e.populated() {
				t.Fatalf("entry %d (%v) decoded as populated=%t", i, e, in[first+uint64(i)])
			}
		}
		if len(in) > len(buf)/entrySize {
			t.Fatalf("%d pages from %d entries", len(in), len(buf)/entrySize)
		}
	})
}
