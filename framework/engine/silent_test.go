package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A session that opens and then says nothing: the source's try whose
// connection died right after the transport's handshake, or a peer with
// the job's credentials (and tag, which is no secret) that means to keep
// the destination busy. A transport opens one session at a time, so a
// destination that waited on it would keep its own source out.

// TestSilentSessionDropped: a waiting destination closes a session that
// sent no HELLO within switchover_timeout, telling it why (ABORT), and
// waits on within incoming_timeout; its own source then migrates, page
// exact.
func TestSilentSessionDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, dst, sendTr, sc, wait := silentFirst(ctx, t, 300*time.Millisecond, 50*time.Second)
	if _, serr := Send(ctx, src, sendTr, Options{MigrationID: "job-a", Credentials: sc}); serr != nil {
		t.Fatalf("its own source after the silent session: %v", serr)
	}
	receivedAll(t, wait, src, dst)
}

// jobA is a destination waiting for migration job-a over a loopback
// pipe, and what its sources need: a guest, the job's credentials, and
// peer, a scripted session that names the job's tag (it passes the
// transport's tag check) and says only what a test makes it say.
type jobA struct {
	src, dst *vmtest.VM
	sendTr   *loopback.Transport
	sc       transport.Credentials
	peer     *script
	wait     func() (Report, error) // Receive's outcome
}

// waitingJobA starts Receive of migration job-a with switchover_timeout
// quiet and incoming_timeout incoming; more changes its other options.
func waitingJobA(ctx context.Context, t *testing.T, quiet, incoming time.Duration, more ...func(*Options)) *jobA {
	j := &jobA{src: memGuest(t, 0x5a), dst: memGuest(t, 0)}
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	var recvTr *loopback.Transport
	j.sendTr, recvTr = loopback.NewPipe()
	j.sc = sc
	opt := Options{MigrationID: "job-a", Credentials: dc, SwitchoverTimeout: quiet, IncomingTimeout: incoming, Log: testLogger(t)}
	for _, f := range more {
		f(&opt)
	}
	j.wait = receiveAsync(ctx, j.dst, recvTr, opt)
	j.peer = newScript(t, j.src, j.sendTr, sc)
	j.peer.tag = tagFor("job-a")
	j.peer.req.Tag = transport.Tag(j.peer.tag)
	return j
}

// silentFirst is waitingJobA with a session opened by its peer that
// says nothing; it returns once the destination told that session why
// it closes it (within quiet and a margin: before 2026-12-06 it waited
// on the session until ctx ended).
func silentFirst(ctx context.Context, t *testing.T, quiet, incoming time.Duration) (src, dst *vmtest.VM,
	sendTr *loopback.Transport, sc transport.Credentials, wait func() (Report, error)) {
	j := waitingJobA(ctx, t, quiet, incoming)
	must(t, j.sendTr.Open(ctx, j.peer.req))
	if got := noAnswer(ctx, j.peer, 20*time.Second); !strings.HasPrefix(got, "ABORT") || !strings.Contains(got, "switchover_timeout") {
		t.Fatalf("the silent session got %q; want an ABORT naming switchover_timeout", got)
	}
	j.sendTr.Close()
	return j.src, j.dst, j.sendTr, j.sc, j.wait
}

// TestSilentPagesFailTheDestination: a session opens with this
// migration's tag, writes pages into guest RAM and then says nothing (a
// peer that holds the job's credentials). The waiting destination closes
// it as silent, but its RAM now holds bytes that no HELLO vouched for:
// it fails, as for a refused stranger that wrote (waitAgain), instead of
// waiting on and taking its own source into that RAM.
func TestSilentPagesFailTheDestination(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := waitingJobA(ctx, t, 300*time.Millisecond, 20*time.Second)
	must(t, j.sendTr.Open(ctx, j.peer.req))
	defer j.sendTr.Close()
	must(t, j.sendTr.SendPages(ctx, []transport.PageRun{{First: 0, Count: 4, Kind: transport.KindData}}))
	must(t, j.sendTr.Flush(ctx))
	rep, err := j.wait()
	if !errors.Is(err, errSilentSession) || rep.Status != StatusFailed || ctx.Err() != nil {
		t.Fatalf("Receive: %v, status %s; want it failed on the silent session that wrote pages", err, rep.Status)
	}
}

// TestSilentSessionTimesOut: when only silent sessions come, the
// destination fails at incoming_timeout and says what it closed.
func TestSilentSessionTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, _, _, _, wait := silentFirst(ctx, t, 200*time.Millisecond, 2*time.Second)
	_, err := wait()
	if err == nil || !strings.Contains(err.Error(), "incoming_timeout") || !strings.Contains(err.Error(), "no HELLO within switchover_timeout") {
		t.Fatalf("Receive: %v; want it to time out naming the silent session it closed", err)
	}
}

