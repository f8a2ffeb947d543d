package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOwedSetTake(t *testing.T) {
	o, err := NewOwed(200)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if got := o.Set(10, 100); got != 100 {
		t.Fatalf("Set added %d, want 100", got)
	}
	if got := o.Set(100, 20); got != 10 {
		t.Fatalf("Set over owed pages added %d, want 10", got)
	}
	if got := o.Set(190, 50); got != 10 {
		t.Fatalf("Set past the end added %d, want 10 (the rest ignored)", got)
	}
	if got := o.Count(); got != 120 {
		t.Fatalf("Count %d, want 120", got)
	}
	got := o.Take(0, 64, nil)
	if len(got) != 1 || got[0].First != 10 || got[0].Count != 54 {
		t.Fatalf("Take(0, 64) = %v, want [10+54]", got)
	}
	if again := o.Take(20, 10, nil); len(again) != 0 {
		t.Fatalf("a page was taken twice: %v", again)
	}
	got = o.Take(60, 140, got[:0])
	want := []PageRun{{First: 64, Count: 56}, {First: 190, Count: 10}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Take(60, 140) = %v, want %v", got, want)
	}
	if n := o.Count(); n != 0 {
		t.Fatalf("Count %d after taking everything", n)
	}
	if p := o.Next(0); p != 200 {
		t.Fatalf("Next of an empty set = %d, want 200", p)
	}
	o.Set(5, 1)
	o.Set(150, 1)
	for _, c := range []struct{ from, want uint64 }{{0, 5}, {6, 150}, {151, 5}, {500, 5}} {
		if p := o.Next(c.from); p != c.want {
			t.Errorf("Next(%d) = %d, want %d", c.from, p, c.want)
		}
	}
	o.SetResume(77)
	o.AddCounts(OwedCounts{Answered: 3, AnsweredZero: 1, Again: 2})
	if o.Resume() != 77 || o.Counts() != (OwedCounts{3, 1, 2}) {
		t.Fatalf("header: resume %d counts %+v", o.Resume(), o.Counts())
	}
	o.Close()
	if o.Count() != 0 || len(o.Take(0, 200, nil)) != 0 || o.Set(0, 1) != 0 || o.Next(0) != 200 {
		t.Fatal("a closed set is not empty")
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestOwedExactlyOnce races takers on two mappings of one set (as the
// engine and a plugin process have): every page is taken exactly once.
func TestOwedExactlyOnce(t *testing.T) {
	const pages = 10000
	a, err := NewOwed(pages)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := mapCopy(t, a)
	defer b.Close()
	a.Set(0, pages)
	var mu sync.Mutex
	seen := make([]int, pages)
	var wg sync.WaitGroup
	for i, o := range []*Owed{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for k := 0; k < 20000; k++ {
				runs := o.Take(r.Uint64N(pages), 1+r.Uint64N(300), nil)
				mu.Lock()
				for _, run := range runs {
					for p := run.First; p < run.First+run.Count; p++ {
						seen[p]++
					}
				}
				mu.Unlock()
			}
			for p := o.Next(0); p < pages; p = o.Next(p) {
				for _, run := range o.Take(p, 64, nil) {
					mu.Lock()
					for q := run.First; q < run.First+run.Count; q++ {
						seen[q]++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for p, n := range seen {
		if n != 1 {
			t.Fatalf("page %d taken %d times", p, n)
		}
	}
}

// mapCopy maps o again through a new descriptor of its file.
func mapCopy(t *testing.T, o *Owed) *Owed {
	t.Helper()
	fd, err := unix.Dup(int(o.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := MapOwed(os.NewFile(uintptr(fd), "owed-copy"), o.Pages())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMapOwedRefuses(t *testing.T) {
	o, err := NewOwed(100)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := MapOwed(o.File(), 1<<63); !errors.Is(err, ErrProtocol) {
		t.Errorf("a page count that overflows the size: %v, want ErrProtocol", err)
	}
	if _, err := MapOwed(o.File(), 101); !errors.Is(err, ErrProtocol) {
		t.Errorf("another guest size: %v, want ErrProtocol", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "owed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, owedSize(100))); err != nil {
		t.Fatal(err)
	}
	if _, err := MapOwed(f, 100); !errors.Is(err, ErrProtocol) {
		t.Errorf("no magic: %v, want ErrProtocol", err)
	}
	// Nobody can change its size: a plugin that shrank it would kill the
	// engine's process (SIGBUS) under its mapping.
	for _, size := range []int64{0, int64(owedSize(100) + 8)} {
		if err := o.File().Truncate(size); !errors.Is(err, unix.EPERM) {
			t.Errorf("resize the set to %d bytes: %v, want EPERM", size, err)
		}
	}
	if _, err := MapOwed(rawOwed(t, 100, owedSize(100), 0), 100); !errors.Is(err, ErrProtocol) {
		t.Errorf("a set that is not sealed: %v, want ErrProtocol", err)
	}
	if _, err := MapOwed(rawOwed(t, 100, owedSize(100)+8, owedSeals), 100); !errors.Is(err, ErrProtocol) {
		t.Errorf("wrong size: %v, want ErrProtocol", err)
	}
	if m, err := MapOwed(rawOwed(t, 100, owedSize(100), owedSeals), 100); err != nil {
		t.Errorf("a well-formed set: %v", err)
	} else {
		m.Close()
	}
}

// rawOwed is a memory file with an owed set's header for pages, size
// bytes long, with seals added.
func rawOwed(t *testing.T, pages, size uint64, seals int) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("raw-owed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "raw-owed")
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[0:], owedMagic)
	binary.LittleEndian.PutUint64(hdr[8:], pages)
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	if seals != 0 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// FuzzClaim: whatever bytes arrive as a page request, Claim either
// refuses them (ErrProtocol, nothing taken) or takes exactly the
// requested pages that were owed, once, each reported with its kind,
// and PageRequest's runs encode back to the same bytes.
func FuzzClaim(f *testing.F) {
	f.Add(uint16(100), uint64(0xf0f0f0f0f0f0), AppendPageRequest(nil, []PageRun{{First: 3, Count: 5}, {First: 40, Count: 60}}))
	f.Add(uint16(1), uint64(1), AppendPageRequest(nil, []PageRun{{First: 0, Count: 1}}))
	f.Add(uint16(64), uint64(0), AppendPageRequest(nil, []PageRun{{First: 10, Count: 1}, {First: 10, Count: 1}}))
	f.Add(uint16(64), uint64(0), []byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, n uint16, pattern uint64, req []byte) {
		pages := uint64(n%512) + 1
		o, err := NewOwed(pages)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		owed := make([]bool, pages)
		for p := uint64(0); p < pages; p++ {
			if pattern>>(p%64)&1 != 0 {
				o.Set(p, 1)
				owed[p] = true
			}
		}
		zero := func(p uint64) bool { return p%3 == 0 }
		page := func(p uint64) []byte {
			b := make([]byte, 4096)
			if !zero(p) {
				b[4095] = 1
			}
			return b
		}
		runs, perr := PageRequest(req, pages, nil)
		got, err := o.Claim(req, page, nil)
		if (perr == nil) != (err == nil) {
			t.Fatalf("PageRequest says %v, Claim %v", perr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) || len(got) != 0 {
				t.Fatalf("refused with %v (runs %v), want ErrProtocol and nothing", err, got)
			}
			for p := uint64(0); p < pages; p++ {
				if left := o.Take(p, 1, nil); (len(left) == 1) != owed[p] {
					t.Fatalf("page %d: owed %v before a refused request, taken now", p, owed[p])
				}
			}
			return
		}
		if len(runs) > MaxRequestRuns {
			t.Fatalf("%d runs, more than MaxRequestRuns", len(runs))
		}
		if req[0] == 0 && !bytes.Equal(AppendPageRequest(nil, runs), req) {
			t.Fatalf("runs %v encode to other bytes", runs)
		}
		requested := make([]bool, pages)
		var want uint64
		for _, r := range runs {
			for p := r.First; p < r.First+r.Count; p++ {
				requested[p] = true
				if owed[p] {
					want++
				}
			}
		}
		claimed := make([]bool, pages)
		var count uint64
		for _, r := range got {
			for p := r.First; p < r.First+r.Count; p++ {
				if claimed[p] || !requested[p] || !owed[p] {
					t.Fatalf("page %d claimed (again %v, requested %v, owed %v)", p, claimed[p], requested[p], owed[p])
				}
				if (r.Kind == KindZero) != zero(p) {
					t.Fatalf("page %d claimed as %v", p, r.Kind)
				}
				claimed[p] = true
				count++
			}
		}
		if count != want {
			t.Fatalf("claimed %d pages, %d requested ones were owed", count, want)
		}
		for p := uint64(0); p < pages; p++ {
			if left := o.Take(p, 1, nil); (len(left) == 1) != (owed[p] && !requested[p]) {
				t.Fatalf("page %d: still owed %v after the claim (owed %v, requested %v)", p, len(left) == 1, owed[p], requested[p])
			}
		}
	})
}
