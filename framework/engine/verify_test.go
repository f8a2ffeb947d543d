package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// stopsAtHashes is a source's transport whose destination stops reading
// as the page check begins: the first HASHES send, and every later
// one, waits until its context ends, and the counters stand still.
type stopsAtHashes struct {
	transport.Transport
	mu      sync.Mutex
	stopped bool
	stats   transport.Stats
}

func (s *stopsAtHashes) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind != msgHashes {
		return s.Transport.SendMessage(ctx, m)
	}
	s.mu.Lock()
	if !s.stopped {
		s.stats, _ = s.Transport.Stats(ctx)
		s.stopped = true
	}
	s.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (s *stopsAtHashes) Stats(ctx context.Context) (transport.Stats, error) {
	s.mu.Lock()
	stopped, st := s.stopped, s.stats
	s.mu.Unlock()
	if stopped {
		return st, nil
	}
	return s.Transport.Stats(ctx)
}

// TestHashesSendStalled: the destination stops reading as the page
// check begins. The source's HASHES send is under the stall rule of a
// pass's sends: it fails once nothing moved for StallTimeout (not
// cancelled: nobody cancelled), resumes its VM and sends ABORT; the
// destination never runs the VM. Before, the send waited until the
// caller cancelled.
func TestHashesSendStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, Log: testLogger(t)})
	start := time.Now()
	tr := &stopsAtHashes{Transport: sendTr}
	srep, serr := Send(ctx, src, tr, Options{Credentials: sc, VerifyPages: true, StallTimeout: stallLimit, Log: testLogger(t)})
	took := time.Since(start)
	rep, err := wait()
	t.Logf("source after %v: %v\ndestination: %v", took.Round(time.Millisecond), serr, err)
	if ctx.Err() != nil {
		t.Fatal("the source waited on its HASHES send until the test's deadline")
	}
	if !tr.stopped {
		t.Fatal("no HASHES was sent: the test did not test the page check")
	}
	if serr == nil || !strings.Contains(serr.Error(), "page hashes") || srep.Status != StatusFailed ||
		src.State() != vmtest.StateRunning {
		t.Errorf("source: %v, status %s, VM %v; want failed sending the hashes, the VM running", serr, srep.Status, src.State())
	}
	if dst.Counters().Resumes != 0 || rep.Status == StatusCompleted {
		t.Errorf("destination: %s, %d resumes: %v; want never run", rep.Status, dst.Counters().Resumes, err)
	}
}

// dropsVerified is a destination's transport whose VERIFIED is lost:
// its send returns, nothing reaches the source.
type dropsVerified struct{ transport.Transport }

func (d dropsVerified) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgVerified {
		return nil
	}
	return d.Transport.SendMessage(ctx, m)
}

// TestVerifiedNeverComes: the destination's VERIFIED never comes (it
// stopped, or its answer was lost). The source waits for it the stall
// bound and hashBudget for each page the destination compares, not a
// fixed 5 minutes: for this small guest well under a second. It resumes
// its VM and sends ABORT; the destination never runs the VM.
func TestVerifiedNeverComes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	wait := receiveAsync(ctx, dst, dropsVerified{recvTr}, Options{Credentials: dc, Log: testLogger(t)})
	sopt := Options{Credentials: sc, VerifyPages: true, StallTimeout: stallLimit, SwitchoverTimeout: stallLimit,
		Log: testLogger(t)}
	srep, serr := Send(ctx, src, sendTr, sopt)
	rep, err := wait()
	t.Logf("source: %v (check %d ms)\ndestination: %v", serr, srep.VerifyMS, err)
	if ctx.Err() != nil {
		t.Fatal("the source waited for VERIFIED until the test's deadline")
	}
	if serr == nil || !strings.Contains(serr.Error(), "no VERIFIED") || srep.Status != StatusFailed ||
		src.State() != vmtest.StateRunning {
		t.Errorf("source: %v, status %s, VM %v; want failed waiting for VERIFIED, the VM running", serr, srep.Status, src.State())
	}
	if dst.Counters().Resumes != 0 || rep.Status == StatusCompleted {
		t.Errorf("destination: %s, %d resumes: %v; want never run", rep.Status, dst.Counters().Resumes, err)
	}
}

