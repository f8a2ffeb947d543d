package cmma

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// fakeS390 is a VMM with CMMA: a value per frame of its RAM (absent:
// stable). peek mode answers like KVM_S390_CMMA_PEEK; otherwise like the
// migration-mode walk: from the first dirty frame at or after start
// (wrapping around to the lowest), until 16 clean frames in a row, and
// the answered frames are clean afterwards.
type fakeS390 struct {
	mu     sync.Mutex
	ram    Layout
	values map[uint64]byte
	dirty  map[uint64]bool // migration mode only
	peek   bool
	calls  int
	err    error
	block  chan struct{} // if set, CMMABits waits for it or ctx
}

func (h *fakeS390) inRAM(g uint64) bool {
	for _, s := range h.ram {
		if g >= s.gfn && g < s.gfn+s.frames {
			return true
		}
	}
	return false
}

func (h *fakeS390) CMMABits(ctx context.Context, start uint64, count int) (uint64, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.block != nil {
		h.mu.Unlock()
		select {
		case <-h.block:
		case <-ctx.Done():
		}
		h.mu.Lock()
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
	}
	if h.err != nil {
		return 0, nil, h.err
	}
	if count > FramesPerCall {
		return 0, nil, fmt.Errorf("asked for %d values", count)
	}
	if h.peek {
		if !h.inRAM(start) {
			return 0, nil, errors.New("EFAULT")
		}
		var out []byte
		for g := start; len(out) < count && h.inRAM(g); g++ {
			out = append(out, h.values[g])
		}
		return start, out, nil
	}
	if len(h.dirty) == 0 {
		return 0, nil, nil
	}
	var next []uint64
	for g := range h.dirty {
		next = append(next, g)
	}
	slices.Sort(next)
	i, _ := slices.BinarySearch(next, start)
	if i == len(next) {
		i = 0 // wrap around, as kvm_s390_next_dirty_cmma does
	}
	first := next[i]
	var out []byte
	clean := 0
	for g := first; len(out) < count && h.inRAM(g) && clean < 16; g++ {
		if h.dirty[g] {
			clean = 0
		} else {
			clean++
		}
		delete(h.dirty, g)
		out = append(out, h.values[g])
	}
	return first, out[:len(out)-clean], nil
}

func (*fakeS390) BalloonHint(context.Context) ([]hint.GPARange, error) {
	return nil, hint.ErrNotSupported
}
func (*fakeS390) BalloonDone(context.Context) error { return hint.ErrNotSupported }

// x86Host is the reference VMM on x86: no CMMA.
type x86Host struct{ fakeS390 }

func (*x86Host) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, fmt.Errorf("%w: CMMA is s390-only; this is an x86-64 VM", hint.ErrNotSupported)
}

// bigRAM: 2 GiB at 0 and 1 GiB at 4 GiB, so a region takes several calls.
var bigRAM = []hint.Region{{GPA: 0, Size: 2 << 30}, {GPA: 4 << 30, Size: 1 << 30}}

func newFake(t *testing.T, ram []hint.Region, peek bool, unused map[uint64]byte) *fakeS390 {
	l, err := NewLayout(ram)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeS390{ram: l, values: unused, peek: peek, dirty: map[uint64]bool{}}
	if !peek { // migration mode starts with every value dirty
		for _, s := range l {
			for g := s.gfn; g < s.gfn+s.frames; g++ {
				h.dirty[g] = true
			}
		}
	}
	return h
}

func hints(t *testing.T, p *Provider) ([]hint.Range, error) {
	var all []hint.Range
	err := p.Hints(context.Background(), hint.Request{Generation: 1}, func(rs []hint.Range) error {
		if len(rs) == 0 || len(rs) > hint.BatchRanges {
			t.Errorf("emit of %d ranges", len(rs))
		}
		all = append(all, rs...)
		return nil
	})
	return all, err
}

// TestHintsFromValues: unused frames come back as page ranges, across
// calls and regions, with KVM's peek and migration-mode answers alike.
func TestHintsFromValues(t *testing.T) {
	const g1 = (4 << 30) / pageSize // first frame of region 1; its page index is 512 Ki
	values := map[uint64]byte{
		0: UsageUnused, 1: UsageUnused | NoDAT, 2: UsageVolatile, 3: UsagePotVolatile,
		FramesPerCall - 1: UsageUnused, FramesPerCall: UsageUnused, // across a call boundary
		5000: UsageUnused, 5001: 0x81, // a value KVM never produces: no hint
		(2<<30)/pageSize - 1: UsageUnused, g1: UsageUnused, // across the region boundary
		g1 + 1000: UsageUnused,
	}
	want := []hint.Range{rng(0, 2), rng(5000, 1), rng(FramesPerCall-1, 2),
		rng(1<<19-1, 2), rng(1<<19+1000, 1)}
	for _, peek := range []bool{true, false} {
		h := newFake(t, bigRAM, peek, values)
		p := New(nil)
		if err := p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, h); err != nil {
			t.Fatal(err)
		}
		got, err := hints(t, p)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("peek=%t: %v, %v; want %v", peek, got, err, want)
		}
		t.Logf("peek=%t: %d CMMABits calls", peek, h.calls)
		if !peek { // a second generation sees only what changed since
			h.values[7] = UsageUnused
			h.dirty[7] = true
			if got, err := hints(t, p); err != nil || !slices.Equal(got, []hint.Range{rng(7, 1)}) {
				t.Fatalf("second generation: %v, %v", got, err)
			}
		}
		p.Close(context.Background(), true)
	}
}

