package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// Another migration's source at this destination's address. Two
// migrations between the same two hosts with an operator's certificates
// (a security block) share their credentials, so each one's source
// authenticates at the other's destination; a source in post-copy keeps
// dialling its destination's address for reconnect_timeout, and a later
// migration to that host may listen there (the port of a destination
// that died, taken again). Its RESUME names a guest of the same size:
// only the migration it belongs to tells it apart.

// foreignResume is the RESUME of another migration's source, in post-copy
// with a guest of the same size: only its tag differs.
func foreignResume(pages uint64, tag migrationTag) []byte { return testResume(pages, tag) }

// noAnswer reports what the destination answered on the script's
// connection within d, or "" if it answered nothing.
func noAnswer(ctx context.Context, s *script, d time.Duration) string {
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	m, err := s.tr.RecvMessage(rctx)
	if err != nil {
		return ""
	}
	return msgName(m.Kind) + " " + string(m.Payload)
}

// tagBlind is a destination's transport that ignores OpenRequest.Tag, as
// a third party's might (transport API 8 asks it to check the tag): it
// opens a session with any authenticated source, so another migration's
// HELLO or RESUME reaches the engine, whose own checks must hold.
type tagBlind struct{ transport.Transport }

func (b tagBlind) Open(ctx context.Context, req transport.OpenRequest) error {
	req.Tag = transport.Tag{}
	return b.Transport.Open(ctx, req)
}

// destination is rcv as the test's destination uses it: itself, or
// tag-blind; reopens tells the test when Receive listens again.
func destination(rcv transport.Transport, blind bool) *reopens {
	if blind {
		return newReopens(tagBlind{rcv})
	}
	return newReopens(rcv)
}

// reopens is a destination's transport that tells the test when
// Receive opens it again: again is closed as its second Open begins
// (the destination listens anew, for a reconnect after its connection
// broke or for its own source after it refused another migration's).
type reopens struct {
	transport.Transport
	opens atomic.Int32
	again chan struct{}
}

func newReopens(tr transport.Transport) *reopens {
	return &reopens{Transport: tr, again: make(chan struct{})}
}

// Open implements transport.Transport.Open.
func (r *reopens) Open(ctx context.Context, req transport.OpenRequest) error {
	if r.opens.Add(1) == 2 {
		close(r.again)
	}
	return r.Transport.Open(ctx, req)
}

// listening waits until Receive opened the transport again. It fails
// if Receive returned first (ended closed; nil: not watched) or ctx
// ended.
func (r *reopens) listening(ctx context.Context, ended <-chan struct{}) error {
	select {
	case <-r.again:
		return nil
	case <-ended:
		return errors.New("the destination's Receive returned instead of opening its transport again")
	case <-ctx.Done():
		return fmt.Errorf("the destination did not open its transport again: %w", ctx.Err())
	}
}

// awaitListening is listening in a script: the destination listens
// again before the script goes on.
func (s *script) awaitListening(ctx context.Context, d *reopens) {
	s.t.Helper()
	if err := d.listening(ctx, nil); err != nil {
		s.t.Errorf("script: %v", err)
		panic(errScript)
	}
}

// strangerResumes connects as another migration's source (the job's
// credentials, its own tag), hangs up, and fails t if the destination
// let it say anything. A destination's transport that keeps the tag rule
// refuses its session: its Open fails (ErrWrongMigration) and nothing it
// would send, pages first, can reach the running guest. Through a
// tag-blind one it says RESUME, pushes nothing (it has not been asked
// for pages), and must be answered nothing.
func strangerResumes(ctx context.Context, t *testing.T, s *script, blind bool) {
	other := newMigrationTag()
	req := s.req
	req.Tag = transport.Tag(other)
	err := s.tr.Open(ctx, req)
	if !blind {
		if !errors.Is(err, transport.ErrWrongMigration) {
			t.Errorf("another migration's source opened a session at this destination: %v; want ErrWrongMigration", err)
		}
		if err == nil {
			s.tr.SendPages(ctx, []transport.PageRun{{First: 0, Count: s.pages, Kind: transport.KindData}})
			s.tr.Close()
		}
		return
	}
	must(t, err)
	s.send(ctx, msgResume, foreignResume(s.pages, other))
	if got := noAnswer(ctx, s, time.Second); got != "" {
		t.Errorf("the destination answered another migration's RESUME: %.80q", got)
	}
	s.tr.Close()
}