// slowCheck emulates a destination that hashes slowly, and a transport
// that holds one message: a HASHES send returns only once the
// destination read it and checked it (perChunk each); lastExtra more
// is spent on the last chunk after the source's send returned (the
// destination still checking what its transport held).
type slowCheck struct {
	perChunk, lastExtra time.Duration
	pages               uint64
	read                chan struct{}
}

// sender is the source's end.
func (c *slowCheck) sender(tr transport.Transport) transport.Transport { return slowCheckSend{tr, c} }

// receiver is the destination's end.
func (c *slowCheck) receiver(tr transport.Transport) transport.Transport { return slowCheckRecv{tr, c} }

type slowCheckSend struct {
	transport.Transport
	c *slowCheck
}

func (s slowCheckSend) SendMessage(ctx context.Context, m transport.Message) error {
	if err := s.Transport.SendMessage(ctx, m); err != nil || m.Kind != msgHashes {
		return err
	}
	select {
	case <-s.c.read:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type slowCheckRecv struct {
	transport.Transport
	c *slowCheck
}

func (r slowCheckRecv) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := r.Transport.RecvMessage(ctx)
	if err != nil || m.Kind != msgHashes || len(m.Payload) < 16 {
		return m, err
	}
	time.Sleep(r.c.perChunk) // hashing, slowly
	r.c.read <- struct{}{}
	if first, n := binary.LittleEndian.Uint64(m.Payload), binary.LittleEndian.Uint64(m.Payload[8:]); first+n == r.c.pages {
		time.Sleep(r.c.lastExtra)
	}
	return m, err
}

// TestSlowCheckNotFailed: a destination that hashes slowly but on, each
// chunk within the stall bound, the whole check well beyond it, and the
// last chunk after the source's last send longer than the stall bound
// too, is not failed: each HASHES send that returns is progress, and
// the wait for VERIFIED allows hashBudget per page compared. The
// migration completes.
func TestSlowCheckNotFailed(t *testing.T) {
	old := hashBudget
	hashBudget = 50 * time.Microsecond // the guest below: ~2.4 s beyond the stall bound
	t.Cleanup(func() { hashBudget = old })
	regions := []vmtest.Region{{GPA: 0, Size: 3 * hashChunk * 4096}}
	src, err := vmtest.New(vmtest.Options{Regions: regions})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dst, err := vmtest.New(vmtest.Options{Regions: regions, Incoming: true})
	must(t, err)
	t.Cleanup(func() { dst.Close() })
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr := loopback.NewPipe()
	limit := 4 * stallLimit
	// Each chunk takes 0.4 of the stall bound, so that a loaded machine's
	// scheduling (the source hashing its next chunk, goroutines woken
	// late) still leaves it within the bound: at 0.6 a CI run beside
	// other packages' tests stalled once on the first chunk. The three
	// chunks and the last one's extra still take the check well past it.
	c := &slowCheck{perChunk: limit * 4 / 10, lastExtra: 2 * limit, pages: 3 * hashChunk, read: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, c.receiver(recvTr), Options{Credentials: dc, StallTimeout: limit, SwitchoverTimeout: limit,
		Log: testLogger(t)})
	srep, serr := Send(ctx, src, c.sender(sendTr), Options{Credentials: sc, VerifyPages: true, StallTimeout: limit,
		SwitchoverTimeout: limit, Log: testLogger(t)})
	rep, err := wait()
	t.Logf("source: %v (check %d ms, stall bound %v)\ndestination: %v", serr, srep.VerifyMS, limit, err)
	if serr != nil || srep.Status != StatusCompleted || srep.PagesChecked != 3*hashChunk {
		t.Errorf("source: %v, status %s, %d pages checked; want completed, every page checked", serr, srep.Status, srep.PagesChecked)
	}
	if err != nil || rep.Status != StatusCompleted {
		t.Errorf("destination: %v, status %s; want completed", err, rep.Status)
	}
	if took := time.Duration(srep.VerifyMS) * time.Millisecond; took < 2*limit {
		t.Errorf("the check took %v: not slower than the stall bound %v, the test did not test it", took, limit)
	}
}

// slowHashing is a source's transport on a slow host: every HASHES
// after the first goes out delay late (the source hashing that chunk).
type slowHashing struct {
	transport.Transport
	delay time.Duration
	sent  atomic.Int32
}

func (s *slowHashing) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgHashes && s.sent.Add(1) > 1 {
		time.Sleep(s.delay) // hashing, slowly
	}
	return s.Transport.SendMessage(ctx, m)
}

