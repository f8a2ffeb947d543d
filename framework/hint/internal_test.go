package hint

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
)

// TestMessageSizes: the largest message of every stream or reply stays
// within maxMessage, which both sides enforce.
func TestMessageSizes(t *testing.T) {
	ranges := make([]Range, maxRangesPerMessage)
	gpas := make([]GPARange, maxRangesPerMessage)
	for i := range ranges {
		ranges[i] = Range{First: math.MaxUint64, Count: math.MaxUint64}
		gpas[i] = GPARange{GPA: math.MaxUint64, Size: math.MaxUint64}
	}
	for name, m := range map[string]proto.Message{
		"HintsResponse":       &pb.HintsResponse{Ranges: rangesToProto(ranges)},
		"BalloonHintResponse": &pb.BalloonHintResponse{Ranges: gpaRangesToProto(gpas)},
		"CMMABitsResponse":    &pb.CMMABitsResponse{First: math.MaxUint64, Values: make([]byte, MaxCMMABits)},
	} {
		if n := proto.Size(m); n > maxMessage {
			t.Errorf("the largest %s is %d bytes; the limit is %d", name, n, maxMessage)
		}
	}
}

// TestEnumsMatch: enum values cross the wire as the same numbers.
func TestEnumsMatch(t *testing.T) {
	for _, c := range []struct{ got, want int32 }{
		{int32(pb.Meaning_MEANING_FREE), int32(MeaningFree)}, {int32(pb.Meaning_MEANING_ZERO), int32(MeaningZero)},
		{int32(pb.Meaning_MEANING_UNUSED), int32(MeaningUnused)},
	} {
		if c.got != c.want {
			t.Errorf("enum %d on the wire, %d in Go", c.got, c.want)
		}
	}
}

// TestStatusClasses: every class survives toStatus and fromStatus with
// its text, and matches no other class.
func TestStatusClasses(t *testing.T) {
	all := []error{ErrNotSupported, ErrBadConfig, ErrPluginGone, context.DeadlineExceeded, context.Canceled}
	for _, class := range append(all, nil) {
		in := fmt.Errorf("balloon hint: %w", class)
		if class == nil {
			in = errors.New("balloon hint: no class")
		}
		st, _ := status.FromError(classes.ToStatus(in))
		out := classes.FromStatus(st)
		if out.Error() != in.Error() || (class != nil && !errors.Is(out, class)) {
			t.Errorf("%v came back as %v (%s)", in, out, st.Code())
		}
		for _, other := range all {
			if other != class && errors.Is(out, other) {
				t.Errorf("%v also matches %v", in, other)
			}
		}
	}
	if classes.ToStatus(nil) != nil {
		t.Error("classes.ToStatus(nil) is not nil")
	}
}

func TestCheckRanges(t *testing.T) {
	const pages = 100
	for _, c := range []struct {
		in      []Range
		ok      []Range
		dropped uint64
	}{
		{nil, nil, 0},
		{[]Range{{0, 100}}, []Range{{0, 100}}, 0},
		{[]Range{{0, 10}, {5, 10}, {5, 10}}, []Range{{0, 10}, {5, 10}, {5, 10}}, 0}, // overlaps are fine
		{[]Range{{99, 1}, {99, 2}, {100, 1}}, []Range{{99, 1}}, 2},
		{[]Range{{0, 0}, {1, 1}}, []Range{{1, 1}}, 1},
		{[]Range{{math.MaxUint64, 2}, {2, math.MaxUint64}, {3, 1}}, []Range{{3, 1}}, 2},
		{[]Range{{200, 1}, {300, 1}}, []Range{}, 2},
	} {
		in := append([]Range(nil), c.in...)
		ok, dropped := CheckRanges(in, pages)
		if dropped != c.dropped || len(ok) != len(c.ok) || (len(ok) > 0 && !reflect.DeepEqual(ok, c.ok)) {
			t.Errorf("CheckRanges(%v) = %v, %d; want %v, %d", c.in, ok, dropped, c.ok, c.dropped)
		}
		if !reflect.DeepEqual(in, c.in) {
			t.Errorf("CheckRanges modified its input: %v, was %v", in, c.in)
		}
	}
	// Nothing dropped: the batch itself, no copy.
	in := []Range{{1, 2}, {3, 4}}
	if ok, _ := CheckRanges(in, pages); &ok[0] != &in[0] {
		t.Error("CheckRanges copied a batch with nothing to drop")
	}
}