// breakAfterRunning is a source that switches to post-copy and loses
// the connection after RUNNING: pre-copy (pcPages), COMMIT and RUNNING
// while it serves the guest's requests, then the break, with nothing in
// the middle of a send. It returns once its request server has stopped,
// so nothing of the old session goes out on the next one, with the
// source's sequence at the switch (checkPages).
func (s *script) breakAfterRunning(ctx context.Context) (savedSeq uint64) {
	never, stale := pcPages(s)
	s.precopy(ctx, never, stale, false)
	savedSeq = s.src.Seq()
	cut := s.serving(ctx)
	s.send(ctx, msgCommit, nil)
	s.recv(ctx, msgRunning)
	cut()
	return savedSeq
}

// serving serves the guest's requests from its own goroutine until cut,
// which breaks the connection with nothing in the middle of a send and
// returns once the server stopped: nothing of this session goes out on
// the next one.
func (s *script) serving(ctx context.Context) (cut func()) {
	sctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.serve(sctx)
	}()
	return func() {
		s.sendMu.Lock()
		s.tr.Close()
		stop()
		s.sendMu.Unlock()
		<-served
	}
}

// resumeAndSettle is the source coming back after breakAfterRunning:
// RESUME must be answered with MISSING listing exactly the pages it
// still owes; it serves and pushes them until SETTLED.
func (s *script) resumeAndSettle(ctx context.Context) {
	s.mu.Lock()
	owed := bitmap.New(s.pages)
	owed.Or(s.absent)
	owed.AndNot(s.queued)
	s.mu.Unlock()
	if diff := bitmapDiff(s.resume(ctx), owed); diff != "" {
		s.t.Errorf("MISSING differs from the pages the source owes: %s", diff)
	}
	go s.serve(ctx)
	s.push(ctx)
	s.settled(ctx)
}

// checkResumed checks a destination whose source came back once after
// RUNNING (breakAfterRunning, resumeAndSettle): the script ran through,
// Receive completed with one reconnect and the guest running here, and
// every page is the source's (checkPages).
func checkResumed(t *testing.T, s *script, dst *vmtest.VM, savedSeq uint64, failed bool, wait func() (Report, error)) {
	t.Helper()
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err != nil || rep.Reconnects != 1 || rep.Handover != HandoverRunning {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	checkPages(t, s, dst, savedSeq, ^uint64(0))
}

// After RUNNING the connection breaks. Another migration's source dials
// first and says RESUME: answered MISSING, it would push its own guest's
// pages into this running guest (and its own destination would never
// get them). The destination must answer it nothing, then take its own
// source's RESUME and complete page-exact.
//
// Twice: with the loopback transport, which refuses the stranger's
// session (its tag differs from the HELLO's this destination took), and
// with a tag-blind one, where the engine's RESUME check does it.
func TestForeignResumeAfterRunning(t *testing.T) {
	for _, blind := range []bool{false, true} {
		t.Run(fmt.Sprintf("blind=%v", blind), func(t *testing.T) { foreignResumeAfterRunning(t, blind) })
	}
}

func foreignResumeAfterRunning(t *testing.T, blind bool) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	opt.ReconnectTimeout = 10 * time.Second // a script that fails after RUNNING leaves Receive waiting this long
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := destination(rcv, blind)
	wait := receiveAsync(ctx, dst, d, opt)
	var savedSeq uint64
	failed := runScript(func() {
		savedSeq = s.breakAfterRunning(ctx)
		s.awaitListening(ctx, d) // for a reconnect

		strangerResumes(ctx, t, s, blind)

		s.resumeAndSettle(ctx) // its own source: the stranger took nothing
	})
	checkResumed(t, s, dst, savedSeq, failed, wait)
}

// The connection breaks after LOADED, before COMMIT: the destination
// listens to tell its own source "never got COMMIT, resume the VM"
// (ABORT). Told to another migration's source, in post-copy with a
// destination that ran its guest and died, that source would resume its
// stale copy: the guest would run again from an older state. The
// destination must answer it nothing and tell only its own source.
func TestForeignResumeBeforeCommit(t *testing.T) {
	for _, blind := range []bool{false, true} {
		t.Run(fmt.Sprintf("blind=%v", blind), func(t *testing.T) { foreignResumeBeforeCommit(t, blind) })
	}
}

