package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A peer that stops in pre-copy (its process or transport plugin under
// SIGSTOP, a deadlock, a link that no longer moves) keeps the connection
// up: nothing breaks and nothing times out. Before 2026-12-06 each side
// waited on it until its caller cancelled: the source in a SendPages or
// Flush, the destination for its next message. Each now fails once
// nothing moved for StallTimeout, before COMMIT: the source's VM runs
// on, the destination's never ran.

// stallLimit is the tests' StallTimeout; a destination's watch waits
// at least its SwitchoverTimeout too (recvWatched), so the tests that
// watch one set both.
const stallLimit = 300 * time.Millisecond

// frozenDestination is a source's transport whose destination stops at
// the first SendPages: from then on no page, Flush or message gets
// through (each waits until its context ends) and the counters stand
// still.
type frozenDestination struct {
	transport.Transport
	// self: what stopped is this transport's own plugin, not the
	// destination: from the freeze on, Stats does not answer either.
	self   bool
	mu     sync.Mutex
	frozen bool
	at     time.Time       // when it froze
	stats  transport.Stats // when it froze
}

func (f *frozenDestination) freeze(ctx context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen {
		f.stats, _ = f.Transport.Stats(ctx)
		f.frozen, f.at = true, time.Now()
	}
	return true
}

func (f *frozenDestination) isFrozen() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.frozen }

func (f *frozenDestination) SendPages(ctx context.Context, runs []transport.PageRun) error {
	f.freeze(ctx)
	<-ctx.Done()
	return ctx.Err()
}

func (f *frozenDestination) Flush(ctx context.Context) error {
	if !f.isFrozen() {
		return f.Transport.Flush(ctx)
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *frozenDestination) SendMessage(ctx context.Context, m transport.Message) error {
	if !f.isFrozen() {
		return f.Transport.SendMessage(ctx, m)
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *frozenDestination) Stats(ctx context.Context) (transport.Stats, error) {
	f.mu.Lock()
	frozen, st := f.frozen, f.stats
	f.mu.Unlock()
	switch {
	case frozen && f.self:
		<-ctx.Done()
		return transport.Stats{}, ctx.Err()
	case frozen:
		return st, nil
	}
	return f.Transport.Stats(ctx)
}

// pipeGuests is a source guest, a fresh destination guest, a loopback
// pipe between them (the source's end first) and each side's
// credentials.
func pipeGuests(t *testing.T) (src, dst *vmtest.VM, sendTr, recvTr *loopback.Transport, sc, dc transport.Credentials) {
	src, dst = memGuest(t, 0x5a), memGuest(t, 0)
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr = loopback.NewPipe()
	return src, dst, sendTr, recvTr, sc, dc
}

// TestPrecopyStalled: the destination stops taking anything right after
// the handshake. The source fails once nothing moved for StallTimeout,
// its VM running; the destination, which hears nothing more, fails the
// same way and never runs the VM. Neither status is "cancelled": nobody
// cancelled.
func TestPrecopyStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, StallTimeout: stallLimit, SwitchoverTimeout: stallLimit, Log: testLogger(t)})
	start := time.Now()
	srep, serr := Send(ctx, src, &frozenDestination{Transport: sendTr}, Options{Credentials: sc, StallTimeout: stallLimit, Log: testLogger(t)})
	took := time.Since(start)
	drep, derr := wait()
	t.Logf("source after %v: %v\ndestination: %v", took.Round(time.Millisecond), serr, derr)
	if ctx.Err() != nil {
		t.Fatal("the migration waited on the stopped destination until the test's deadline")
	}
	if !errors.Is(serr, errStalled) || srep.Status != StatusFailed || src.State() != vmtest.StateRunning {
		t.Errorf("source: %v, status %s, VM %v; want failed on the stall, the VM running", serr, srep.Status, src.State())
	}
	if !errors.Is(derr, errStalled) || drep.Status != StatusFailed || drep.Handover != HandoverFailed || dst.State() == vmtest.StateRunning {
		t.Errorf("destination: %v, status %s, handover %s, VM %v; want failed on the stall, the VM never run",
			derr, drep.Status, drep.Handover, dst.State())
	}
}

