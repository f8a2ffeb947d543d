package pagemap

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// newMemfd returns a memfd of size bytes, never written.
func newMemfd(t testing.TB, size int64) *os.File {
	t.Helper()
	return plugintest.Memfd(t, "ferry-pagemap-test", size)
}

// pwritePages writes a non-zero byte into each page with pwrite (the page
// enters the page cache without being mapped anywhere).
func pwritePages(t testing.TB, f *os.File, pages ...uint64) {
	t.Helper()
	b := []byte{0xa5}
	for _, p := range pages {
		if _, err := f.WriteAt(b, int64(p*pageSize)+17); err != nil {
			t.Fatalf("pwrite page %d: %v", p, err)
		}
	}
}

func punch(t testing.TB, f *os.File, first, count uint64) {
	t.Helper()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
		int64(first*pageSize), int64(count*pageSize)); err != nil {
		t.Fatalf("punch: %v", err)
	}
}

// complement returns the ranges of [0, pages) not in set.
func complement(pages uint64, set map[uint64]bool) []hint.Range {
	var out []hint.Range
	for p := uint64(0); p < pages; p++ {
		if set[p] {
			continue
		}
		if n := len(out); n > 0 && out[n-1].First+out[n-1].Count == p {
			out[n-1].Count++
		} else {
			out = append(out, hint.Range{First: p, Count: 1})
		}
	}
	return out
}

func setOf(pages ...uint64) map[uint64]bool {
	m := map[uint64]bool{}
	for _, p := range pages {
		m[p] = true
	}
	return m
}

// configure returns a Provider configured with method for vm.
func configure(t testing.TB, method string, vm hint.VM) *Provider {
	t.Helper()
	p := New(hclog.NewNullLogger())
	if err := p.Configure(context.Background(), hint.Config{"method": method}, vm, nil); err != nil {
		t.Fatalf("Configure(method=%s): %v", method, err)
	}
	t.Cleanup(func() { p.Close(context.Background(), true) })
	return p
}

// collect runs one Hints call and returns its ranges and emit calls.
func collect(t testing.TB, p *Provider) ([]hint.Range, int) {
	t.Helper()
	var all []hint.Range
	calls := 0
	err := p.Hints(context.Background(), hint.Request{Generation: 1}, func(rs []hint.Range) error {
		calls++
		if len(rs) == 0 || len(rs) > hint.BatchRanges {
			t.Errorf("emit with %d ranges", len(rs))
		}
		all = append(all, rs...)
		return nil
	})
	if err != nil {
		t.Fatalf("Hints: %v", err)
	}
	return all, calls
}

func checkRanges(t testing.TB, got, want []hint.Range) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("ranges:\n got %v\nwant %v", got, want)
	}
}