// TestManyRanges: thousands of unused frames arrive in several emits.
func TestManyRanges(t *testing.T) {
	values := map[uint64]byte{}
	for g := uint64(0); g < 20000; g += 2 {
		values[g] = UsageUnused
	}
	p := New(nil)
	p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, newFake(t, bigRAM, true, values))
	got, err := hints(t, p)
	if err != nil || len(got) != 10000 || got[9999] != rng(19998, 1) {
		t.Fatalf("%d ranges, %v", len(got), err)
	}
}

// TestNotSupported: on x86 the VMM's CMMABits says ErrNotSupported: Configure
// succeeds, Hints yields nothing and an ErrNotSupported error, the log says
// why once, and the host is not asked again.
func TestNotSupported(t *testing.T) {
	var log bytes.Buffer
	p := New(hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info}))
	h := &x86Host{}
	if err := p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, h); err != nil {
		t.Fatalf("Configure on x86: %v", err)
	}
	for range 3 {
		got, err := hints(t, p)
		if !errors.Is(err, hint.ErrNotSupported) || len(got) != 0 || !strings.Contains(err.Error(), NotSupported) {
			t.Fatalf("Hints on x86: %v, %v", got, err)
		}
	}
	if n := strings.Count(log.String(), NotSupported); n != 1 {
		t.Fatalf("said %d times:\n%s", n, log.String())
	}
	// Configure with no host at all: the same.
	p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, nil)
	if _, err := hints(t, p); !errors.Is(err, hint.ErrNotSupported) {
		t.Fatalf("no host: %v", err)
	}
}

// TestHostErrors: a failing host ends Hints with its error; an answer that
// does not fit (before the asked frame, beyond the region) ends the region.
func TestHostErrors(t *testing.T) {
	h := newFake(t, bigRAM, true, nil)
	h.err = errors.New("EFAULT")
	p := New(nil)
	p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, h)
	if _, err := hints(t, p); err == nil || !strings.Contains(err.Error(), "EFAULT") || errors.Is(err, hint.ErrNotSupported) {
		t.Fatalf("host error: %v", err)
	}
	p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, &liar{})
	if got, err := hints(t, p); err != nil || !slices.Equal(got, []hint.Range{rng(3, 1)}) {
		t.Fatalf("liar: %v, %v", got, err)
	}
}

// liar answers its first call (region 0) with values from frame 3 on,
// far more than asked for, reaching into region 1 (whose frame 0x100005
// they say unused: that must be cut off), and its second (region 1) with
// frames before the one asked for (ignored: region 1 is done).
type liar struct{ fakeS390 }

func (l *liar) CMMABits(_ context.Context, start uint64, count int) (uint64, []byte, error) {
	l.calls++
	if l.calls == 2 {
		return start - 1, []byte{UsageUnused, UsageUnused}, nil
	}
	v := make([]byte, 0x100010)
	v[0] = UsageUnused
	v[0x100005-3] = UsageUnused
	return start + 3, v, nil
}

// TestConfigure: what Configure refuses.
func TestConfigure(t *testing.T) {
	p := New(nil)
	if err := p.Configure(context.Background(), hint.Config{"x": "y"}, hint.VM{RAM: bigRAM}, nil); !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("unknown attribute: %v", err)
	}
	if err := p.Configure(context.Background(), nil, hint.VM{RAM: []hint.Region{{Size: 7}}}, nil); !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("bad RAM: %v", err)
	}
	if err := p.Configure(context.Background(), hint.Config{"deadline": int64(5)}, hint.VM{RAM: bigRAM}, nil); err != nil {
		t.Errorf("deadline: %v", err)
	}
	if err := New(nil).Hints(context.Background(), hint.Request{}, nil); !errors.Is(err, errNotConfigured) {
		t.Errorf("Hints before Configure: %v", err)
	}
	info, _ := p.Info(context.Background())
	s, _ := p.Schema(context.Background())
	if info.Name != "cmma" || info.Meaning != hint.MeaningUnused || len(s) != 0 {
		t.Errorf("info %+v, schema %+v", info, s)
	}
}

// TestCloseDuringHints: Close stops a Hints that waits in the host.
func TestCloseDuringHints(t *testing.T) {
	h := newFake(t, bigRAM, true, nil)
	h.block = make(chan struct{})
	p := New(nil)
	p.Configure(context.Background(), nil, hint.VM{RAM: bigRAM}, h)
	calls := func() int { h.mu.Lock(); defer h.mu.Unlock(); return h.calls }
	before := calls()
	done := make(chan error)
	go func() { _, err := hints(t, p); done <- err }()
	for deadline := time.Now().Add(10 * time.Second); calls() == before && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // until Hints waits in the host
	}
	p.Close(context.Background(), true)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Hints after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hints did not stop")
	}
	if _, err := hints(t, p); !errors.Is(err, errNotConfigured) {
		t.Fatalf("Hints after Close: %v", err)
	}
}