// checkGuests are a source and a destination of three HASHES chunks.
func checkGuests(t *testing.T) (src, dst *vmtest.VM) {
	t.Helper()
	regions := []vmtest.Region{{GPA: 0, Size: 3 * hashChunk * 4096}}
	src, err := vmtest.New(vmtest.Options{Regions: regions})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dst, err = vmtest.New(vmtest.Options{Regions: regions, Incoming: true})
	must(t, err)
	t.Cleanup(func() { dst.Close() })
	return src, dst
}

// TestSlowHashingNotUnknown: a source that takes longer than
// SwitchoverTimeout to hash each chunk after the first (a slow host:
// emulated KVM's TestMigrate/dirtying did, with the old 128 Ki-page
// chunks), but well within the stall bound, is waited for: the
// destination's wait for the next HASHES is under the stall rule, as
// the source's sends are. The migration completes. Before, the
// destination waited SwitchoverTimeout per message and ended
// handover-unknown while the source still hashed.
func TestSlowHashingNotUnknown(t *testing.T) {
	src, dst := checkGuests(t)
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr := loopback.NewPipe()
	sw, stall := 2*stallLimit, 10*stallLimit
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opt := Options{Credentials: dc, StallTimeout: stall, SwitchoverTimeout: sw, Log: testLogger(t)}
	wait := receiveAsync(ctx, dst, recvTr, opt)
	tr := &slowHashing{Transport: sendTr, delay: 2 * sw}
	opt.Credentials, opt.VerifyPages = sc, true
	srep, serr := Send(ctx, src, tr, opt)
	rep, err := wait()
	t.Logf("source: %v (check %d ms)\ndestination: %v", serr, srep.VerifyMS, err)
	if tr.sent.Load() < 2 {
		t.Fatalf("%d HASHES sent: the test did not test a slow chunk", tr.sent.Load())
	}
	if serr != nil || srep.Status != StatusCompleted {
		t.Errorf("source: %v, status %s; want completed", serr, srep.Status)
	}
	if err != nil || rep.Status != StatusCompleted || dst.Counters().Resumes != 1 {
		t.Errorf("destination: %v, status %s, %d resumes; want completed", err, rep.Status, dst.Counters().Resumes)
	}
}

// TestHashesAfterVerified: a source (buggy, or lying) sends HASHES once
// the page check completed and VERIFIED went out: empty, or a page's
// hash again. It cannot have written COMMIT before it (the stream keeps
// its order), so the destination refuses it (malformed, naming it),
// fails and says so (ABORT): the source that commits after it reads
// that ABORT at its COMMIT and resumes the VM, and the destination never
// runs it, in pre-copy and in post-copy. Before, an empty one was
// answered with VERIFIED again, which the source read in place of
// RUNNING (handover-unknown) while the destination ran the VM.
func TestHashesAfterVerified(t *testing.T) {
	for _, empty := range []bool{true, false} {
		t.Run(fmt.Sprintf("empty=%v", empty), func(t *testing.T) {
			src, dst := everySeventh(t, 0x5a)
			total := src.layout.Pages()
			extra := binary.LittleEndian.AppendUint64(nil, total) // first: after the last page
			extra = binary.LittleEndian.AppendUint64(extra, 0)
			if !empty { // page 0's hash again
				extra = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 1)
				extra = binary.LittleEndian.AppendUint64(extra, pageHash(src.mem[:framework.PageSize]))
			}
			var injected atomic.Bool
			srep, serr, rrep, rerr := migrate(t, src, dst, Options{VerifyPages: true}, func(p *pipe) {
				p.delivered = func(toDst bool, m transport.Message) {
					// The source's only HASHES (the guest is smaller
					// than a chunk): the extra one follows it, before
					// the COMMIT the source writes on VERIFIED.
					if toDst && m.Kind == msgHashes && injected.CompareAndSwap(false, true) {
						p.toDst <- transport.Message{Kind: msgHashes, Payload: extra}
					}
				}
			})
			t.Logf("source: %v\ndestination: %v", serr, rerr)
			if !injected.Load() {
				t.Fatal("no HASHES was sent: the test did not test it")
			}
			if srep.Status != StatusFailed || srep.Handover != HandoverFailed || src.resumed == 0 {
				t.Errorf("source %s (%s), resumed %d times; want failed: told ABORT at its COMMIT, it resumed the VM",
					srep.Status, srep.Handover, src.resumed)
			}
			if rrep.Status != StatusFailed || rrep.Handover != HandoverFailed || !errors.Is(rerr, errMalformed) ||
				!strings.Contains(fmt.Sprint(rerr), "after the page check completed") || dst.resumed != 0 {
				t.Errorf("destination %s (%s): %v, resumed %d times; want failed on a HASHES after the check "+
					"completed, never run", rrep.Status, rrep.Handover, rerr, dst.resumed)
			}
		})
	}
	t.Run("post-copy", func(t *testing.T) {
		s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		wait := receiveAsync(ctx, dst, rcv, opt)
		never, stale := pcPages(s)
		var abort []byte
		failed := runScript(func() {
			s.precopy(ctx, never, stale, true) // the check: HASHES, VERIFIED
			empty := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, s.pages), 0)
			s.send(ctx, msgHashes, empty)
			abort = s.recv(ctx, msgAbort)
		})
		rep, err := wait()
		if failed {
			t.Fatalf("script failed; Receive: %v", err)
		}
		t.Logf("destination: %v; ABORT %q", err, abort)
		if rep.Handover != HandoverFailed || !errors.Is(err, errMalformed) || dst.Counters().Resumes != 0 ||
			!strings.Contains(string(abort), "after the page check completed") {
			t.Errorf("destination %s: %v, %d resumes, ABORT %q; want failed, never run, ABORT naming the HASHES",
				rep.Handover, err, dst.Counters().Resumes, abort)
		}
	})
}

