package engine

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// lateLink is a source's transport over a fast link that makes round
// trips slow: the destination's first message (READY) arrives late
// extra, once (a destination slow to answer HELLO: its start, post-copy's
// preparation, a busy host), or, with every, each message arrives late
// and each Flush takes extra before it goes out (a link whose every
// round trip is slow). hideRTT reports no round trip in Stats, as a
// transport that measures none (an older plugin; rdma before its first
// COMMIT or MARK was answered) does.
type lateLink struct {
	transport.Transport
	extra   time.Duration
	every   bool
	hideRTT bool
	mu      sync.Mutex
	late    bool // the once-late message was delayed
}

func (l *lateLink) delay(ctx context.Context) error {
	l.mu.Lock()
	wait := l.every || !l.late
	l.late = true
	l.mu.Unlock()
	if !wait {
		return nil
	}
	t := time.NewTimer(l.extra)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lateLink) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err == nil {
		err = l.delay(ctx)
	}
	return m, err
}

func (l *lateLink) Flush(ctx context.Context) error {
	if l.every {
		if err := l.delay(ctx); err != nil {
			return err
		}
	}
	return l.Transport.Flush(ctx)
}

func (l *lateLink) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := l.Transport.Stats(ctx)
	switch {
	case l.hideRTT:
		st.RTT = 0
	case l.every:
		st.RTT += l.extra // what a transport on such a link measures
	}
	return st, err
}

// passEstimates records the estimate of each "pass done" log line: the
// one the switch decision of that pass used.
type passEstimates struct {
	mu   sync.Mutex
	each []time.Duration
}

func (p *passEstimates) Enabled(context.Context, slog.Level) bool { return true }
func (p *passEstimates) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *passEstimates) WithGroup(string) slog.Handler            { return p }
func (p *passEstimates) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "pass done" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "estimate" {
			p.mu.Lock()
			p.each = append(p.each, a.Value.Duration())
			p.mu.Unlock()
		}
		return true
	})
	return nil
}

func (p *passEstimates) get() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.each...)
}

// migrateOver migrates a memGuest over link (its Transport set here to
// the source's end of a loopback pipe) with max_downtime 300 ms and at
// most maxPasses live passes, and returns the estimate of each.
func migrateOver(t *testing.T, link *lateLink, maxPasses int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	link.Transport = sendTr
	wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, Log: testLogger(t)})
	est := &passEstimates{}
	rep, err := Send(ctx, src, link, Options{Credentials: sc, MaxDowntime: 300 * time.Millisecond, MaxPasses: maxPasses,
		Log: slog.New(est)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	receivedAll(t, wait, src, dst)
	t.Logf("passes %d (the final one included), estimates %v", rep.Passes, est.get())
	return est.get()
}

// TestLateReadyConverges: a destination whose READY comes 500 ms late,
// once, on an otherwise fast link, no longer makes the estimate charge
// two such round trips for the whole migration: an idle guest (no page
// dirtied after the bulk pass) switches over after a pass or two, with
// an estimate below max_downtime, whether the transport measures its
// round trip (loopback reports its Flushes') or not (then the passes'
// Flushes are the samples). Before, the estimate was over a second in
// every pass and the migration switched at max_passes.
func TestLateReadyConverges(t *testing.T) {
	for _, hide := range []bool{false, true} {
		name := map[bool]string{false: "transport measures", true: "transport measures none"}[hide]
		t.Run(name, func(t *testing.T) {
			est := migrateOver(t, &lateLink{extra: 500 * time.Millisecond, hideRTT: hide}, 8)
			if len(est) == 0 || len(est) > 2 || est[len(est)-1] >= 300*time.Millisecond {
				t.Errorf("live passes %d, estimates %v: want the switch after at most 2 on an estimate below max_downtime 300ms",
					len(est), est)
			}
		})
	}
}

// TestSlowLinkEstimated: a link whose every round trip takes 400 ms is
// still charged two of them: no pass's estimate is below 800 ms, and the
// migration switches only at max_passes, measured by the transport or
// not.
func TestSlowLinkEstimated(t *testing.T) {
	const extra = 400 * time.Millisecond
	for _, hide := range []bool{false, true} {
		name := map[bool]string{false: "transport measures", true: "transport measures none"}[hide]
		t.Run(name, func(t *testing.T) {
			est := migrateOver(t, &lateLink{extra: extra, every: true, hideRTT: hide}, 3)
			if len(est) != 3 {
				t.Errorf("live passes %d, estimates %v: want max_passes 3 reached", len(est), est)
			}
			for i, e := range est {
				if e < 2*extra {
					t.Errorf("pass %d estimated %v, below two round trips of %v", i+1, e, extra)
				}
			}
		})
	}
}

// grownLink is a source's transport over a link whose round trip grows
// once the handshake is over, as one congested by the migration's own
// bulk traffic (a full queue on a veth or a switch), or a destination
// loaded from then on, does: READY comes at once, then every Flush takes
// extra before it goes out and, unless hideRTT, the transport's own
// measure says so too.
type grownLink struct {
	transport.Transport
	extra   time.Duration
	hideRTT bool
}

func (l *grownLink) Flush(ctx context.Context) error {
	t := time.NewTimer(l.extra)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.Transport.Flush(ctx)
}

func (l *grownLink) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := l.Transport.Stats(ctx)
	if l.hideRTT {
		st.RTT = 0
	} else {
		st.RTT += l.extra
	}
	return st, err
}

