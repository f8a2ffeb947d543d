package plugproc

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// gRPC hands the host's deadline to the plugin, and the host's call ends
// at that same instant: a plugin whose call ran out of time (an Open
// still connecting, a Configure waiting on the guest) returned its
// reason to a caller that had already stopped listening, and the host
// saw only "context deadline exceeded". So the host asks the plugin to
// answer a margin before the deadline, and waits for that answer until
// the deadline itself:
//
//	host (Start's unary interceptor)           plugin (Serve's unary interceptor)
//	deadline D, margin m = min(10% left, 1 s)
//	call ── grpc-timeout D, answerMarginKey m ──► ctx ends at D−m
//	                                              impl's error at D−m ── DeadlineExceeded, impl's text
//	answer at D−m: wait for ctx to end at D ◄────
//	return it: errclass keeps ctx's class (deadline) and the plugin's text
//
// The margin belongs to the host and travels as a header the other side
// may ignore, so nothing changes where either side predates it: a
// plugin that does not read answerMarginKey runs to D and the host sees
// its own deadline, as before; a host that does not send it gives the
// plugin the whole of D. The header's name is its version: a margin of
// another meaning takes another name.
//
// What it covers: the unary methods the kind lists (Kind.AnswerEarly:
// the setup calls, Open and Configure among them), whose reason is worth
// a tenth of their time. The others keep the whole deadline: a long
// poll (RecvMessage) would stop listening for the margin while the
// engine still waits for its message (a COMMIT's RUNNING), and a data
// call (SendPages, Flush) would lose a tenth of its budget to say little
// more than that it ran out. Streams (a hint provider's Hints) are not
// covered: Hints has its own margin in its request
// (hint.Request.AnswerBy). Nor are the calls a plugin makes back to the
// host (a hint provider's Host, through the broker) and a transport's
// urgent channel (not gRPC). A call without a deadline, or with under
// minMarginLeft left, is sent unchanged.
//
// What it costs and cannot do: a listed call has the margin less to
// work in, so a setup that would have completed in its last tenth now
// fails (an Open of 30 s has 29 s). An answer that takes longer than the
// margin to come back (a loaded host, a plugin that ignores its
// context) reaches the host as before: its deadline alone. The host's
// error is of the deadline class alone, whatever class the plugin's
// error had (as it was when the host saw its deadline alone); only its
// text is the plugin's. An error the plugin returns before the margin
// keeps its class, as before.
const answerMarginKey = "ferry-answer-margin-ns"

// maxAnswerMargin is the most of a call's time the host keeps for its
// plugin's answer (answerMargin); a plugin ignores a larger margin.
const maxAnswerMargin = time.Second

// minMarginLeft is the least time left for which a call gets a margin:
// a tenth of less is not enough to answer in.
const minMarginLeft = 10 * time.Millisecond

// answerMargin is how long before ctx's deadline the plugin should
// answer: a tenth of the time left, at most maxAnswerMargin; 0 for a
// context without a deadline or with under minMarginLeft left.
func answerMargin(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	left := time.Until(d)
	if left < minMarginLeft {
		return 0
	}
	return min(left/10, maxAnswerMargin)
}

// answerWait bounds how long past its deadline the host waits for a
// context to say it ended, after the plugin answered a margin early
// (as errclass's ownEnd does: a context's timer may run late).
const answerWait = time.Second

// askEarlyAnswer returns the host's unary interceptor: on the methods
// listed (full gRPC names) it asks the plugin to answer answerMargin
// before ctx's deadline, and when the plugin's answer is a deadline
// error that came in that margin, waits for ctx to end before returning
// it, so that the caller, as before, gets it once its own deadline
// passed and ctx says so (errclass.Process.Fail then keeps ctx's class
// and the plugin's text). Other methods pass unchanged.
func askEarlyAnswer(methods []string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		margin := answerMargin(ctx)
		if margin == 0 || !slices.Contains(methods, method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		err := invoker(metadata.AppendToOutgoingContext(ctx, answerMarginKey, strconv.FormatInt(int64(margin), 10)),
			method, req, reply, cc, opts...)
		d, _ := ctx.Deadline()
		if status.Code(err) != codes.DeadlineExceeded || ctx.Err() != nil || time.Now().Before(d.Add(-margin)) {
			return err // no answer of the margin's: an error before it is the plugin's own
		}
		t := time.NewTimer(time.Until(d) + answerWait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C: // a context that does not end at its deadline
		}
		return err
	}
}

// answerEarly is the plugin's unary interceptor: a call whose host sent
// answerMarginKey runs under a context that ends that margin before the
// host's deadline, and an error the handler returns once that context
// ran out is sent as a deadline error (codes.DeadlineExceeded) with the
// handler's text, which the host, still listening, reports (outOfTime:
// ": context deadline exceeded" added unless it already ends so). A margin
// that is not a number in (0, maxAnswerMargin] is ignored, as a host
// that sends none.
func answerEarly(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	margin, ok := askedMargin(ctx)
	d, hasDeadline := ctx.Deadline()
	if !ok || !hasDeadline {
		return handler(ctx, req)
	}
	by := d.Add(-margin)
	short, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	resp, err := handler(short, req)
	if err == nil || ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
		return resp, err
	}
	if !errors.Is(short.Err(), context.DeadlineExceeded) && time.Now().Before(by) {
		return resp, err // the handler's own failure, before its time ran out
	}
	return resp, status.Error(codes.DeadlineExceeded, outOfTime(status.Convert(err).Message()))
}

// outOfTime is the text of a handler's error msg that ran out of its
// margin: msg saying so, once (an error of another class that wraps the
// context's, or the context's own, already ends with it).
func outOfTime(msg string) string {
	if strings.HasSuffix(msg, context.DeadlineExceeded.Error()) {
		return msg
	}
	return msg + ": " + context.DeadlineExceeded.Error()
}

// askedMargin reads the margin the host asked for (answerMarginKey).
func askedMargin(ctx context.Context) (time.Duration, bool) {
	v := metadata.ValueFromIncomingContext(ctx, answerMarginKey)
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n <= 0 || time.Duration(n) > maxAnswerMargin {
		return 0, false
	}
	return time.Duration(n), true
}