func foreignResumeBeforeCommit(t *testing.T, blind bool) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := destination(rcv, blind)
	wait := receiveAsync(ctx, dst, d, opt)
	never, stale := pcPages(s)
	var abort string
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close()             // COMMIT lost with the connection
		s.awaitListening(ctx, d) // to tell its own source

		strangerResumes(ctx, t, s, blind)

		must(t, s.tr.Open(ctx, s.req)) // its own source
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		abort = string(s.recv(ctx, msgAbort))
		s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err == nil || rep.Handover != HandoverFailed || dst.Counters().Resumes != 0 {
		t.Fatalf("Receive: %v, report %+v, resumes %d", err, rep, dst.Counters().Resumes)
	}
	if why, answers := resumeAbort([]byte(abort), s.tag); !answers || !strings.Contains(string(why), "never received COMMIT") {
		t.Errorf("ABORT to its own source said %q; want the answer to its RESUME (its tag first)", abort)
	}
}

// A source of another migration with the same credentials (an operator's
// certificates, a job whose destination address is another job's)
// reaches this destination first, through a transport that let its
// session open (this fake pipe ignores the tag, as a third party's
// transport might; loopback refuses it earlier,
// TestHelloOfAnotherMigrationTransport). With migration IDs on both
// sides its HELLO is refused before any page is written: the destination
// never loads or runs its guest, that source is told at once and runs
// on, and the destination waits on for its own source, which then
// migrates. Matching IDs, or none on the destination, migrate as before.
func TestHelloOfAnotherMigration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		refused  bool
	}{
		{"another migration", "job-b", "job-a", true},
		{"a source without an id", "", "job-a", true},
		{"same migration", "job-a", "job-a", false},
		{"no ids", "", "", false},
		{"a destination without an id", "job-a", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p += 5 {
				src.write(p, 0x55)
			}
			s, r := newPipe(src, dst)
			d := newReopens(r)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rcv := startReceive(ctx, dst, d, Options{MigrationID: tc.dst, Log: testLogger(t)})
			srep, serr := Send(ctx, src, s, Options{MigrationID: tc.src})
			if tc.refused {
				if serr == nil || srep.Status != StatusFailed || src.paused || src.resumed != 0 {
					t.Errorf("Send: %v, status %s, source paused %v resumed %d; want it failed before the pause",
						serr, srep.Status, src.paused, src.resumed)
				}
				if serr != nil && !strings.Contains(serr.Error(), "another migration") {
					t.Errorf("the source's error does not say why: %v", serr)
				}
				// It learns nothing of this destination beyond the refusal
				// (transport.Transport, "Migration tag"): not its migration
				// ID, from which its tag is made.
				if serr != nil && strings.Contains(serr.Error(), tc.dst) {
					t.Errorf("the refused source was told the destination's migration ID: %v", serr)
				}
				if err := d.listening(ctx, rcv.done); err != nil { // for its own source
					_, rerr := rcv.wait()
					t.Fatalf("after another migration's HELLO: %v (Receive: %v)", err, rerr)
				}
				if dst.loaded != nil || dst.resumed != 0 {
					t.Errorf("the destination took the other migration's guest: state %q, resumed %d", dst.loaded, dst.resumed)
				}
				_, serr = Send(ctx, src, s, Options{MigrationID: tc.dst}) // its own source
			}
			rrep, rerr := rcv.wait()
			if serr != nil || rerr != nil || dst.resumed != 1 || rrep.Status != StatusCompleted {
				t.Fatalf("send %v / receive %v (%s), destination resumed %d", serr, rerr, rrep.Status, dst.resumed)
			}
		})
	}
}