// TestPrecopyStalledSource: a source (here a script) sends HELLO and a
// few pages, then nothing, the connection up. The destination fails
// within StallTimeout and a few checks, never runs the VM, and says why
// in its ABORT (a source that still hears learns it).
func TestPrecopyStalledSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := waitingJobA(ctx, t, stallLimit, 20*time.Second, func(o *Options) { o.StallTimeout = stallLimit })
	must(t, j.sendTr.Open(ctx, j.peer.req))
	defer j.sendTr.Close()
	j.peer.send(ctx, msgHello, encodeHello(j.peer.layout, j.peer.helloFlags, j.peer.tag))
	j.peer.recv(ctx, msgReady)
	must(t, j.sendTr.SendPages(ctx, []transport.PageRun{{First: 0, Count: 4, Kind: transport.KindData}}))
	must(t, j.sendTr.Flush(ctx))
	quiet := time.Now()
	got := noAnswer(ctx, j.peer, 20*time.Second)
	rep, err := j.wait()
	t.Logf("after %v: %v", time.Since(quiet).Round(time.Millisecond), err)
	if !errors.Is(err, errStalled) || rep.Status != StatusFailed || rep.Handover != HandoverFailed || j.dst.State() == vmtest.StateRunning {
		t.Fatalf("Receive: %v, status %s, handover %s; want failed on the stall", err, rep.Status, rep.Handover)
	}
	if !strings.HasPrefix(got, "ABORT") || !strings.Contains(got, "stalled") {
		t.Errorf("the source was told %q; want an ABORT naming the stall", got)
	}
}

// TestPrecopySlowNotStalled: neither side takes a transport that moves
// slowly for a stalled one. The destination gets no message for many
// times StallTimeout while pages keep arriving (its byte count grows),
// and the source's last Flush takes as long while the transport's count
// grows: the migration completes, page-exact.
//
// Its limit is 4 stallLimits: a side that is only slow must
// not be taken for stalled, and at 300 ms a loaded machine (-race, two
// shared cores) held the watch or the stats poller past it (1 run in
// 15: "nothing moved for 698ms" on the source).
func TestPrecopySlowNotStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const limit = 4 * stallLimit
	t.Run("destination", func(t *testing.T) {
		j := waitingJobA(ctx, t, limit, 20*time.Second, func(o *Options) { o.StallTimeout = limit })
		failed := runScript(func() {
			must(t, j.sendTr.Open(ctx, j.peer.req))
			defer j.sendTr.Close()
			j.peer.helloFlags = helloTransportTag // pre-copy only
			j.peer.send(ctx, msgHello, encodeHello(j.peer.layout, j.peer.helloFlags, j.peer.tag))
			j.peer.recv(ctx, msgReady)
			all := bitmap.New(j.peer.pages)
			all.SetAll()
			runs := j.peer.runs(all, func(uint64) bool { return false })
			// A page every 40 ms: 3 StallTimeouts with no message.
			for end := time.Now().Add(3 * limit); time.Now().Before(end); {
				must(t, j.sendTr.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}}))
				time.Sleep(40 * time.Millisecond)
			}
			must(t, j.sendTr.SendPages(ctx, runs))
			must(t, j.src.Pause(ctx))
			must(t, j.sendTr.Flush(ctx))
			state, err := j.src.SaveState(ctx)
			must(t, err)
			j.peer.send(ctx, msgState, encodeStateChunk(uint64(len(state)), 0, state))
			j.peer.recv(ctx, msgLoaded)
			j.peer.send(ctx, msgCommit, nil)
			j.peer.recv(ctx, msgRunning)
		})
		if failed {
			return
		}
		receivedAll(t, j.wait, j.src, j.dst)
	})
	t.Run("source", func(t *testing.T) {
		src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
		wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, Log: testLogger(t)})
		slow := &slowFlush{Transport: sendTr, hold: 3 * limit}
		if _, err := Send(ctx, src, slow, Options{Credentials: sc, StallTimeout: limit, Log: testLogger(t)}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		receivedAll(t, wait, src, dst)
	})
}

// slowFlush is a source's transport whose Flushes each take hold, while
// its byte count grows every 20 ms (a link that moves slowly: the
// counters are what tells the stall watch it moves).
type slowFlush struct {
	transport.Transport
	hold time.Duration
	mu   sync.Mutex
	more uint64 // bytes added to the transport's count
}

