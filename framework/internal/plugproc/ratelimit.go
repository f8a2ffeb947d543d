package plugproc

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// A service the host serves to a plugin (ServeBroker) answers calls the
// plugin makes when it likes: a plugin that called in a loop, from many
// goroutines, had the VMM spend 0.5-0.85 of a core answering them
// (16 000-32 000 calls a second, most refused; TestHostCallFlood in
// framework/hint), and more on a host with more cores: CPU the guest's
// vCPUs and the migration need. Each service therefore takes at most
// BrokerCallRate calls a second after a burst of brokerCallBurst, and at
// most maxBrokerStreams at a time on a connection: a call beyond the rate
// waits (under its own context) before its handler runs, and a stream
// beyond the limit waits in the plugin's own gRPC client.
//
//	plugin ── call, call, call, ... ──► callLimiter.wait: one token each ──► handler
//	                                    (none left: sleep until one is due)
//
// What a flood still costs is the calls let through: on the nested
// machine of docs/BENCHMARKS.md 0.15-0.35 CPU-seconds a second, whatever
// the host's cores (each call wakes a few threads, 0.2-0.3 ms of
// syscalls there, where a saturated server batches them). A provider
// needs far fewer: one balloon session and one DONE per hint
// request. A handler whose call was bounded by the service itself gives
// its token back (RefundCall): a hint window lets each step of a CMMA
// scan through, up to guest RAM per hints request (framework/hint,
// window.scanned), so a scan of a large s390 guest is not held to the
// rate and a flood dressed as one is.
const (
	BrokerCallRate   = 1000 // calls a second to one service, sustained
	brokerCallBurst  = 256  // calls at once after a quiet moment
	maxBrokerStreams = 8    // calls in progress (or waiting) on one connection
)

// callLimiter is a token bucket whose calls wait for their token.
type callLimiter struct {
	rate  float64 // tokens a second
	burst float64

	mu     sync.Mutex
	tokens float64 // may go below zero: tokens promised to waiting calls
	last   time.Time
}

func newCallLimiter(rate, burst float64) *callLimiter {
	return &callLimiter{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// reserve takes one token and returns how long its call must wait for
// it. What waits is bounded by the streams a server allows at once
// (maxBrokerStreams), and a call that gives up returns its token
// (refund), so the debt is too.
func (l *callLimiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// refund gives back the token of a call that did not run.
func (l *callLimiter) refund() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.burst, l.tokens+1)
}

// wait returns once the call may run, or with ctx's error; a call that
// does not run costs no token.
func (l *callLimiter) wait(ctx context.Context) error {
	d := l.reserve(time.Now())
	if d <= 0 {
		if err := ctx.Err(); err != nil {
			l.refund()
			return err
		}
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.refund()
		return ctx.Err()
	}
}

// serverOptions are the options that make a gRPC server take calls at
// l's rate, and maxBrokerStreams at a time on a connection. A call whose
// context ends while it waits fails with the context's status.
func (l *callLimiter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxBrokerStreams),
		grpc.ChainUnaryInterceptor(l.unary),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := l.wait(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// unary is the unary interceptor: it waits for the call's token, and
// its handler may give it back (RefundCall).
func (l *callLimiter) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := l.wait(ctx); err != nil {
		return nil, err
	}
	return h(WithRefund(ctx, l.refund), req)
}

// refundKey carries a unary call's refund in its handler's context.
type refundKey struct{}

// WithRefund returns ctx carrying refund, which the first RefundCall
// under it calls: the unary interceptor's, or a test's that counts what
// a handler gives back.
func WithRefund(ctx context.Context, refund func()) context.Context {
	return context.WithValue(ctx, refundKey{}, sync.OnceFunc(refund))
}

// RefundCall gives the token of the unary call whose handler runs under
// ctx back to its service's rate (ServeBroker): the call did work that
// costs the VMM far more than answering it, and is bounded otherwise. A
// second call, or a context not from such a handler, is a no-op.
func RefundCall(ctx context.Context) {
	if f, ok := ctx.Value(refundKey{}).(func()); ok {
		f()
	}
}
