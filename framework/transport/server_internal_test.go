package transport

import (
	"context"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// TestSendPagesRequestSize: the largest SendPages RPC stays under 1 MiB.
func TestSendPagesRequestSize(t *testing.T) {
	runs := make([]PageRun, maxRunsPerCall)
	for i := range runs {
		runs[i] = PageRun{First: math.MaxUint64, Count: math.MaxUint64, Kind: KindZero}
	}
	if n := proto.Size(&pb.SendPagesRequest{Runs: runsToProto(runs)}); n > 1<<20 {
		t.Errorf("a SendPages request of %d runs is %d bytes", maxRunsPerCall, n)
	}
	m := &pb.SendMessageRequest{Message: &pb.Message{Kind: math.MaxUint32, Payload: make([]byte, MaxMessage)}}
	if n := proto.Size(m); n > 1<<20+64 {
		t.Errorf("the largest SendMessage request is %d bytes", n)
	}
}

// TestTagFromProto: a migration tag crosses as 16 bytes or none (the
// zero Tag); any other length is refused as a bad configuration, never
// cut or padded into a tag the host did not send.
func TestTagFromProto(t *testing.T) {
	want := Tag{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if got, err := tagFromProto(tagToProto(want)); err != nil || got != want {
		t.Errorf("round trip: %x, %v", got, err)
	}
	if b := tagToProto(Tag{}); b != nil {
		t.Errorf("the zero Tag crosses as %x, want nothing", b)
	}
	if got, err := tagFromProto(nil); err != nil || !got.IsZero() {
		t.Errorf("no tag: %x, %v", got, err)
	}
	for _, n := range []int{1, 15, 17, 32} {
		if _, err := tagFromProto(make([]byte, n)); !errors.Is(err, ErrBadConfig) {
			t.Errorf("a tag of %d bytes: %v, want ErrBadConfig", n, err)
		}
	}
}

// TestEnumsMatch: enum values cross the wire as the same numbers.
func TestEnumsMatch(t *testing.T) {
	for _, c := range []struct{ got, want int32 }{
		{int32(pb.Role_ROLE_SEND), int32(RoleSend)}, {int32(pb.Role_ROLE_RECEIVE), int32(RoleReceive)},
		{int32(pb.PageKind_PAGE_KIND_DATA), int32(KindData)}, {int32(pb.PageKind_PAGE_KIND_ZERO), int32(KindZero)},
	} {
		if c.got != c.want {
			t.Errorf("enum %d on the wire, %d in Go", c.got, c.want)
		}
	}
}

// TestRecvMessageRedelivers: a message whose answer the host never saw
// (it did not acknowledge its seq) comes again; an acknowledged one
// does not; Close forgets it.
func TestRecvMessageRedelivers(t *testing.T) {
	next := uint32(0)
	s := newServer(&Mock{
		RecvMessageFunc: func(context.Context) (Message, error) { next++; return Message{Kind: next}, nil },
		CloseFunc:       func() error { return nil },
	}, nil, nil)
	ctx := context.Background()
	recv := func(ack uint64) (uint64, uint32) {
		t.Helper()
		r, err := s.RecvMessage(ctx, &pb.RecvMessageRequest{Ack: ack})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSeq(), r.GetMessage().GetKind()
	}
	steps := []struct {
		ack, seq uint64
		kind     uint32
	}{
		{0, 1, 1}, // first message
		{0, 1, 1}, // the answer was lost: again
		{1, 2, 2}, // acknowledged: the next one
		{2, 3, 3},
	}
	for i, st := range steps {
		if seq, kind := recv(st.ack); seq != st.seq || kind != st.kind {
			t.Errorf("step %d: ack %d gave seq %d kind %d; want seq %d kind %d", i, st.ack, seq, kind, st.seq, st.kind)
		}
	}
	if _, err := s.Close(ctx, &pb.CloseRequest{}); err != nil {
		t.Fatal(err)
	}
	if seq, kind := recv(2); seq != 4 || kind != 4 {
		t.Errorf("after Close: seq %d kind %d; want a new message (4, 4)", seq, kind)
	}
}

func TestPageRunCheck(t *testing.T) {
	for _, c := range []struct {
		r  PageRun
		ok bool
	}{
		{PageRun{0, 10, KindData}, true},
		{PageRun{9, 1, KindZero}, true},
		{PageRun{9, 2, KindData}, false},
		{PageRun{10, 1, KindData}, false},
		{PageRun{math.MaxUint64, 2, KindData}, false},
		{PageRun{0, 0, KindData}, false},
		{PageRun{0, 1, 0}, false},
		{PageRun{0, 1, 3}, false},
	} {
		if err := c.r.Check(10); (err == nil) != c.ok {
			t.Errorf("%+v.Check(10) = %v", c.r, err)
		}
	}
}

// TestLandedFrameSize: MaxLanded runs fit one urgent channel frame.
func TestLandedFrameSize(t *testing.T) {
	runs := make([]PageRun, MaxLanded)
	for i := range runs {
		runs[i] = PageRun{First: math.MaxUint64 - 1, Count: 1, Kind: KindData}
	}
	if n := len(appendChanFrame(nil, chanFrame{Type: fLanded, Runs: runs})); n > chanHeaderSize+chanMaxBody {
		t.Errorf("a fLanded frame of %d runs is %d bytes (body at most %d)", MaxLanded, n, chanMaxBody)
	}
}
