package hint

import (
	"context"
	"sync/atomic"
	"testing"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// scanHost serves a window over a VMM that answers every CMMABits with
// as many values as asked for, from where asked (startGFN blocks, when
// set, hold that call until release closes); cmma runs one call through
// the hostServer and reports whether it gave its broker token back.
type scanHost struct {
	s       *hostServer
	w       *window
	blocks  uint64
	entered chan struct{}
	release chan struct{}
}

func newScanHost(blocks uint64) *scanHost {
	h := &scanHost{blocks: blocks, entered: make(chan struct{}), release: make(chan struct{})}
	h.w = newWindow(&MockHost{CMMABitsFunc: func(_ context.Context, start uint64, count int) (uint64, []byte, error) {
		if start == h.blocks && h.blocks != 0 {
			close(h.entered)
			<-h.release
		}
		return start, make([]byte, count), nil
	}}, ^uint64(0))
	h.s = &hostServer{impl: h.w}
	return h
}

func (h *scanHost) cmma(start uint64, count int) (bool, error) {
	var refunds atomic.Int32
	ctx := plugproc.WithRefund(context.Background(), func() { refunds.Add(1) })
	_, err := h.s.CMMABits(ctx, &pb.CMMABitsRequest{StartGfn: start, Count: uint32(count)})
	return refunds.Load() == 1, err
}

// step runs one call and reports whether it counted as a scan's step.
func (h *scanHost) step(t *testing.T, start uint64, count int) bool {
	t.Helper()
	refunded, err := h.cmma(start, count)
	if err != nil {
		t.Fatal(err)
	}
	return refunded
}

// TestScanStepAfterGrant: a scan step whose call began before a hints
// request (grant) does not count against the new request's scan: the
// previous Hints, cancelled by a dirty sync while its CMMABits call was
// in the VMM, must not leave its place in guest RAM behind, or the scan
// of the request asked for at once would be held to the broker's rate
// up to there, and a large guest would lose its hints past the deadline.
func TestScanStepAfterGrant(t *testing.T) {
	const high = 1 << 28 // 1 TiB into guest RAM
	h := newScanHost(high)
	done := make(chan error)
	go func() {
		_, err := h.cmma(high, minRefundedCMMA)
		done <- err
	}()
	<-h.entered
	h.w.grant() // the engine asks again: a new scan begins
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range uint64(4) {
		if !h.step(t, i*minRefundedCMMA, minRefundedCMMA) {
			t.Fatalf("step %d of the scan after a hints request is held to the broker's rate: "+
				"a step of the previous request's scan that ended after it counted", i)
		}
	}
}

// TestScanStepGivenUp: a call the plugin gave up on (its context ended
// while the VMM answered) is no scan step either: a cancelled Hints's
// call that began after the next request would otherwise hold that
// request's scan up to where it ended.
func TestScanStepGivenUp(t *testing.T) {
	const high = 1 << 28
	h := newScanHost(high)
	ctx, cancel := context.WithCancel(context.Background())
	var refunds atomic.Int32
	done := make(chan error)
	go func() {
		_, err := h.s.CMMABits(plugproc.WithRefund(ctx, func() { refunds.Add(1) }),
			&pb.CMMABitsRequest{StartGfn: high, Count: minRefundedCMMA})
		done <- err
	}()
	<-h.entered
	cancel() // the plugin gives up while the VMM answers
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if refunds.Load() != 0 {
		t.Error("a call given up on gave its token back")
	}
	if !h.step(t, 0, minRefundedCMMA) {
		t.Error("a scan from frame 0 is held to the broker's rate after a call given up on at 1 TiB")
	}
}

// TestScanStepWraps: an answer that runs past frame 2^64 (a VMM that
// answers any frame asked for) is no step, and does not start the scan
// over: counted, its end wrapped to a low frame and the scan's steps
// could be taken again from there.
func TestScanStepWraps(t *testing.T) {
	h := newScanHost(0)
	if !h.step(t, 1<<30, minRefundedCMMA) {
		t.Fatal("the scan's first step is held to the broker's rate")
	}
	if h.step(t, ^uint64(0)-1000, minRefundedCMMA) {
		t.Error("an answer past frame 2^64 counted as a step")
	}
	if h.step(t, 0, minRefundedCMMA) {
		t.Error("after an answer past frame 2^64, a step back at frame 0 counted")
	}
}

// TestScanStepInRAM: an answer that ends past guest RAM (a VMM that
// answers any frame asked for, not KVM) is no step, so a plugin cannot
// take steps past the broker's rate beyond one pass over guest RAM per
// hints request; a window that knows no RAM takes none.
func TestScanStepInRAM(t *testing.T) {
	h := newScanHost(0)
	h.w.ramEnd = 4 * minRefundedCMMA
	for i := range uint64(4) {
		if !h.step(t, i*minRefundedCMMA, minRefundedCMMA) {
			t.Fatalf("step %d, inside guest RAM, is held to the broker's rate", i)
		}
	}
	if h.step(t, 4*minRefundedCMMA, minRefundedCMMA) {
		t.Error("a step past the end of guest RAM counted")
	}
	h.w.ramEnd = 0
	h.w.grant()
	if h.step(t, 0, minRefundedCMMA) {
		t.Error("a step counted in a window that knows no guest RAM")
	}
	if e := ramEnd([]Region{{GPA: 0, Size: 1 << 30}, {GPA: 1 << 32, Size: 1 << 30}}); e != (1<<32+1<<30)/PageSize {
		t.Errorf("ramEnd of two regions: frame %#x, want %#x", e, uint64(1<<32+1<<30)/PageSize)
	}
}
