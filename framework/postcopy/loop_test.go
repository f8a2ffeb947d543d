package postcopy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/internal/uffd"
)

// fakeFaults delivers batches of events from a channel.
type fakeFaults struct {
	batches chan []uffd.Event
	stop    chan struct{}
	pending []uffd.Event
}

func newFakeFaults(buffered int) *fakeFaults {
	return &fakeFaults{batches: make(chan []uffd.Event, buffered), stop: make(chan struct{})}
}

func (f *fakeFaults) Wait(time.Duration) error {
	select {
	case <-f.stop:
		return uffd.ErrStopped
	case b := <-f.batches:
		f.pending = b
		return nil
	}
}

func (f *fakeFaults) Read(buf []uffd.Event) (int, error) {
	n := copy(buf, f.pending)
	f.pending = nil
	return n, nil
}

func (f *fakeFaults) Interrupt() { close(f.stop) }

// The loop maps addresses to pages across regions, and ends with the
// context, at once.
func TestLoop(t *testing.T) {
	m := Mapping{{Host: 0x10000, Size: 2 * PageSize}, {Host: 0x80000, Size: 4 * PageSize}}
	s, f := newFake(m.Pages())
	ff := newFakeFaults(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ff, m) }()
	ff.batches <- []uffd.Event{
		{Kind: uffd.EventPagefault, Address: 0x11000},
		{Kind: uffd.EventPagefault, Address: 0x82000, Flags: uffd.FlagMinor},
	}
	ff.batches <- nil // taken only once the loop applied the first batch
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}
	expect(t, f, "request 1+1", "request 4+1")
}

// A fault outside the mapping ends the loop with ErrRange.
func TestLoopOutside(t *testing.T) {
	m := Mapping{{Host: 0x10000, Size: PageSize}}
	s, _ := newFake(1)
	ff := newFakeFaults(1)
	ff.batches <- []uffd.Event{{Kind: uffd.EventPagefault, Address: 0x20000}}
	if err := s.Run(context.Background(), ff, m); !errors.Is(err, ErrRange) {
		t.Fatalf("Run: %v, want ErrRange", err)
	}
}

func TestMappingEach(t *testing.T) {
	m := Mapping{{Host: 0x10000, Size: 2 * PageSize}, {Host: 0x80000, Size: 4 * PageSize}}
	var got []uint64
	err := m.each(1, 3, func(r Region, off, n uint64) error {
		got = append(got, uint64(r.Host)+off, n/PageSize)
		return nil
	})
	if err != nil || len(got) != 4 || got[0] != 0x11000 || got[1] != 1 || got[2] != 0x80000 || got[3] != 2 {
		t.Fatalf("%x %v", got, err)
	}
	if err := m.each(5, 2, func(Region, uint64, uint64) error { return nil }); !errors.Is(err, ErrRange) {
		t.Fatalf("past the end: %v", err)
	}
}
