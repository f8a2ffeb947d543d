package memory

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		want []Region
		err  string
	}{
		{size: 1 << 30, want: []Region{{0, 1 << 30, 0}}},
		{size: LowRAMTop, want: []Region{{0, LowRAMTop, 0}}},
		{size: 8 << 30, want: []Region{{0, LowRAMTop, 0}, {1 << 32, 8<<30 - LowRAMTop, LowRAMTop}}},
		{size: 16<<30 + 4096, want: []Region{{0, LowRAMTop, 0}, {1 << 32, 16<<30 + 4096 - LowRAMTop, LowRAMTop}}},
		{size: 1<<30 + 1, err: "multiple of 4 KiB"},
		{size: 4 << 20, err: "too small"},
		{size: 2 << 40, err: "too large"},
	} {
		got, err := Layout(tc.size)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Layout(%d) error %v, want %q", tc.size, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Fatalf("Layout(%d) = %v, %v; want %v", tc.size, got, err, tc.want)
		}
		var total uint64
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Layout(%d)[%d] = %+v, want %+v", tc.size, i, got[i], tc.want[i])
			}
			if got[i].GPA < HighRAMBase && got[i].End() > LowRAMTop {
				t.Errorf("region %+v overlaps the MMIO hole", got[i])
			}
			total += got[i].Size
		}
		if total != tc.size {
			t.Errorf("Layout(%d) covers %d bytes", tc.size, total)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"512M", 512 << 20, false}, {"8G", 8 << 30, false}, {"8GiB", 8 << 30, false},
		{"8gb", 8 << 30, false}, {"1T", 1 << 40, false}, {"65536K", 64 << 20, false},
		{"1024", 1 << 30, false}, {" 2G ", 2 << 30, false},
		{"", 0, true}, {"G", 0, true}, {"1.5G", 0, true}, {"-1G", 0, true}, {"12X", 0, true},
		{"99999999999999T", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestRegionContains(t *testing.T) {
	r := Region{GPA: 0x1000, Size: 0x2000}
	for _, tc := range []struct {
		gpa, n uint64
		want   bool
	}{
		{0x1000, 0x2000, true}, {0x2fff, 1, true}, {0x3000, 1, false}, {0xfff, 2, false},
		{0x1000, 0x2001, false}, {^uint64(0), 2, false}, {0x2000, ^uint64(0), false},
	} {
		if got := r.Contains(tc.gpa, tc.n); got != tc.want {
			t.Errorf("Contains(%#x, %#x) = %v", tc.gpa, tc.n, got)
		}
	}
}

func TestGuestSparse(t *testing.T) {
	g, err := New(8 << 30)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, err := g.Slice(HighRAMBase+4096, 8)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, "ferry!!!")
	if got := string(g.Host()[LowRAMTop+4096 : LowRAMTop+4104]); got != "ferry!!!" {
		t.Errorf("high RAM write landed wrong: %q", got)
	}
	if _, err := g.Slice(LowRAMTop-4, 8); err == nil {
		t.Error("Slice across the MMIO hole succeeded")
	}
	var st unix.Stat_t
	if err := unix.Fstat(g.Fd(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("an untouched 8 GiB guest uses %d bytes of host memory", st.Blocks*512)
	}
	// Its size is sealed: a plugin handed the memfd cannot truncate it
	// under the VMM's mapping (punching holes stays allowed: Discard).
	want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if seals, err := unix.FcntlInt(uintptr(g.Fd()), unix.F_GET_SEALS, 0); err != nil || seals&want != want {
		t.Errorf("guest memfd seals %#x (%v), want %#x", seals, err, want)
	}
	if err := unix.Ftruncate(g.Fd(), 0); err == nil {
		t.Error("the guest memfd could be truncated")
	}
}