var testVM = VM{RAM: []Region{{GPA: 0, Size: 0xC000_0000}, {GPA: 1 << 32, Size: 1 << 30}}}

func TestPageRanges(t *testing.T) {
	got := testVM.PageRanges([]GPARange{
		{GPA: 0x40_0000, Size: 4 << 20},       // low RAM
		{GPA: 1 << 32, Size: 4 << 20},         // first high page = page 0xC0000
		{GPA: 0xBFFF_F000, Size: 0x2000},      // runs into the hole: one page kept
		{GPA: 0xfee0_0000, Size: 4096},        // not RAM
		{GPA: 0x1001, Size: 0x2000},           // partial pages dropped: page 2 only
		{GPA: 0x5000, Size: 0xfff},            // less than a page
		{GPA: ^uint64(0) - 10, Size: 100},     // wraps
		{GPA: ^uint64(0) - 4094, Size: 1},     // rounding up would wrap
		{GPA: 0xBFFF_0000, Size: 0x4001_1000}, // spans the hole: both sides
	})
	want := []Range{{First: 0x400, Count: 1024}, {First: 0xC0000, Count: 1024},
		{First: 0xBFFFF, Count: 1}, {First: 2, Count: 1},
		{First: 0xBFFF0, Count: 16}, {First: 0xC0000, Count: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %x\nwant %x", got, want)
	}
}

func TestVMPage(t *testing.T) {
	if n := testVM.Pages(); n != 0xC0000+0x40000 {
		t.Errorf("Pages = %#x", n)
	}
	for _, c := range []struct {
		gpa  uint64
		page uint64
		ok   bool
	}{
		{0, 0, true}, {0x1fff, 1, true}, {0xBFFF_FFFF, 0xBFFFF, true}, {0xC000_0000, 0, false},
		{1 << 32, 0xC0000, true}, {1<<32 + 1<<30 - 1, 0xFFFFF, true}, {1<<32 + 1<<30, 0, false},
	} {
		if p, ok := testVM.Page(c.gpa); p != c.page || ok != c.ok {
			t.Errorf("Page(%#x) = %#x, %v; want %#x, %v", c.gpa, p, ok, c.page, c.ok)
		}
	}
}

func TestInfoValidate(t *testing.T) {
	for _, good := range []Info{{Name: "balloon", Meaning: MeaningFree}, {Name: "example-static", Version: "1", Meaning: MeaningUnused}} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	for _, bad := range []Info{{Name: "", Meaning: MeaningFree}, {Name: "1st", Meaning: MeaningFree},
		{Name: "a b", Meaning: MeaningZero}, {Name: "ok", Meaning: 0}, {Name: "ok", Meaning: 4}} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed Validate", bad)
		}
	}
}

// TestHostAfterKill: a Host served by a Configure that raced with Kill is
// stopped at once, not left serving.
func TestHostAfterKill(t *testing.T) {
	serve := func() *hostService {
		ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		hs := &hostService{srv: grpc.NewServer(), served: served, w: newWindow(&MockHost{}, 0)}
		go func() {
			defer close(served)
			hs.srv.Serve(ln)
		}()
		return hs
	}
	c := &grpcClient{}
	first := serve()
	c.setHost(first)
	c.kill()
	late := serve()
	c.setHost(late)
	for name, hs := range map[string]*hostService{"the window's Host": first, "a Host served after Kill": late} {
		select {
		case <-hs.served:
		case <-time.After(5 * time.Second):
			t.Errorf("%s still served after Kill", name)
			hs.stop()
		}
	}
	if c.host != nil {
		t.Error("a Host is recorded after Kill")
	}
}