// TestHelloOfAnotherMigrationTransport: with a transport that keeps the
// migration tag rule (loopback), another migration's source never gets a
// session at a destination that knows its migration ID: its Send fails
// at Open (ErrWrongMigration) before it paused anything, the
// destination writes none of its pages and waits on, and its own source
// then migrates.
func TestHelloOfAnotherMigrationTransport(t *testing.T) {
	src, dst, other := memGuest(t, 0x11), memGuest(t, 0), memGuest(t, 0x99)
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr := loopback.NewPipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, recvTr, Options{MigrationID: "job-a", Credentials: dc, Log: testLogger(t)})
	srep, serr := Send(ctx, other, sendTr, Options{MigrationID: "job-b", Credentials: sc})
	if !errors.Is(serr, transport.ErrWrongMigration) || srep.Status != StatusFailed || other.Counters().Pauses != 0 {
		t.Errorf("another migration's Send: %v, status %s, pauses %d; want refused at Open, nothing paused",
			serr, srep.Status, other.Counters().Pauses)
	}
	sendTr.Close()
	if _, serr = Send(ctx, src, sendTr, Options{MigrationID: "job-a", Credentials: sc}); serr != nil {
		t.Fatalf("its own source: %v", serr)
	}
	rep, err := wait()
	if err != nil || rep.Status != StatusCompleted {
		t.Fatalf("Receive: %v, %+v", err, rep)
	}
	for p := uint64(0); p < dst.RAM().Pages(); p++ {
		if !bytes.Equal(dst.Page(p), src.Page(p)) {
			t.Fatalf("page %d differs from its own source's (another migration's byte %#x)", p, dst.Page(p)[0])
		}
	}
}

// memGuest is a small vmtest guest of pcRegions: an incoming destination
// for fill 0, else a source whose RAM is then all fill (so that two
// sources differ in every byte).
func memGuest(t *testing.T, fill byte) *vmtest.VM {
	v, err := vmtest.New(vmtest.Options{Regions: pcRegions, Incoming: fill == 0})
	must(t, err)
	t.Cleanup(func() { v.Close() })
	for i := range v.RAM() {
		m := v.Memory(i)
		for j := range m {
			m[j] = fill
		}
	}
	return v
}

// receiving is Receive on its own goroutine, as receiveAsync runs it,
// for a test that watches it end: done is closed once it returned rep
// and err.
type receiving struct {
	done chan struct{}
	rep  Report
	err  error
}

func startReceive(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options) *receiving {
	r := &receiving{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.rep, r.err = Receive(ctx, dst, tr, opt)
	}()
	return r
}

// wait returns Receive's report and error once it returned.
func (r *receiving) wait() (Report, error) {
	<-r.done
	return r.rep, r.err
}

// strangerGuests is twoRegions with every page of the source holding
// 0x66: a destination's RAM file then shows whatever of it was written.
func strangerGuests(t *testing.T) (src, dst *fakeVM) {
	src, dst = twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x66)
	}
	return src, dst
}

// strangerWritesFirst is a hostile source of migration job-b on s,
// holding the job's credentials: it writes four pages of its guest
// before it says HELLO.
func strangerWritesFirst(ctx context.Context, t *testing.T, s *pipeEnd, layout framework.Layout) {
	t.Helper()
	must(t, s.SendPages(ctx, []transport.PageRun{{First: 0, Count: 4, Kind: transport.KindData}}))
	must(t, s.SendMessage(ctx, transport.Message{Kind: msgHello, Payload: encodeHello(layout, 0, tagFor("job-b"))}))
}

// failedOnStranger fails t unless Receive failed on the other
// migration's HELLO and never ran a guest.
func failedOnStranger(t *testing.T, rcv *receiving, dst *fakeVM) {
	t.Helper()
	rep, err := rcv.wait()
	if !errors.Is(err, errOtherMigration) || rep.Status != StatusFailed || dst.resumed != 0 {
		t.Fatalf("Receive: %v, status %s, resumed %d; want it failed on the other migration's HELLO", err, rep.Status, dst.resumed)
	}
}

