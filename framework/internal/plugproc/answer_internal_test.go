package plugproc

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestAskedMargin: the plugin takes a margin only as one decimal number
// of nanoseconds in (0, maxAnswerMargin]; anything else is no margin,
// as from a host that sends none.
func TestAskedMargin(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   time.Duration
		ok     bool
	}{
		{nil, 0, false},
		{[]string{"100000000"}, 100 * time.Millisecond, true},
		{[]string{"1000000000"}, time.Second, true},
		{[]string{"1000000001"}, 0, false},
		{[]string{"0"}, 0, false},
		{[]string{"-5"}, 0, false},
		{[]string{"100ms"}, 0, false},
		{[]string{""}, 0, false},
		{[]string{"99999999999999999999999"}, 0, false},
		{[]string{"1000", "2000"}, 0, false},
	} {
		md := metadata.MD{}
		for _, v := range c.values {
			md.Append(answerMarginKey, v)
		}
		got, ok := askedMargin(metadata.NewIncomingContext(context.Background(), md))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: margin %v, %v; want %v, %v", c.values, got, ok, c.want, c.ok)
		}
	}
}

// TestAnswerMargin: a tenth of the time left, at most maxAnswerMargin,
// none without a deadline or with under minMarginLeft left.
func TestAnswerMargin(t *testing.T) {
	if m := answerMargin(context.Background()); m != 0 {
		t.Errorf("no deadline: margin %v, want 0", m)
	}
	for _, c := range []struct {
		left     time.Duration
		min, max time.Duration
	}{
		{time.Hour, maxAnswerMargin, maxAnswerMargin},
		{2 * time.Second, 100 * time.Millisecond, 200 * time.Millisecond},
		{minMarginLeft / 2, 0, 0},
		{-time.Second, 0, 0},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), c.left)
		m := answerMargin(ctx)
		cancel()
		if m < c.min || m > c.max {
			t.Errorf("%v left: margin %v, want within [%v, %v]", c.left, m, c.min, c.max)
		}
	}
}

// TestAskEarlyAnswerMethods: the host asks for a margin only on the
// methods listed and only under a deadline; another method's call (a
// long poll, the data path) is sent with its whole deadline and nothing
// added.
func TestAskEarlyAnswerMethods(t *testing.T) {
	ask := askEarlyAnswer([]string{"/k.S/Open"})
	deadline, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		ctx    context.Context
		method string
		want   bool
	}{
		{deadline, "/k.S/Open", true},
		{deadline, "/k.S/RecvMessage", false},
		{context.Background(), "/k.S/Open", false},
	} {
		var got []string
		err := ask(c.ctx, c.method, nil, nil, nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			md, _ := metadata.FromOutgoingContext(ctx)
			got = md.Get(answerMarginKey)
			return nil
		})
		if err != nil || (len(got) == 1) != c.want {
			t.Errorf("%s (deadline: %v): sent margin %q, %v; want one: %v", c.method, c.ctx != context.Background(), got, err, c.want)
		}
	}
}

// TestAnswerEarlyText: an error the handler returns once its margin's
// context ran out goes back as a deadline error with the handler's
// text, saying it ran out of time once: appended to a text that does
// not say so, not again to one that ends with the context's error (an
// error of another class that wraps ctx.Err()).
func TestAnswerEarlyText(t *testing.T) {
	dl := context.DeadlineExceeded.Error()
	for _, c := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.Unknown, "names the last try dropped"), "names the last try dropped: " + dl},
		{status.Error(codes.Aborted, "connect: "+dl), "connect: " + dl},
		{context.DeadlineExceeded, dl},
	} {
		// The host asked for a margin longer than the time left: the
		// handler's context has ended, the call's has not.
		ctx := metadata.NewIncomingContext(deadlineOnly{context.Background(), time.Now().Add(time.Second / 2)},
			metadata.Pairs(answerMarginKey, "1000000000"))
		_, err := answerEarly(ctx, nil, nil, func(short context.Context, _ any) (any, error) {
			<-short.Done()
			return nil, c.err
		})
		if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || st.Message() != c.want {
			t.Errorf("handler's %v: answered %v; want DeadlineExceeded %q", c.err, err, c.want)
		}
	}
}

// deadlineOnly is a context that reports a deadline it never ends at: a
// call's context whose deadline is still ahead, however long the test
// takes.
type deadlineOnly struct {
	context.Context
	d time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }
