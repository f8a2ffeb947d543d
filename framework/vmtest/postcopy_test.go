package vmtest_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/vmtest"
)

var _ framework.PostcopyTarget = (*vmtest.VM)(nil)

// recToucher records Touch calls; block, while set, holds them.
type recToucher struct {
	mu     sync.Mutex
	reads  int
	writes int
	block  chan struct{}
}

func (r *recToucher) Touch(b []byte, write bool) error {
	r.mu.Lock()
	if write {
		r.writes++
	} else {
		r.reads++
	}
	block := r.block
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	if len(b) == 0 || len(b)%framework.PageSize != 0 {
		return errors.New("touch of a partial page")
	}
	return nil
}

func (r *recToucher) counts() (int, int) { r.mu.Lock(); defer r.mu.Unlock(); return r.reads, r.writes }

// While a Toucher is set, every access to guest RAM from Go touches
// first (writes as writes); Postcopy(nil) ends it.
func TestPostcopyTouches(t *testing.T) {
	v := newVM(t, vmtest.Options{WriteEvery: time.Millisecond})
	if len(v.GuestMemory(1)) != int(v.RAM()[1].Size) {
		t.Fatal("GuestMemory is not the region's mapping")
	}
	tc := &recToucher{}
	v.Postcopy(tc)
	deadline := time.Now().Add(5 * time.Second)
	for _, w := tc.counts(); w < 20; _, w = tc.counts() {
		if time.Now().After(deadline) {
			t.Fatal("the writer does not touch")
		}
		time.Sleep(time.Millisecond)
	}
	must(t, v.Write(64<<20))
	if v.Page(3) == nil {
		t.Fatal("Page failed")
	}
	must(t, v.Verify())
	r, _ := tc.counts()
	if r < 1+len(v.RAM()) {
		t.Fatalf("%d read touches, want Page's and Verify's", r)
	}
	v.Postcopy(nil)
	must(t, v.Pause(t.Context()))
	r0, w0 := tc.counts()
	v.Page(4)
	must(t, v.Verify())
	if r, w := tc.counts(); r != r0 || w != w0 {
		t.Fatal("touched after Postcopy(nil)")
	}
	if c := v.Counters(); c.Postcopies != 1 || c.TouchErrors != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// Halt stops the VM for good without waiting for a write blocked on a
// missing page; that write then finds the VM halted and writes nothing.
func TestHalt(t *testing.T) {
	v := newVM(t, vmtest.Options{WriteEvery: time.Millisecond, OnHalt: func() string { return "seen" }})
	tc := &recToucher{block: make(chan struct{})}
	v.Postcopy(tc)
	deadline := time.Now().Add(5 * time.Second)
	for _, w := tc.counts(); w < 1; _, w = tc.counts() { // the writer waits on its page
		if time.Now().After(deadline) {
			t.Fatal("the writer does not touch")
		}
		time.Sleep(time.Millisecond)
	}
	writes := v.Counters().Writes
	done := make(chan error, 1)
	go func() { done <- v.Halt() }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Halt waited for a blocked write")
	}
	close(tc.block)
	time.Sleep(20 * time.Millisecond)
	if v.State() != vmtest.StateHalted || v.Counters().Writes != writes || v.Counters().Halts != 1 {
		t.Fatalf("state %v, writes %d → %d", v.State(), writes, v.Counters().Writes)
	}
	if err := v.Write(0); !errors.Is(err, vmtest.ErrPaused) {
		t.Fatalf("Write after Halt: %v", err)
	}
	if err := v.Resume(); err == nil {
		t.Fatal("Resume after Halt")
	}
	if n := v.HaltNotes(); len(n) != 1 || n[0] != "seen" {
		t.Fatalf("notes %q", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