// TestSilentResumeDropped: after RUNNING the connection breaks; a
// session opens with this migration's tag and says nothing (the source's
// try whose connection died at once). The destination, whose guest runs
// on the pages it holds, closes it after switchover_timeout instead of
// waiting on it for reconnect_timeout, and takes the source's next try,
// which completes page-exact.
func TestSilentResumeDropped(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	opt.SwitchoverTimeout = time.Second
	opt.ReconnectTimeout = 2 * time.Minute // before the fix, the silent session held it that long
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	var savedSeq uint64
	failed := runScript(func() {
		savedSeq = s.breakAfterRunning(ctx)
		must(t, s.tr.Open(ctx, s.req)) // and silent
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := s.tr.RecvMessage(rctx)
		timedOut := rctx.Err() != nil
		rcancel()
		if err == nil || timedOut {
			t.Errorf("the silent session: got %s, %v; want the destination to close it", msgName(m.Kind), err)
			panic(errScript)
		}
		s.tr.Close()
		s.resumeAndSettle(ctx)
	})
	checkResumed(t, s, dst, savedSeq, failed, wait)
}

// lateOpen is the source's transport whose Opens from the lateFrom-th
// on return late after the transport's own: as one would whose Open, on
// the source's side, still works after the destination's Open returned
// (a third party's that registers guest RAM once connected). The
// source's HELLO or RESUME then always comes late. With cutRunning, the
// connection breaks as RUNNING arrives.
type lateOpen struct {
	transport.Transport
	late       time.Duration
	lateFrom   int
	cutRunning bool

	mu    sync.Mutex
	opens int
	cut   bool
}

func (l *lateOpen) Open(ctx context.Context, req transport.OpenRequest) error {
	l.mu.Lock()
	l.opens++
	late := l.opens >= l.lateFrom
	l.mu.Unlock()
	if err := l.Transport.Open(ctx, req); err != nil || !late {
		return err
	}
	t := time.NewTimer(l.late)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.Transport.Close()
		return ctx.Err()
	}
}

func (l *lateOpen) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgRunning && l.cutRunning {
		l.mu.Lock()
		first := !l.cut
		l.cut = true
		l.mu.Unlock()
		if first {
			l.Transport.Close() // the network breaks
		}
	}
	return m, err
}

// TestSilentResumeSlowSource: after RUNNING the connection breaks, and
// every reconnect of the source sends its RESUME 2.5 switchover_timeouts
// after the destination's Open returned. The destination closes the
// first tries as silent, but gives each next one twice as long
// (quietBound) and takes the third: post-copy completes. Before, every
// try was closed after switchover_timeout until reconnect_timeout, and
// the guest was halted on the destination, lost. The source's
// transport writes a page during the bulk pass (dirtyBulk), so that the
// destination lacks one when RUNNING is cut and waits for a reconnect:
// with none owed (the guest's writer wrote nothing during the pass) it
// sent SETTLED and only listened to tell it, 0 reconnects, or, its
// SETTLED cut, passed by chance (with the writer off 1 of 2 runs
// failed so).
func TestSilentResumeSlowSource(t *testing.T) {
	const quiet = time.Second
	tr := &lateOpen{late: 5 * quiet / 2, lateFrom: 2, cutRunning: true}
	b := &dirtyBulk{}
	start := time.Now()
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		tr.Transport = b.wrap(str, v)
		return tr
	}, func(sopt, dopt *Options) {
		dopt.SwitchoverTimeout = quiet
		sopt.ReconnectTimeout, dopt.ReconnectTimeout = 20*time.Second, 20*time.Second
	})
	if !tr.cut {
		t.Fatalf("RUNNING never came: send %v (%s), receive %v (%s)", r.serr, r.srep.Status, r.derr, r.drep.Status)
	}
	b.owedSent(t)
	if r.serr != nil || r.srep.Status != StatusCompleted || r.srep.Reconnects != 1 {
		t.Errorf("source: %s (%s), %d reconnects: %v", r.srep.Status, r.srep.Handover, r.srep.Reconnects, r.serr)
	}
	if r.derr != nil || r.drep.Status != StatusCompleted || r.drep.Reconnects != 1 || dst.State() != vmtest.StateRunning {
		t.Errorf("destination: %s (%s), %d reconnects, VM %v: %v", r.drep.Status, r.drep.Handover, r.drep.Reconnects, dst.State(), r.derr)
	}
	if tr.opens < 3 {
		t.Errorf("the source opened its transport %d times: no reconnect try was closed as silent, the test proves nothing", tr.opens)
	}
	t.Logf("%d opens, %v", tr.opens, time.Since(start).Round(time.Millisecond))
}