func (s *slowFlush) Flush(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for end := time.Now().Add(s.hold); time.Now().Before(end); {
		select {
		case <-t.C:
			s.mu.Lock()
			s.more += 4096
			s.mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Transport.Flush(ctx)
}

func (s *slowFlush) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := s.Transport.Stats(ctx)
	s.mu.Lock()
	st.BytesWire += s.more
	s.mu.Unlock()
	return st, err
}

// muteMessages is a transport whose SendMessage waits until its context
// ends once mute is set: its plugin, or the peer it waits on, stopped
// right after the session opened. Everything else goes through.
type muteMessages struct {
	transport.Transport
	mute atomic.Bool
}

func (m *muteMessages) SendMessage(ctx context.Context, msg transport.Message) error {
	if !m.mute.Load() {
		return m.Transport.SendMessage(ctx, msg)
	}
	<-ctx.Done()
	return ctx.Err()
}

// shortHandshake sets handshakeTimeout to d for the test.
func shortHandshake(t *testing.T, d time.Duration) {
	old := handshakeTimeout
	handshakeTimeout = d
	t.Cleanup(func() { handshakeTimeout = old })
}

// TestHandshakeStalled: a HELLO or a READY whose SendMessage does not
// return (this side's transport plugin, or the peer it waits on, stopped
// as the session opened) ends the handshake within its bound, as a
// READY that does not come does: the source fails with its VM running,
// the destination fails without running it. Before, only the wait for
// READY was bounded: either side waited on the send until cancelled.
func TestHandshakeStalled(t *testing.T) {
	shortHandshake(t, 300*time.Millisecond)
	t.Run("HELLO", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
		wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, SwitchoverTimeout: 10 * time.Second, Log: testLogger(t)})
		mute := &muteMessages{Transport: sendTr}
		mute.mute.Store(true)
		srep, serr := Send(ctx, src, mute, Options{Credentials: sc, Log: testLogger(t)})
		t.Logf("source: %v", serr)
		if ctx.Err() != nil {
			t.Fatal("the source waited on its HELLO until the test's deadline")
		}
		if serr == nil || !strings.Contains(serr.Error(), "HELLO") || srep.Status != StatusFailed || src.State() != vmtest.StateRunning {
			t.Errorf("source: %v, status %s, VM %v; want failed sending HELLO, the VM running", serr, srep.Status, src.State())
		}
		cancel()
		wait()
	})
	t.Run("READY", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
		// The destination's transport takes HELLO in, then sends nothing.
		mute := &muteMessages{Transport: recvTr}
		mute.mute.Store(true)
		wait := receiveAsync(ctx, dst, mute, Options{Credentials: dc, Log: testLogger(t)})
		peer := newScript(t, src, sendTr, sc)
		must(t, sendTr.Open(ctx, peer.req))
		defer sendTr.Close()
		peer.send(ctx, msgHello, encodeHello(peer.layout, helloTransportTag, peer.tag))
		rep, err := wait()
		t.Logf("destination: %v", err)
		if ctx.Err() != nil {
			t.Fatal("the destination waited on its READY until the test's deadline")
		}
		if err == nil || !strings.Contains(err.Error(), "READY") || rep.Status != StatusFailed || rep.Handover != HandoverFailed || dst.State() == vmtest.StateRunning {
			t.Errorf("destination: %v, status %s, handover %s; want failed sending READY, the VM never run", err, rep.Status, rep.Handover)
		}
	})
}

// muteVerified is a destination's transport whose SendMessage of
// VERIFIED waits until its context ends (its plugin, or the source it
// waits on, stopped as the page check ended); everything else goes
// through.
type muteVerified struct{ transport.Transport }

func (m muteVerified) SendMessage(ctx context.Context, msg transport.Message) error {
	if msg.Kind != msgVerified {
		return m.Transport.SendMessage(ctx, msg)
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestVerifiedSendStalled: the page check's VERIFIED, whose SendMessage
// does not return, is bounded on the destination by the stall rule (as
// the wait between HELLO and LOADED, recvWatched), which the source's
// wait for it covers (verifyWait): the destination ends
// handover-unknown (part of VERIFIED may have reached the source, which
// then commits; and beside a source whose VMM died its copy is the only
// one: never discarded by a timer, as after a LOADED that did not get
// out) and never runs the VM, which runs on at the source. Before
// 2026-12-06 the destination waited on the send until its caller
// cancelled; until 2026-12-07 it failed, discarding a complete copy.
func TestVerifiedSendStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	wait := receiveAsync(ctx, dst, muteVerified{recvTr}, Options{Credentials: dc, StallTimeout: stallLimit,
		SwitchoverTimeout: stallLimit, Log: testLogger(t)})
	srep, serr := Send(ctx, src, sendTr, Options{Credentials: sc, VerifyPages: true, Log: testLogger(t)})
	rep, err := wait()
	t.Logf("source: %v\ndestination: %v", serr, err)
	if ctx.Err() != nil {
		t.Fatal("the destination waited on its VERIFIED until the test's deadline")
	}
	if serr == nil || srep.Status != StatusFailed || src.State() != vmtest.StateRunning {
		t.Errorf("source: %v, status %s, VM %v; want failed, the VM running", serr, srep.Status, src.State())
	}
	if !errors.Is(err, ErrHandoverUnknown) || !strings.Contains(err.Error(), "VERIFIED") || rep.Status != StatusHandoverUnknown ||
		rep.Handover != HandoverUnknown || dst.State() == vmtest.StateRunning || dst.Counters().Resumes != 0 {
		t.Errorf("destination: %v, status %s, handover %s, VM %v; want handover-unknown sending VERIFIED, the VM never run",
			err, rep.Status, rep.Handover, dst.State())
	}
}

// frozenReceiver is a destination's transport whose own plugin stops
// right after READY went out: from then on RecvMessage and Stats wait
// until their context ends (what the source sends meanwhile is not
// taken from the wire).
type frozenReceiver struct {
	transport.Transport
	frozen atomic.Bool
	at     time.Time // when it froze; read after Receive returned
}

func (f *frozenReceiver) SendMessage(ctx context.Context, m transport.Message) error {
	if f.frozen.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	err := f.Transport.SendMessage(ctx, m)
	if m.Kind == msgReady {
		f.at = time.Now()
	}
	f.frozen.Store(m.Kind == msgReady)
	return err
}

func (f *frozenReceiver) RecvMessage(ctx context.Context) (transport.Message, error) {
	if f.frozen.Load() {
		<-ctx.Done()
		return transport.Message{}, ctx.Err()
	}
	return f.Transport.RecvMessage(ctx)
}

func (f *frozenReceiver) Stats(ctx context.Context) (transport.Stats, error) {
	if f.frozen.Load() {
		<-ctx.Done()
		return transport.Stats{}, ctx.Err()
	}
	return f.Transport.Stats(ctx)
}

// TestPrecopyStalledSelf: the side whose own transport plugin stopped
// (its Stats does not answer either) says so, and the other side blames
// its peer. Before, both texts named the peer's process or plugin: the
// operator of a source whose own plugin hung was sent to look at the
// destination (TestEmbedPrecopyPluginStopped showed it on real
// processes).
//
// That side then asks its plugin nothing more: no ABORT, no last Stats
// (the report keeps the counters last polled). Until 2026-12-06 it
// waited on both first: the source 7 s (ABORT 2 s, Stats 5 s), the
// destination 3 s (ABORT 2 s, Stats 1 s), for nothing.
//
// A destination's SwitchoverTimeout also bounds the wait for HELLO once
// its session opened (receiver.first): at stallLimit a loaded machine's
// source sent HELLO later than that, and the source failed on the
// destination's ABORT ("sent no HELLO") instead of its own stall. Each
// subtest's destination gets helloBound instead, which its stall watch
// also waits (receiver.stallLimit).
func TestPrecopyStalledSelf(t *testing.T) {
	const self, peer = "this side's transport plugin", "came from the source"
	const helloBound = 2 * time.Second
	t.Run("source", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
		wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, StallTimeout: stallLimit, SwitchoverTimeout: helloBound, Log: testLogger(t)})
		// The source reads its transport's counters from the stats
		// poller, which learns that a call failed after statsTimeout.
		// The destination must find its own stall (helloBound after the
		// freeze) before the source's Close after its stall ends the
		// session: limit is helloBound and 2 s more.
		const limit = helloBound + 2*statsTimeout
		frozen := &frozenDestination{Transport: sendTr, self: true}
		_, serr := Send(ctx, src, frozen, Options{Credentials: sc, StallTimeout: limit, Log: testLogger(t)})
		took := time.Since(frozen.at)
		_, derr := wait()
		t.Logf("source after %v: %v\ndestination: %v", took.Round(time.Millisecond), serr, derr)
		if !errors.Is(serr, errStalled) || !strings.Contains(serr.Error(), self) {
			t.Errorf("the source's error does not say its own transport plugin stopped: %v", serr)
		}
		// The stall is found within limit/8 of limit; the poller's call
		// in flight then ends within statsTimeout.
		if want := limit + limit/8 + statsTimeout + 1500*time.Millisecond; took > want {
			t.Errorf("the source returned %v after its plugin stopped; want within %v: it asked the stopped plugin more", took, want)
		}
		if !errors.Is(derr, errStalled) || !strings.Contains(derr.Error(), peer) || strings.Contains(derr.Error(), self) {
			t.Errorf("the destination's error does not blame the source: %v", derr)
		}
	})
	t.Run("destination", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
		frozen := &frozenReceiver{Transport: recvTr}
		wait := receiveAsync(ctx, dst, frozen,
			Options{Credentials: dc, StallTimeout: stallLimit, SwitchoverTimeout: helloBound, Log: testLogger(t)})
		_, serr := Send(ctx, src, sendTr, Options{Credentials: sc, StallTimeout: stallLimit, SwitchoverTimeout: time.Second, Log: testLogger(t)})
		drep, derr := wait()
		took := time.Since(frozen.at)
		t.Logf("source: %v\ndestination after %v: %v", serr, took.Round(time.Millisecond), derr)
		if serr == nil {
			t.Error("the source did not fail")
		}
		if !errors.Is(derr, errStalled) || !strings.Contains(derr.Error(), self) {
			t.Errorf("the destination's error does not say its own transport plugin stopped: %v", derr)
		}
		// The watch's Stats calls each wait statsTimeout: the stall is
		// found within one of them past its limit, helloBound.
		if want := helloBound + statsTimeout + 1500*time.Millisecond; took > want {
			t.Errorf("the destination returned %v after its plugin stopped; want within %v: it asked the stopped plugin more", took, want)
		}
		if drep.Handover != HandoverFailed || dst.State() == vmtest.StateRunning {
			t.Errorf("destination handover %s, VM %v; want failed, never run", drep.Handover, dst.State())
		}
	})
}