// A stranger's session that wrote pages before its HELLO was refused
// (a tag-blind transport, and a hostile source that holds the job's
// credentials) leaves this destination's RAM holding another guest's
// bytes: it does not wait on as a clean one does (waitAgain), it fails.
func TestStrangerPagesFailTheDestination(t *testing.T) {
	src, dst := strangerGuests(t)
	s, r := newPipe(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcv := startReceive(ctx, dst, r, Options{MigrationID: "job-a", Log: testLogger(t)})
	strangerWritesFirst(ctx, t, s, src.layout)
	failedOnStranger(t, rcv, dst)
}

// undercounting is a destination's tag-blind transport whose Stats count
// no page (a third party's that counts only what it acknowledged, say):
// what the stranger wrote must be found without its word.
type undercounting struct{ tagBlind }

func (undercounting) Stats(context.Context) (transport.Stats, error) { return transport.Stats{}, nil }

// TestStrangerPagesUncounted: as TestStrangerPagesFailTheDestination,
// through a transport whose Stats say no page was written. The
// destination's RAM started empty, and the RAM file now holds the
// stranger's pages: it fails instead of waiting on, and its own source,
// which comes next, is not taken into that RAM.
func TestStrangerPagesUncounted(t *testing.T) {
	src, dst := strangerGuests(t)
	s, r := newPipe(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waiting := make(chan struct{})
	var once sync.Once
	opt := Options{MigrationID: "job-a", Log: testLogger(t), Progress: func(Progress) { once.Do(func() { close(waiting) }) }}
	rcv := startReceive(ctx, dst, undercounting{tagBlind{r}}, opt)
	<-waiting // the pipe writes at once; a transport, only once it opened
	strangerWritesFirst(ctx, t, s, src.layout)
	if m, err := s.RecvMessage(ctx); err != nil || m.Kind != msgAbort { // the stranger is told
		t.Fatalf("the stranger got %s, %v; want ABORT", msgName(m.Kind), err)
	}
	sctx, stop := context.WithCancel(ctx)
	go func() { <-rcv.done; stop() }()
	Send(sctx, src, s, Options{MigrationID: "job-a"}) // its own source: refused with the destination, or taken
	failedOnStranger(t, rcv, dst)
}

// TestOlderSourceResumes: a source of the engine before transport API 8
// (its HELLO lacks helloTransportTag; its transport names no tag, as the
// TCP transport's wire version 1 cannot) migrated in post-copy to this
// destination, which had no migration ID and so took it. The connection
// breaks after RUNNING and the source reconnects, naming no tag in its
// transport's handshake again: the destination must take it (RESUME's
// tag is checked) and complete page-exact; refused, the guest it runs,
// lacking the source's pages, would be lost after reconnect_timeout.
func TestOlderSourceResumes(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	s.helloFlags, s.req.Tag = helloMaySwitch, transport.Tag{}
	opt.ReconnectTimeout = 5 * time.Second // refused, the guest is lost after it
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	var savedSeq uint64
	failed := runScript(func() {
		savedSeq = s.breakAfterRunning(ctx)
		s.resumeAndSettle(ctx)
	})
	checkResumed(t, s, dst, savedSeq, failed, wait)
}

// stallsAfterFirst is a tag-blind destination's transport whose Opens
// after the first wait until their context ends: no source comes again.
type stallsAfterFirst struct {
	tagBlind
	opens int
}

func (b *stallsAfterFirst) Open(ctx context.Context, req transport.OpenRequest) error {
	if b.opens++; b.opens > 1 {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.tagBlind.Open(ctx, req)
}

// TestWaitAgainTimesOut: a destination that refused another migration's
// HELLO waits on within what is left of IncomingTimeout, counted from
// Receive's start; when its own source never comes, it fails once that
// ran out, and says that it refused a source of another migration
// meanwhile (the operator's likely mistake: another job's address).
func TestWaitAgainTimesOut(t *testing.T) {
	src, dst := twoRegions(t)
	s, r := newPipe(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	const timeout = 500 * time.Millisecond
	rcv := startReceive(ctx, dst, &stallsAfterFirst{tagBlind: tagBlind{r}},
		Options{MigrationID: "job-a", IncomingTimeout: timeout, Log: testLogger(t)})
	must(t, s.SendMessage(ctx, transport.Message{Kind: msgHello, Payload: encodeHello(src.layout, 0, tagFor("job-b"))}))
	_, err := rcv.wait()
	if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
		t.Errorf("Receive returned after %v; want IncomingTimeout (%v) after its start", took, timeout)
	}
	if err == nil || !strings.Contains(err.Error(), "incoming_timeout") || !strings.Contains(err.Error(), "another migration refused meanwhile: 1") {
		t.Fatalf("Receive: %v; want it to time out naming the refused source of another migration", err)
	}
}