// TestSilentSessionSlowSource: a source's HELLO always comes 1.5
// switchover_timeouts after the destination's Open returned (its
// transport's Open returns late on the source's side). The waiting
// destination closes that session and tells the source why and what to
// do (ABORT: run the migration again); the source, which paused
// nothing, fails. Run again, it gets twice as long (quietBound) and
// migrates, page exact. Before, the ABORT said only that the peer was
// silent, and every run was refused alike.
func TestSilentSessionSlowSource(t *testing.T) {
	const quiet = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := waitingJobA(ctx, t, quiet, 50*time.Second)
	src, dst, sc, wait := j.src, j.dst, j.sc, j.wait
	late := &lateOpen{Transport: j.sendTr, late: 3 * quiet / 2, lateFrom: 1}
	_, serr := Send(ctx, src, late, Options{MigrationID: "job-a", Credentials: sc})
	if serr == nil || !strings.Contains(serr.Error(), "switchover_timeout") || !strings.Contains(serr.Error(), "run the migration again") {
		t.Fatalf("the slow source's first run: %v; want it refused, naming switchover_timeout and what to do", serr)
	}
	t.Logf("the slow source's first run: %v", serr)
	if _, serr := Send(ctx, src, late, Options{MigrationID: "job-a", Credentials: sc}); serr != nil {
		t.Fatalf("the slow source's second run: %v", serr)
	}
	receivedAll(t, wait, src, dst)
}

// TestSilentSessionsEndAtIncomingTimeout: silent sessions in a row get
// ever longer bounds (quietBound), but in the first wait not past
// incoming_timeout: with switchover_timeout 1 s and incoming_timeout 4 s
// the third session, opened at about 3 s, gets 1 s, not 4 s, and the
// destination gives up at about 4 s, not 7 s.
func TestSilentSessionsEndAtIncomingTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const quiet, incoming = time.Second, 4 * time.Second
	start := time.Now()
	j := waitingJobA(ctx, t, quiet, incoming)
	sendTr, silent := j.sendTr, j.peer
	done := make(chan struct{})
	var rerr error
	go func() {
		_, rerr = j.wait()
		close(done)
	}()
	octx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { <-done; stop() }()
	sessions := 0
	for octx.Err() == nil && sessions < 10 {
		if sendTr.Open(octx, silent.req) != nil {
			break
		}
		sessions++
		noAnswer(octx, silent, 20*time.Second) // until the destination closes it
		sendTr.Close()
	}
	<-done
	took := time.Since(start)
	if took > incoming+quiet*3/2 || !strings.Contains(fmt.Sprint(rerr), "incoming_timeout") {
		t.Fatalf("Receive returned after %v (%d silent sessions): %v; want incoming_timeout (%v) to end it, one switchover_timeout at most later",
			took, sessions, rerr, incoming)
	}
	t.Logf("gave up after %v, %d silent sessions: %v", took.Round(time.Millisecond), sessions, rerr)
}

// receivedAll: Receive (wait) completed, and dst holds src's every page.
func receivedAll(t *testing.T, wait func() (Report, error), src, dst *vmtest.VM) {
	t.Helper()
	rep, err := wait()
	if err != nil || rep.Status != StatusCompleted {
		t.Fatalf("Receive: %v, %+v", err, rep)
	}
	for p := uint64(0); p < dst.RAM().Pages(); p++ {
		if !bytes.Equal(dst.Page(p), src.Page(p)) {
			t.Fatalf("page %d differs from the source's", p)
		}
	}
}

// TestEndedBeforeHello: a session that opens with the job's credentials
// and tag and ends before its HELLO (a source that died right after
// connecting) took nothing: the waiting destination waits on, and its
// source's next run migrates. Before, the destination failed.
func TestEndedBeforeHello(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := waitingJobA(ctx, t, 20*time.Second, 50*time.Second)
	src, dst, sendTr, sc, wait := j.src, j.dst, j.sendTr, j.sc, j.wait
	must(t, sendTr.Open(ctx, j.peer.req))
	sendTr.Close() // and gone, long before the 20 s silent bound
	// Its own source: its Open waits for the destination to listen
	// again, which a destination that failed never does.
	sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
	defer scancel()
	if _, serr := Send(sctx, src, sendTr, Options{MigrationID: "job-a", Credentials: sc}); serr != nil {
		_, rerr := wait()
		t.Fatalf("its own source after the session that ended: %v (destination: %v)", serr, rerr)
	}
	receivedAll(t, wait, src, dst)
}