// TestGrownRTTEstimated: a link whose round trip grew from a fast
// handshake to 400 ms once pages flowed is charged what it does now: no
// pass's estimate (the one its switch decision used) is below two round
// trips of 400 ms, so an idle guest does not switch over at max_downtime
// 300 ms on the handshake's round trip, but at max_passes, whether the
// transport measures its round trip or not. Before, the estimate charged
// the smallest round trip so far, the handshake's (under a millisecond
// on loopback): the first pass estimated a few milliseconds and the
// sender switched over after it.
func TestGrownRTTEstimated(t *testing.T) {
	const extra = 400 * time.Millisecond
	for _, hide := range []bool{false, true} {
		name := map[bool]string{false: "transport measures", true: "transport measures none"}[hide]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
			wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, Log: testLogger(t)})
			est := &passEstimates{}
			rep, err := Send(ctx, src, &grownLink{Transport: sendTr, extra: extra, hideRTT: hide},
				Options{Credentials: sc, MaxDowntime: 300 * time.Millisecond, MaxPasses: 3, Log: slog.New(est)})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			receivedAll(t, wait, src, dst)
			each := est.get()
			t.Logf("passes %d (the final one included), estimates %v", rep.Passes, each)
			if len(each) != 3 {
				t.Errorf("live passes %d, estimates %v: want max_passes 3 reached, no switch on an estimate from the handshake's round trip",
					len(each), each)
			}
			for i, e := range each {
				if e < 2*extra {
					t.Errorf("pass %d estimated %v, below two round trips of %v", i+1, e, extra)
				}
			}
		})
	}
}

// TestRTTMeterWindow: the meter charges the smallest sample of the
// current window (a live pass), not of the whole migration: a round
// trip that grew between two passes is charged at once, one that shrank
// too; a window without a sample (an idle pass over a transport that
// measures none) keeps the last window's; a slow handshake alone does
// not outlive the first pass with a sample.
func TestRTTMeterWindow(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	type step struct {
		next    bool            // a new window (pass) begins first
		samples []time.Duration // then these
		want    time.Duration   // get() after them
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"grew between passes", []step{{false, []time.Duration{ms(1)}, ms(1)}, {true, []time.Duration{ms(3), ms(2)}, ms(2)},
			{true, []time.Duration{ms(400), ms(450)}, ms(400)}}},
		{"shrank", []step{{false, []time.Duration{ms(500)}, ms(500)}, {true, []time.Duration{ms(2), ms(9)}, ms(2)}}},
		{"a pass without a sample", []step{{false, []time.Duration{ms(5)}, ms(5)}, {true, []time.Duration{ms(300)}, ms(300)},
			{true, nil, ms(300)}, {true, []time.Duration{0}, ms(300)}}},
		{"no sample yet", []step{{false, nil, 0}, {true, nil, 0}}},
		{"within a pass the smallest", []step{{true, []time.Duration{ms(20), ms(4), ms(30)}, ms(4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m rttMeter
			for i, st := range tc.steps {
				if st.next {
					m.next()
				}
				for _, d := range st.samples {
					m.sample(d)
				}
				if got := m.get(); got != st.want {
					t.Errorf("step %d: charged %v, want %v", i, got, st.want)
				}
			}
		})
	}
}

// TestCappedPassConverges: under a bandwidth cap, the sleep that keeps a
// pass under the cap is no round trip, and the round trip is not charged
// it: an idle guest over a fast link whose transport measures no round
// trip (rdma today) switches over after the bulk pass, on an estimate
// below max_downtime 300 ms. Before, the cap's sleep after the pass's
// last batch (250 ms: 256 pages, the smallest capped batch, at 4 MiB/s)
// was in that pass's Flush sample, the only one, so every pass estimated
// over 500 ms (the idle passes after it, which take no sample, keep it)
// and the migration switched only at max_passes.
func TestCappedPassConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, Log: testLogger(t)})
	est := &passEstimates{}
	rep, err := Send(ctx, src, &lateLink{Transport: sendTr, hideRTT: true}, Options{Credentials: sc,
		MaxDowntime: 300 * time.Millisecond, MaxPasses: 4, Bandwidth: 4 << 20, Log: slog.New(est)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	receivedAll(t, wait, src, dst)
	each := est.get()
	t.Logf("passes %d (the final one included), estimates %v", rep.Passes, each)
	if len(each) == 0 || len(each) > 2 || each[len(each)-1] >= 300*time.Millisecond {
		t.Errorf("live passes %d, estimates %v: want the switch after at most 2 on an estimate below max_downtime 300ms",
			len(each), each)
	}
}