// TestEmptyHashesRefused: a source (or a broken plugin) that, during the
// page check, sends empty HASHES (no page's hash) again and again. Each
// is a message, and its bytes grow the transport's count: under the stall
// rule of recvHashes, which counts both as progress, such a source kept
// the destination waiting for as long as it sent them. Ferry's source
// never sends one (sendHashes skips an empty chunk), so the destination
// refuses the first as malformed: it fails at once, says so (ABORT),
// and never runs the VM; the source can have written no COMMIT before it
// (the check was open: commitRefused).
func TestEmptyHashesRefused(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first=%v", first), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
			wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, StallTimeout: stallLimit,
				SwitchoverTimeout: stallLimit, Log: testLogger(t)})
			s := newScript(t, src, sendTr, sc)
			defer sendTr.Close()
			const bound = 20 * stallLimit // the source's empty HASHES end here (the test's bound)
			var sent int
			var answer transport.Message
			var took time.Duration
			failed := runScript(func() {
				s.toLoaded(ctx, helloTransportTag|helloCheck)
				next := uint64(0)
				if !first {
					next = s.pages / 2
					s.send(ctx, msgHashes, hashesOf(s, 0, next, ^uint64(0)))
				}
				empty := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, next), 0)
				start := time.Now()
				for time.Since(start) < bound {
					if err := s.tr.SendMessage(ctx, transport.Message{Kind: msgHashes, Payload: empty}); err != nil {
						break // the destination ended the session
					}
					sent++
					time.Sleep(stallLimit / 4) // pacing: well inside the stall limit
				}
				took = time.Since(start)
				answer, _ = s.tr.RecvMessage(ctx)
			})
			rep, err := wait()
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			t.Logf("destination: %v; %d empty HASHES over %v; the source read %s %q", err, sent,
				took.Round(time.Millisecond), msgName(answer.Kind), answer.Payload)
			if took >= bound {
				t.Errorf("the destination took empty HASHES for %v (%d of them, stall limit %v): it never stopped waiting",
					took.Round(time.Millisecond), sent, stallLimit)
			}
			if rep.Handover != HandoverFailed || !errors.Is(err, errMalformed) || !strings.Contains(fmt.Sprint(err), "empty HASHES") ||
				dst.Counters().Resumes != 0 {
				t.Errorf("destination %s: %v, %d resumes; want failed on the empty HASHES (malformed), never run",
					rep.Handover, err, dst.Counters().Resumes)
			}
			if answer.Kind != msgAbort || !strings.Contains(string(answer.Payload), "empty HASHES") {
				t.Errorf("the source read %s %q; want ABORT naming the empty HASHES", msgName(answer.Kind), answer.Payload)
			}
		})
	}
}
