package cmma

import (
	"slices"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

func rng(first, count uint64) hint.Range { return hint.Range{First: first, Count: count} }

// testRAM: frames 0..15 are pages 0..15; frames 0x100000..0x100007 (GPA
// 4 GiB) are pages 16..23.
var testRAM = []hint.Region{{GPA: 0, Size: 16 * pageSize}, {GPA: 4 << 30, Size: 8 * pageSize}}

func TestUnused(t *testing.T) {
	for v, want := range map[byte]bool{
		0x00: false, // stable
		0x01: true,  // unused
		0x02: false, // potentially volatile
		0x03: false, // volatile
		0x40: false, // stable, no-DAT
		0x41: true,  // unused, no-DAT
		0x43: false, // volatile, no-DAT
		0x81: false, // a bit KVM never sets: not trusted
		0x05: false,
		0x21: false,
		0xff: false,
	} {
		if Unused(v) != want {
			t.Errorf("Unused(%#02x) = %t", v, !want)
		}
	}
}

func TestDecode(t *testing.T) {
	l, err := NewLayout(testRAM)
	if err != nil {
		t.Fatal(err)
	}
	const S, U, P, V, N = UsageStable, UsageUnused, UsagePotVolatile, UsageVolatile, NoDAT
	for _, c := range []struct {
		name   string
		first  uint64
		values []byte
		want   []hint.Range
	}{
		{"all stable", 0, []byte{S, S, S, S}, nil},
		{"unused runs", 0, []byte{U, U, S, U | N, V, P, U, U, U}, []hint.Range{rng(0, 2), rng(3, 1), rng(6, 3)}},
		{"offset", 5, []byte{U, S, U}, []hint.Range{rng(5, 1), rng(7, 1)}},
		{"garbage bits", 0, []byte{0x81, 0x05, U, 0xff}, []hint.Range{rng(2, 1)}},
		{"past region 0 into the gap", 14, []byte{U, U, U, U}, []hint.Range{rng(14, 2)}},
		{"region 1", 0x100000, []byte{U, S, U, U}, []hint.Range{rng(16, 1), rng(18, 2)}},
		{"past the end of RAM", 0x100006, []byte{U, U, U}, []hint.Range{rng(22, 2)}},
		{"before RAM", 0xfffff, []byte{U, U}, []hint.Range{rng(16, 1)}},
		{"outside RAM", 0x200000, []byte{U, U}, nil},
		{"near 2^64", ^uint64(0) - 1, []byte{U, U, U, U}, nil},
		{"empty", 0, nil, nil},
	} {
		if got := l.Decode(nil, c.first, c.values); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Region 0's last frame and region 1's first are neighbouring pages:
	// values from two calls coalesce into one range.
	got := l.Decode(nil, 15, []byte{U})
	got = l.Decode(got, 0x100000, []byte{U, U})
	if want := []hint.Range{rng(15, 3)}; !slices.Equal(got, want) {
		t.Errorf("across regions: %v, want %v", got, want)
	}
}

func TestNewLayout(t *testing.T) {
	for _, bad := range [][]hint.Region{
		{{GPA: 0, Size: 100}},
		{{GPA: 1, Size: pageSize}},
		{{GPA: 0, Size: 0}},
		{{GPA: 1 << 20, Size: pageSize}, {GPA: 0, Size: pageSize}},
		{{GPA: 0, Size: 2 * pageSize}, {GPA: pageSize, Size: pageSize}},
		{{GPA: ^uint64(0) &^ (pageSize - 1), Size: 2 * pageSize}},
	} {
		if _, err := NewLayout(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// FuzzDecode: any values at any frame decode without panic into sorted,
// disjoint ranges inside RAM, holding exactly the frames whose value says
// unused.
func FuzzDecode(f *testing.F) {
	f.Add(uint64(0), []byte{1, 1, 0, 0x41, 3})
	f.Add(uint64(14), []byte{1, 1, 1, 1})
	f.Add(uint64(0xffffe), []byte{1, 2, 1, 0x81, 1})
	f.Add(^uint64(0), []byte{1})
	l, _ := NewLayout(testRAM)
	f.Fuzz(func(t *testing.T, first uint64, values []byte) {
		got := l.Decode(nil, first, values)
		in := map[uint64]bool{}
		for i, r := range got {
			if r.Count == 0 || r.First+r.Count > 24 || (i > 0 && r.First <= got[i-1].First+got[i-1].Count) {
				t.Fatalf("ranges %v", got)
			}
			for p := r.First; p < r.First+r.Count; p++ {
				in[p] = true
			}
		}
		for i, v := range values {
			g := first + uint64(i)
			if g < first {
				break // wrapped past 2^64
			}
			var page uint64
			switch {
			case g < 16:
				page = g
			case g >= 0x100000 && g < 0x100008:
				page = 16 + g - 0x100000
			default:
				continue
			}
			if in[page] != Unused(v) {
				t.Fatalf("frame %#x (value %#02x) → page %d reported %t", g, v, page, in[page])
			}
			delete(in, page)
		}
		if len(in) != 0 {
			t.Fatalf("pages %v reported without a value", in)
		}
	})
}
