package balloon

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

var ram = []hint.Region{{GPA: 0, Size: 0xC000_0000}, {GPA: 1 << 32, Size: 1 << 30}}

func TestPageRanges(t *testing.T) {
	got := hint.VM{RAM: ram}.PageRanges([]hint.GPARange{
		{GPA: 0x40_0000, Size: 4 << 20},   // low RAM
		{GPA: 1 << 32, Size: 4 << 20},     // first high page = page 0xC0000
		{GPA: 0xBFFF_F000, Size: 0x2000},  // runs into the hole: one page kept
		{GPA: 0xfee0_0000, Size: 4096},    // not RAM
		{GPA: 0x1001, Size: 0x2000},       // partial pages dropped: page 2 only
		{GPA: ^uint64(0) - 10, Size: 100}, // wraps
	})
	want := []hint.Range{{First: 0x400, Count: 1024}, {First: 0xC0000, Count: 1024},
		{First: 0xBFFFF, Count: 1}, {First: 2, Count: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

type host struct {
	ranges []hint.GPARange
	err    error
	done   int
}

func (h *host) BalloonHint(context.Context) ([]hint.GPARange, error) { return h.ranges, h.err }
func (h *host) BalloonDone(context.Context) error                    { h.done++; return h.err }
func (h *host) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, hint.ErrNotSupported
}

func TestProvider(t *testing.T) {
	h := &host{ranges: []hint.GPARange{{GPA: 0x40_0000, Size: 4 << 20}}}
	p := New()
	ctx := context.Background()
	if err := p.Configure(ctx, nil, hint.VM{RAM: ram}, h); err != nil {
		t.Fatal(err)
	}
	var got []hint.Range
	err := p.Hints(ctx, hint.Request{Generation: 1}, func(r []hint.Range) error { got = append(got, r...); return nil })
	if err != nil || len(got) != 1 || got[0].Count != 1024 {
		t.Fatalf("hints %v, %v", got, err)
	}
	if err := p.Close(ctx, true); err != nil || h.done != 1 {
		t.Fatalf("close: %v, DONE sent %d times", err, h.done)
	}
}

func TestNoBalloon(t *testing.T) {
	h := &host{err: hint.ErrNotSupported}
	p := New()
	ctx := context.Background()
	p.Configure(ctx, nil, hint.VM{RAM: ram}, h)
	err := p.Hints(ctx, hint.Request{Generation: 1}, func([]hint.Range) error { return nil })
	if !errors.Is(err, hint.ErrNotSupported) {
		t.Fatalf("err %v, want not supported", err)
	}
	if err := p.Close(ctx, true); err != nil {
		t.Fatalf("close of an unsupported provider: %v", err)
	}
}