// TestPrecopySlowPauseNotStalled: a source in its switch-over sends
// nothing from the pause through its final dirty sync (and SaveState),
// for as long as its switchover_timeout allows; a destination whose
// StallTimeout is shorter cannot tell that from a stopped source. Here
// the source's VMM takes 4 StallTimeouts to pause its vCPUs, well
// within switchover_timeout: the migration completes, page-exact.
// Before, the destination failed on the stall and the source with it
// (and with `migrate`, whose switchover_timeout may be up to an hour
// while StallTimeout stays 30 s, on a switch-over quiet for 30 s).
func TestPrecopySlowPauseNotStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := vmtest.New(vmtest.Options{Regions: pcRegions, OnPause: func() { time.Sleep(4 * stallLimit) }})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dst := memGuest(t, 0)
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr := loopback.NewPipe()
	const switchover = 5 * time.Second
	wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, StallTimeout: stallLimit, SwitchoverTimeout: switchover, Log: testLogger(t)})
	if _, err := Send(ctx, src, sendTr, Options{Credentials: sc, SwitchoverTimeout: switchover, Log: testLogger(t)}); err != nil {
		t.Errorf("Send: %v", err)
	}
	receivedAll(t, wait, src, dst)
}

// verifiedHeld is a destination's transport whose SendMessage of
// VERIFIED says it began (began) and then waits until its context ends;
// everything else goes through.
type verifiedHeld struct {
	transport.Transport
	began chan struct{}
}

func (m verifiedHeld) SendMessage(ctx context.Context, msg transport.Message) error {
	if msg.Kind != msgVerified {
		return m.Transport.SendMessage(ctx, msg)
	}
	close(m.began)
	<-ctx.Done()
	return ctx.Err()
}

// TestVerifiedSendCancelled: the destination's caller cancels while
// VERIFIED (a verdict of no differing pages) is being sent. Before
// COMMIT a cancel fails the destination, which tells the source (ABORT)
// and never runs the VM, as a cancel anywhere after LOADED does
// (HANDOVER.md's loaded row): the report says cancelled, and the source
// resumes. Not handover-unknown: the cancel, not a stall, cut the send,
// and the connection works. After ca4a3e7 (a VERIFIED that does not get
// out is handover-unknown) the cancel left it handover-unknown, and a
// VMM whose migrate-cancel had taken kept a paused copy to resolve.
func TestVerifiedSendCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	held := verifiedHeld{Transport: recvTr, began: make(chan struct{})}
	wait := receiveAsync(dctx, dst, held, Options{Credentials: dc, Log: testLogger(t)})
	go func() {
		select {
		case <-held.began:
			dcancel()
		case <-ctx.Done():
		}
	}()
	srep, serr := Send(ctx, src, sendTr, Options{Credentials: sc, VerifyPages: true, Log: testLogger(t)})
	rep, err := wait()
	t.Logf("source: %v\ndestination: %v", serr, err)
	if ctx.Err() != nil {
		t.Fatal("the test's deadline passed")
	}
	if serr == nil || srep.Status != StatusFailed || src.State() != vmtest.StateRunning {
		t.Errorf("source: %v, status %s, VM %v; want failed, the VM running", serr, srep.Status, src.State())
	}
	if errors.Is(err, ErrHandoverUnknown) || rep.Status != StatusCancelled || rep.Handover != HandoverFailed ||
		dst.State() == vmtest.StateRunning || dst.Counters().Resumes != 0 {
		t.Errorf("destination: %v, status %s, handover %s, VM %v; want cancelled (failed), the VM never run",
			err, rep.Status, rep.Handover, dst.State())
	}
}
