package engine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/postcopy"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// The destination's post-copy against a scripted source speaking engine
// protocol 3 over loopback pipes, into a vmtest VM with a real
// userfaultfd: the destination's guest runs (WriteEvery) and faults
// while pages are still arriving.

// pcRegions: 1024 pages in two regions.
var pcRegions = []vmtest.Region{{GPA: 0, Size: 1 << 20}, {GPA: 64 << 20, Size: 3 << 20}}

// pcFree: the source guest's free pages (balloon hints): pages 16-63
// and 300-331. Free pages travel as zero runs.
var pcFree = []hint.GPARange{{GPA: 16 << 12, Size: 48 << 12}, {GPA: 64<<20 + (300-256)<<12, Size: 32 << 12}}

func needUffd(t *testing.T) {
	t.Helper()
	if err := uffd.Available(); err != nil {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
}

// script is the scripted source.
type script struct {
	t      *testing.T
	src    *vmtest.VM
	tr     *loopback.Transport
	req    transport.OpenRequest
	layout framework.Layout
	pages  uint64
	free   *bitmap.Bitmap
	tag    migrationTag // this migration's, in HELLO and RESUME
	// helloFlags are HELLO's: Send's (helloMaySwitch|helloTransportTag)
	// unless the test plays an older source.
	helloFlags uint32

	absent   *bitmap.Bitmap // what POSTCOPY lists
	neverZ   *bitmap.Bitmap // absent free pages (answered with zero runs)
	lateLeft int            // requests still to answer late
	lateBy   time.Duration  // how late; 0 is 30 ms
	onAsk    func()         // if set, run before each REQUEST is answered

	sendMu    sync.Mutex // held around marking pages queued and sending them
	mu        sync.Mutex
	queued    *bitmap.Bitmap // owed pages queued once (urgent or pushed)
	requested *bitmap.Bitmap // pages named in REQUESTs
	requests  int
}

func newScript(t *testing.T, src *vmtest.VM, tr *loopback.Transport, creds transport.Credentials) *script {
	files, ram, err := RAMFiles(src.RAM(), transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFiles(files) })
	pages := src.RAM().Pages()
	s := &script{t: t, src: src, tr: tr, layout: src.RAM(), pages: pages, free: src.Free(), tag: newMigrationTag(),
		req:    transport.OpenRequest{Role: transport.RoleSend, RAM: ram, Files: files, Credentials: creds},
		absent: bitmap.New(pages), neverZ: bitmap.New(pages), queued: bitmap.New(pages), requested: bitmap.New(pages),
		helloFlags: helloMaySwitch | helloTransportTag}
	s.req.Tag = transport.Tag(s.tag) // as Send names its tag to the transport
	return s
}

func (s *script) gpa(p uint64) uint64 {
	r, off, _ := s.layout.Locate(p)
	return r.GPA + off
}

func (s *script) send(ctx context.Context, kind uint32, payload []byte) {
	s.t.Helper()
	if err := s.tr.SendMessage(ctx, transport.Message{Kind: kind, Payload: payload}); err != nil {
		s.t.Errorf("script: send %s: %v", msgName(kind), err)
		panic(errScript)
	}
}

var errScript = errors.New("script failed")

func (s *script) recv(ctx context.Context, kind uint32) []byte {
	s.t.Helper()
	m, err := s.tr.RecvMessage(ctx)
	if err != nil || m.Kind != kind {
		s.t.Errorf("script: want %s, got %s %q, %v", msgName(kind), msgName(m.Kind), m.Payload, err)
		panic(errScript)
	}
	return m.Payload
}

// runs turns the pages of set (in [0, pages)) into runs, data or zero
// by the source's free pages.
func (s *script) runs(set *bitmap.Bitmap, zero func(p uint64) bool) []transport.PageRun {
	var out []transport.PageRun
	set.Runs(func(first, n uint64) bool {
		for p := first; p < first+n; p++ {
			k := transport.KindData
			if zero(p) {
				k = transport.KindZero
			}
			if l := len(out); l > 0 && out[l-1].Kind == k && out[l-1].First+out[l-1].Count == p {
				out[l-1].Count++
				continue
			}
			out = append(out, transport.PageRun{First: p, Count: 1, Kind: k})
		}
		return true
	})
	return out
}

// precopy runs the handshake and the bulk pass: every page but the
// never-sent ones goes (free ones as zero runs), then the stale ones are
// written on the source, which pauses; Flush; POSTCOPY in two chunks;
// STATE; LOADED; with hashes, HASHES and VERIFIED.
func (s *script) precopy(ctx context.Context, never, stale []uint64, hashes bool) {
	s.toState(ctx, never, stale)
	s.recv(ctx, msgLoaded)
	if !hashes {
		return
	}
	s.send(ctx, msgHashes, s.hashesAll())
	v := s.recv(ctx, msgVerified)
	if binary.LittleEndian.Uint64(v) != 0 {
		s.t.Errorf("VERIFIED: %d pages differ", binary.LittleEndian.Uint64(v))
	}
}

// hashesAll is the page check's one HASHES for every page, as precopy
// sends it.
func (s *script) hashesAll() []byte {
	b := make([]byte, 16, 16+8*s.pages)
	for p := range s.pages {
		h := uint64(hashFree)
		if !s.free.Test(p) {
			h = pageHash(s.src.Page(p))
		}
		b = binary.LittleEndian.AppendUint64(b, h)
	}
	binary.LittleEndian.PutUint64(b[8:], s.pages)
	return b
}

// toState is precopy up to its wait for LOADED: the last thing it
// sends is STATE.
func (s *script) toState(ctx context.Context, never, stale []uint64) {
	must(s.t, s.tr.Open(ctx, s.req))
	s.send(ctx, msgHello, encodeHello(s.layout, s.helloFlags, s.tag))
	flags, why, err := decodeReady(s.recv(ctx, msgReady))
	if err != nil || flags&readyPostcopy == 0 {
		s.t.Errorf("READY: flags %#x %q %v", flags, why, err)
		panic(errScript)
	}
	bulk := bitmap.New(s.pages)
	bulk.SetAll()
	queued := uint64(0)
	for _, p := range never {
		bulk.Clear(p)
		s.absent.Set(p)
		if s.free.Test(p) {
			s.neverZ.Set(p)
		}
	}
	must(s.t, s.tr.SendPages(ctx, s.runs(bulk, s.free.Test)))
	queued += bulk.Count()
	for _, p := range stale {
		must(s.t, s.src.Write(s.gpa(p)))
		s.absent.Set(p)
	}
	must(s.t, s.src.Pause(ctx))
	must(s.t, s.tr.Flush(ctx))
	var list []pageRun
	s.absent.Runs(func(first, n uint64) bool { list = append(list, pageRun{first, n}); return true })
	half := len(list) / 2
	s.send(ctx, msgPostcopy, encodePostcopy(queued, list[:half], false))
	s.send(ctx, msgPostcopy, encodePostcopy(queued, list[half:], true))
	state, err := s.src.SaveState(ctx)
	must(s.t, err)
	s.send(ctx, msgState, encodeStateChunk(uint64(len(state)), 0, state))
}

// take marks the owed pages of [first, first+n) queued and returns the
// ones it took (each owed page once: the rule that keeps the guest safe).
func (s *script) take(first, n uint64, requested bool) *bitmap.Bitmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := bitmap.New(s.pages)
	for p := first; p < first+n; p++ {
		if requested {
			s.requested.Set(p)
		}
		if s.absent.Test(p) && !s.queued.Test(p) {
			s.queued.Set(p)
			got.Set(p)
		}
	}
	return got
}

func (s *script) untake(b *bitmap.Bitmap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.Runs(func(first, n uint64) bool { s.queued.ClearRange(first, n); return true })
}

// serve answers REQUESTs on the urgent path until the session ends; the
// first lateLeft are answered lateBy (30 ms) late, each after onAsk.
// Absent free pages go as zero runs.
func (s *script) serve(ctx context.Context) {
	for {
		m, err := s.tr.RecvUrgent(ctx)
		if err != nil {
			return
		}
		runs, _, _, err := decodeRuns(nil, m.Payload, s.pages, 0)
		if err != nil || m.Kind != msgRequest || binary.LittleEndian.Uint32(m.Payload) != 0 {
			s.t.Errorf("script: bad REQUEST %d %x: %v", m.Kind, m.Payload, err)
			return
		}
		s.mu.Lock()
		s.requests++
		late := s.lateLeft > 0
		s.lateLeft--
		s.mu.Unlock()
		if late {
			time.Sleep(cmp.Or(s.lateBy, 30*time.Millisecond))
		}
		if s.onAsk != nil {
			s.onAsk()
		}
		s.sendMu.Lock()
		got := bitmap.New(s.pages)
		for _, r := range runs {
			got.Or(s.take(r.First, r.Count, true))
		}
		if err := s.tr.SendPagesUrgent(ctx, s.runs(got, s.neverZ.Test)); err != nil {
			s.untake(got)
			s.sendMu.Unlock()
			return
		}
		s.sendMu.Unlock()
	}
}

// push sends every owed page not queued yet, in the background path.
func (s *script) push(ctx context.Context) {
	for p := uint64(0); p < s.pages; p += 16 {
		s.sendMu.Lock()
		got := s.take(p, min(16, s.pages-p), false)
		if err := s.tr.SendPages(ctx, s.runs(got, s.neverZ.Test)); err != nil {
			s.sendMu.Unlock()
			s.t.Errorf("script: push: %v", err)
			panic(errScript)
		}
		s.sendMu.Unlock()
	}
}

// settled reads SETTLED: pages that differed on arrival, the first.
func (s *script) settled(ctx context.Context) (uint64, uint64) {
	b := s.recv(ctx, msgSettled)
	if len(b) != 16 {
		s.t.Errorf("SETTLED of %d bytes", len(b))
		panic(errScript)
	}
	s.send(ctx, msgSettled, nil) // the source's answer (protocol 6): heard
	s.tr.Close()                 // as a source ends its migration; the destination waits for it (awaitSourceClose)
	return binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
}

// testResume is RESUME as the source writes it: u32 version, u64 pages,
// the migration's tag.
func testResume(pages uint64, tag migrationTag) []byte {
	b := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, protocolVersion), pages)
	return append(b, tag[:]...)
}

// pcSetup makes the source and destination VMs, the pipe and the script.
func pcSetup(t *testing.T, dopt vmtest.Options) (*script, *vmtest.VM, *loopback.Transport, Options) {
	needUffd(t)
	src, err := vmtest.New(vmtest.Options{Regions: pcRegions, Free: pcFree})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dopt.Regions, dopt.Incoming = pcRegions, true
	dst, err := vmtest.New(dopt)
	must(t, err)
	t.Cleanup(func() { dst.Close() })
	scr, rcv := loopback.NewPipe()
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	opt := Options{Credentials: dc, Transport: schema.Config{"zero_punch": true}, SwitchoverTimeout: 10 * time.Second,
		Log: testLogger(t)}
	return newScript(t, src, scr, sc), dst, rcv, opt
}

// receiveAsync runs Receive on its own goroutine.
func receiveAsync(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options) func() (Report, error) {
	var rep Report
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, err = Receive(ctx, dst, tr, opt)
	}()
	return func() (Report, error) { <-done; return rep, err }
}

// runScript runs fn, turning the script's panics into a failed test.
func runScript(fn func()) (failed bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != errScript {
				panic(r)
			}
			failed = true
		}
	}()
	fn()
	return false
}

// guestWrote waits until the guest's writer (vmtest's WriteEvery) wrote
// at least n pages, each through a fault where its page was not mapped
// yet; the test fails if ctx ends first.
func guestWrote(ctx context.Context, t *testing.T, vm *vmtest.VM, n uint64) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for vm.Counters().Writes < n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Errorf("the guest wrote %d pages, want %d: %v", vm.Counters().Writes, n, ctx.Err())
			return
		}
	}
}

// checkPages: every page the destination's guest owns holds the
// source's bytes, unless the guest wrote it after it resumed (a record
// with a later sequence); free pages hold zeros.
func checkPages(t *testing.T, s *script, dst *vmtest.VM, savedSeq uint64, except uint64) {
	t.Helper()
	must(t, dst.Verify())
	bad := 0
	zero := make([]byte, framework.PageSize)
	for p := range s.pages {
		if p == except {
			continue
		}
		got := dst.Page(p)
		switch {
		case s.free.Test(p):
			if !bytes.Equal(got, zero) {
				bad++
				t.Errorf("free page %d is not zero", p)
			}
		case bytes.Equal(got, s.src.Page(p)):
		case binary.LittleEndian.Uint64(got[8:]) > savedSeq:
		default:
			if bad++; bad < 5 {
				t.Errorf("page %d: seq %d, the source's seq %d", p, binary.LittleEndian.Uint64(got[8:]),
					binary.LittleEndian.Uint64(s.src.Page(p)[8:]))
			}
		}
	}
}

// pcPages is which pages the tests leave out of the bulk pass or make
// stale: every 7th page never sent (including free ones), every 11th
// dirtied after it was sent.
func pcPages(s *script) (never, stale []uint64) {
	for p := range s.pages {
		switch {
		case p%7 == 3:
			never = append(never, p)
		case p%11 == 5 && !s.free.Test(p):
			stale = append(stale, p)
		}
	}
	return never, stale
}

// TestPostcopyReceive: the whole destination side against a scripted
// source: the guest runs and faults during post-copy, zero pages and
// landed pages fault locally, a request is answered late, a zero run
// arrives after its fault, every page ends with the source's bytes.
//
// Each fault figure it checks is made by a touch the script waits for
// before it pushes the owed pages (and post-copy settles): a landed
// page read as device code would, and the guest's writer having written
// (guestWrote). It slept 50 ms for the writer before, which under load
// (8.2 to 8.7) had at times not written before every page arrived: 2
// runs in 30 reported no landed-local fault ("fault figures").
func TestPostcopyReceive(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	s.lateLeft = 3
	var prog []Progress
	var progMu sync.Mutex
	opt.Progress = func(p Progress) { progMu.Lock(); prog = append(prog, p); progMu.Unlock() }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	const zp, fz = 20, 17 // a free page sent as a zero run (a hole here); a free page never sent
	const land = 1        // a page of data sent in the bulk pass, neither never sent nor stale
	if slices.Contains(never, land) || slices.Contains(stale, land) || s.free.Test(land) {
		t.Fatalf("page %d is not held data at the switch", land)
	}
	var savedSeq uint64
	var bad, first uint64
	failed := runScript(func() {
		s.precopy(ctx, never, stale, true)
		savedSeq = s.src.Seq()
		go s.serve(ctx)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		if dst.State() != vmtest.StateRunning {
			t.Errorf("destination %v after RUNNING", dst.State())
		}
		// The guest's device code reads a zero page (a hole: resolved
		// locally) and a free page never sent (requested, answered late
		// with a zero run), while its vCPU writes and faults.
		if pg := dst.Page(zp); pg == nil || !bytes.Equal(pg, make([]byte, framework.PageSize)) {
			t.Errorf("zero page %d reads %x...", zp, pg[:8])
		}
		if pg := dst.Page(fz); pg == nil || !bytes.Equal(pg, make([]byte, framework.PageSize)) {
			t.Error("the free page answered with a zero run does not read zero")
		}
		// And a page held since the bulk pass, landed and not mapped yet
		// (resolved locally), which the guest may have written first.
		if dst.Page(land) == nil {
			t.Errorf("landed page %d could not be read", land)
		}
		guestWrote(ctx, t, dst, 8) // the guest faults on its own
		s.push(ctx)
		bad, first = s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if bad != 0 || first != ^uint64(0) {
		t.Errorf("SETTLED %d, %d", bad, first)
	}
	if rep.Mode != ModePostcopy || rep.Handover != HandoverRunning || rep.Status != StatusCompleted {
		t.Errorf("report %+v", rep)
	}
	if rep.PagesZeroLocal == 0 || rep.PagesRequested == 0 || rep.PagesLandLocal == 0 || rep.FaultMaxUS == 0 {
		t.Errorf("fault figures %+v", rep)
	}
	s.mu.Lock()
	if s.requested.Test(zp) {
		t.Errorf("page %d, a hole here, was requested", zp)
	}
	s.free.Runs(func(first, n uint64) bool {
		for p := first; p < first+n; p++ {
			if s.requested.Test(p) && !s.neverZ.Test(p) {
				t.Errorf("free page %d, sent as a zero run, was requested", p)
			}
		}
		return true
	})
	if !s.requested.Test(fz) {
		t.Errorf("page %d was not requested", fz)
	}
	t.Logf("requests %d (pages %d), report: requested %d, zero-local %d, landed-local %d, fault p50 %d us p99 %d us max %d us, postcopy %d ms",
		s.requests, s.requested.Count(), rep.PagesRequested, rep.PagesZeroLocal, rep.PagesLandLocal,
		rep.FaultP50US, rep.FaultP99US, rep.FaultMaxUS, rep.PostcopyMS)
	s.mu.Unlock()
	if c := dst.Counters(); c.Postcopies != 1 || c.TouchErrors != 0 || c.Writes == 0 {
		t.Errorf("destination counters %+v", c)
	}
	checkPages(t, s, dst, savedSeq, ^uint64(0))
	progMu.Lock()
	defer progMu.Unlock()
	seen := false
	for _, p := range prog {
		seen = seen || p.Phase == PhasePostcopy
	}
	if !seen {
		t.Error("no progress in the post-copy phase")
	}
}

// A page that arrives after the switch with other bytes than the
// source hashed is caught when it lands: SETTLED names it, Receive
// returns ErrPostcopyCheck, and the handover completed all the same (the
// VM runs here: Status completed, never failed).
func TestPostcopyLandingCheck(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.VerifyPages = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	const wrong = 10 // never sent, not free
	var bad, first uint64
	failed := runScript(func() {
		s.precopy(ctx, never, stale, true)
		go s.serve(ctx)
		r, off, _ := s.layout.Locate(wrong)
		idx := 0
		for s.layout[idx] != r {
			idx++
		}
		s.src.Memory(idx)[off+100] ^= 0xff // after HASHES: the copy that travels is wrong
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.push(ctx)
		bad, first = s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if bad != 1 || first != wrong {
		t.Errorf("SETTLED %d, %d; want 1, %d", bad, first, wrong)
	}
	if !errors.Is(err, ErrPostcopyCheck) || rep.Handover != HandoverRunning || rep.Status != StatusCompleted {
		t.Fatalf("Receive: %v, handover %v, status %s: want the check's error, the VM running here, completed", err, rep.Handover, rep.Status)
	}
	if dst.State() != vmtest.StateRunning {
		t.Errorf("destination %v", dst.State())
	}
}

// The connection breaks after RUNNING; the source opens it again and
// sends RESUME; MISSING lists exactly the pages not held; post-copy
// completes over the new connection. The destination's progress counts
// the bytes of both sessions: it never goes back at the reconnect.
func TestPostcopyRecvReconnect(t *testing.T) {
	withStatsInterval(t, 5*time.Millisecond)
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	var mu sync.Mutex
	var wire []uint64 // BytesWire of each post-copy progress report, then done's
	opt.Progress = func(p Progress) {
		if p.Phase == PhasePostcopy || p.Phase == PhaseDone {
			mu.Lock()
			wire = append(wire, p.BytesWire)
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var savedSeq uint64
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		savedSeq = s.src.Seq()
		cut := s.serving(ctx)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		// Push part of what is owed, let the guest fault a while, then
		// break the connection with nothing in the middle of a send.
		for p := uint64(0); p < s.pages/3; p += 16 {
			s.sendMu.Lock()
			got := s.take(p, 16, false)
			must(t, s.tr.SendPages(ctx, s.runs(got, s.neverZ.Test)))
			s.sendMu.Unlock()
		}
		time.Sleep(30 * time.Millisecond) // not a synchronisation: the guest faults meanwhile
		cut()
		time.Sleep(50 * time.Millisecond) // not a synchronisation: the guest runs on what it holds
		s.resumeAndSettle(ctx)            // MISSING: exactly the pages never sent
	})
	checkResumed(t, s, dst, savedSeq, failed, wait)
	mu.Lock()
	defer mu.Unlock()
	if len(wire) < 2 || slices.Max(wire[:len(wire)-1]) == 0 {
		t.Fatalf("post-copy progress bytes on the wire: %v", wire)
	}
	for i := 1; i < len(wire); i++ {
		if wire[i] < wire[i-1] {
			t.Fatalf("progress bytes on the wire went back from %d to %d (report %d of %d)", wire[i-1], wire[i], i, len(wire))
		}
	}
}

func bitmapDiff(got, want *bitmap.Bitmap) string {
	var b strings.Builder
	n := 0
	for p := range got.Len() {
		if got.Test(p) != want.Test(p) {
			if n++; n <= 8 {
				fmt.Fprintf(&b, "page %d: listed %v; ", p, got.Test(p))
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d pages: %s", n, b.String())
}

// uffdOpen counts this process's open userfaultfd descriptors.
func uffdOpen() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(l, "userfaultfd") {
			n++
		}
	}
	return n
}

// The source goes away after RUNNING and never comes back: after
// ReconnectTimeout the destination halts the VM, and only then closes
// the userfaultfd; ErrPostcopyBroken, never ABORT.
func TestPostcopyRecvReconnectTimeout(t *testing.T) {
	before := uffdOpen()
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4,
		OnHalt: func() string { return fmt.Sprint(uffdOpen()) }})
	opt.ReconnectTimeout = 300 * time.Millisecond
	var mu sync.Mutex
	var longest time.Duration // the longest Reconnecting reported
	opt.Progress = func(p Progress) {
		mu.Lock()
		longest = max(longest, p.Reconnecting)
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var broke time.Time // before the break, so before the destination saw it
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		time.Sleep(20 * time.Millisecond)
		broke = time.Now()
		s.tr.Close()
	})
	start := time.Now()
	rep, err := wait()
	ended := time.Now()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !errors.Is(err, ErrPostcopyBroken) || rep.Status != StatusPostcopyBroken || rep.Handover != HandoverPostcopyBroken {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	if d := time.Since(start); d > 10*time.Second { // 300 ms, with room for a loaded machine; ctx ends at 30 s
		t.Errorf("gave up after %v", d)
	}
	mu.Lock()
	// Reported at once and every statsInterval while waiting, counted
	// from the break: never longer than the break had lasted when
	// Receive returned.
	if longest <= 0 || longest > ended.Sub(broke) {
		t.Errorf("progress said reconnecting for at most %v; the break lasted %v when Receive returned", longest, ended.Sub(broke))
	}
	mu.Unlock()
	notes := dst.HaltNotes()
	if dst.State() != vmtest.StateHalted || len(notes) != 1 || notes[0] != fmt.Sprint(before+1) {
		t.Errorf("destination %v, userfaultfds open at Halt %q (before: %d)", dst.State(), notes, before)
	}
	if n := uffdOpen(); n != before {
		t.Errorf("%d userfaultfds open after Receive, %d before", n, before)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to the test at Info and above.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// helloReady opens s's transport, sends HELLO with flags and returns
// READY's flags and text; then it aborts.
func helloReady(t *testing.T, s *script, flags uint32) (uint32, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, s.tr.Open(ctx, s.req))
	defer s.tr.Close()
	must(t, s.tr.SendMessage(ctx, transport.Message{Kind: msgHello, Payload: encodeHello(s.layout, flags, s.tag)}))
	m, err := s.tr.RecvMessage(ctx)
	must(t, err)
	if m.Kind != msgReady {
		t.Fatalf("%s instead of READY: %q", msgName(m.Kind), m.Payload)
	}
	got, why, err := decodeReady(m.Payload)
	must(t, err)
	must(t, s.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: []byte("test done")}))
	return got, why
}

// plainTarget hides a VM's post-copy methods.
type plainTarget struct{ framework.Target }

// READY says whether post-copy can be served: not for a Target that is
// not a PostcopyTarget, yes for a vmtest VM with userfaultfd; without
// the HELLO flag it says nothing.
func TestPostcopyReady(t *testing.T) {
	for _, c := range []struct {
		name  string
		plain bool
		hello uint32
		flags uint32
		why   string
	}{
		{"not a PostcopyTarget", true, helloMaySwitch, 0, "not a framework.PostcopyTarget"},
		{"ready", false, helloMaySwitch, readyPostcopy, ""},
		{"not asked", false, 0, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
			var target framework.Target = dst
			if c.plain {
				target = plainTarget{dst}
			}
			wait := receiveAsync(context.Background(), target, rcv, opt)
			flags, why := helloReady(t, s, c.hello)
			if flags != c.flags || !strings.Contains(why, c.why) || (c.why == "" && why != "") {
				t.Errorf("READY %#x %q, want %#x %q", flags, why, c.flags, c.why)
			}
			if _, err := wait(); err == nil || !strings.Contains(err.Error(), "source aborted") {
				t.Errorf("Receive: %v", err)
			}
		})
	}
}

// TestPostcopyReadyNobody: as user nobody (no userfaultfd allowed),
// READY says post-copy cannot be served, and why.
func TestPostcopyReadyNobody(t *testing.T) {
	if os.Getenv("FERRY_PC_CHILD") == "1" {
		s, dst, rcv, opt := pcSetupNoUffd(t)
		wait := receiveAsync(context.Background(), dst, rcv, opt)
		flags, why := helloReady(t, s, helloMaySwitch)
		wait()
		fmt.Printf("flags=%#x\nwhy=%s\n", flags, why)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to start a child as nobody")
	}
	if b, _ := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd"); strings.TrimSpace(string(b)) != "0" {
		t.Skip("SKIPPED: vm.unprivileged_userfaultfd is not 0, nobody may use userfaultfd")
	}
	dir, err := os.MkdirTemp("", "pc-ready")
	must(t, err)
	defer os.RemoveAll(dir)
	self, err := os.ReadFile(os.Args[0])
	must(t, err)
	bin := dir + "/engine.test"
	must(t, os.WriteFile(bin, self, 0o755))
	must(t, os.Chmod(dir, 0o755))
	cmd := exec.Command(bin, "-test.run=^TestPostcopyReadyNobody$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FERRY_PC_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"flags=0x0", "why=", "vm.unprivileged_userfaultfd", "--- PASS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("as nobody:\n%s", out)
}

// pcSetupNoUffd is pcSetup without the userfaultfd check.
func pcSetupNoUffd(t *testing.T) (*script, *vmtest.VM, *loopback.Transport, Options) {
	src, err := vmtest.New(vmtest.Options{Regions: pcRegions})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dst, err := vmtest.New(vmtest.Options{Regions: pcRegions, Incoming: true})
	must(t, err)
	t.Cleanup(func() { dst.Close() })
	scr, rcv := loopback.NewPipe()
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	return newScript(t, src, scr, sc), dst, rcv, Options{Credentials: dc}
}

// A source that may switch but does not: pre-copy as before, the landed
// lane discards its runs and ends with the migration.
func TestPostcopyReadyButPrecopy(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	failed := runScript(func() {
		must(t, s.tr.Open(ctx, s.req))
		s.send(ctx, msgHello, encodeHello(s.layout, helloMaySwitch, s.tag))
		if flags, _, _ := decodeReady(s.recv(ctx, msgReady)); flags != readyPostcopy {
			t.Errorf("READY %#x", flags)
		}
		all := bitmap.New(s.pages)
		all.SetAll()
		must(t, s.src.Pause(ctx))
		must(t, s.tr.SendPages(ctx, s.runs(all, s.free.Test)))
		must(t, s.tr.Flush(ctx))
		state, err := s.src.SaveState(ctx)
		must(t, err)
		s.send(ctx, msgState, encodeStateChunk(uint64(len(state)), 0, state))
		s.recv(ctx, msgLoaded)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
	})
	rep, err := wait()
	if failed || err != nil || rep.Mode != ModePrecopy || rep.Handover != HandoverRunning || rep.PagesRequested != 0 {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	s.tr.Close()
	must(t, dst.Pause(ctx))
	checkPages(t, s, dst, 0, ^uint64(0))
	if n := uffdOpen(); n != 0 {
		t.Errorf("%d userfaultfds open", n)
	}
}

// Requests queue without blocking and leave sorted, merged, in chunks.
func TestRequesterMerges(t *testing.T) {
	q := newRequester()
	for _, r := range [][2]uint64{{9, 1}, {3, 2}, {5, 1}, {4, 3}, {20, 1}} {
		must(t, q.Request(r[0], r[1]))
	}
	if got, want := q.take(), []pageRun{{3, 4}, {9, 1}, {20, 1}}; !slices.Equal(got, want) {
		t.Fatalf("take %v, want %v", got, want)
	}
	must(t, q.Request(1, 1))
	q.clear()
	if got := q.take(); len(got) != 0 {
		t.Fatalf("after clear: %v", got)
	}
}

func TestCheckResume(t *testing.T) {
	tag := migrationTag{7, 15: 7}
	must(t, checkResume(testResume(77, tag), 77, tag))
	for _, b := range [][]byte{testResume(76, tag), testResume(77, tag)[:27], append(testResume(77, tag), 0)} {
		if err := checkResume(b, 77, tag); !errors.Is(err, errMalformed) {
			t.Errorf("%x: %v", b, err)
		}
	}
	if err := checkResume(testResume(77, migrationTag{8}), 77, tag); !errors.Is(err, errForeignResume) {
		t.Errorf("a RESUME with another migration's tag: %v", err)
	}
	old := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 2), 77)
	if err := checkResume(old, 77, tag); err == nil || !strings.Contains(err.Error(), "protocol 2") {
		t.Errorf("a protocol-2 RESUME: %v", err)
	}
}

// A source that breaks the exactly-once rule (a page the guest already
// owns arrives again) ends post-copy for good: the fault service stops,
// the VM halts before the userfaultfd closes; never ABORT, but BROKEN
// with the reason, on the session that still works, which stays open
// until the source answered it.
func TestPostcopySecondCopyBreaks(t *testing.T) {
	secondCopyBreaks(t, false)
}

// The same second copy, with the connection cut right behind it: the
// source never answers BROKEN on that session (it may not have read it),
// so the destination listens for the source's reconnect and answers
// RESUME with BROKEN instead of MISSING; the source learns it at its
// first reconnect, not after reconnect_timeout.
func TestPostcopyBrokenToldOnResume(t *testing.T) {
	secondCopyBreaks(t, true)
}

// secondCopyBreaks sends a second copy of a placed page; with cut, the
// script closes the session right behind it and reconnects.
func secondCopyBreaks(t *testing.T, cut bool) {
	before := uffdOpen()
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{OnHalt: func() string { return fmt.Sprint(uffdOpen()) }})
	opt.ReconnectTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	const p = 10 // never sent, not free
	failed := runScript(func() {
		s.precopyThenCommit(ctx, never, stale)
		s.recv(ctx, msgRunning)
		if dst.Page(p) == nil { // requested, answered, placed
			t.Error("Page failed")
		}
		must(t, s.tr.SendPages(ctx, []transport.PageRun{{First: p, Count: 1, Kind: transport.KindData}}))
		if cut {
			must(t, s.tr.Flush(ctx))
			s.tr.Close()
			time.Sleep(100 * time.Millisecond) // as the source's backoff does
			must(t, s.tr.Open(ctx, s.req))
			s.send(ctx, msgResume, testResume(s.pages, s.tag))
		}
		if why := string(s.recv(ctx, msgBroken)); !strings.Contains(why, "page 10") {
			t.Errorf("BROKEN says %q", why)
		}
		if d := dst.State(); d != vmtest.StateHalted {
			t.Errorf("destination %v when it said BROKEN", d)
		}
		s.send(ctx, msgBroken, nil) // as the source answers
	})
	start := time.Now()
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second { // at once; waiting for reconnect_timeout (a minute) lasts until ctx ends at 30 s
		t.Errorf("Receive returned %v after the source answered", d)
	}
	if !errors.Is(err, ErrPostcopyBroken) || !errors.Is(err, postcopy.ErrTransition) || rep.Handover != HandoverPostcopyBroken {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	if notes := dst.HaltNotes(); dst.State() != vmtest.StateHalted || len(notes) != 1 || notes[0] != fmt.Sprint(before+1) {
		t.Errorf("destination %v, userfaultfds open at Halt %q (before: %d)", dst.State(), notes, before)
	}
}

// landedOnly is a transport whose Landed returns batches from a channel.
type landedOnly struct {
	transport.Transport
	c chan []transport.PageRun
}

func (l landedOnly) Landed(ctx context.Context) ([]transport.PageRun, error) {
	select {
	case b, ok := <-l.c:
		if !ok {
			return nil, transport.ErrClosed
		}
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// The landed lane's drain at POSTCOPY: it discards the runs of the
// pages the source queued before POSTCOPY, however late the lane reports
// them (a report that a 10 ms quiet wait once took for post-copy's
// comes here 50 ms late), keeps every later run for the service, and
// fails when the lane reports more than the source queued or ends short.
func TestLandedDrain(t *testing.T) {
	tr := landedOnly{c: make(chan []transport.PageRun)}
	f := newLandedFeed(64, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.run(ctx, tr)
	// Nothing landed yet of the 3 pages queued: the drain waits.
	short, stop := context.WithTimeout(ctx, 30*time.Millisecond)
	var buf []transport.PageRun
	if err := f.drain(short, 3, &buf); err == nil || !strings.Contains(err.Error(), "reported 0 of the 3 pages") {
		t.Fatalf("drain with nothing landed: %v", err)
	}
	stop()
	tr.c <- []transport.PageRun{{First: 1, Count: 2, Kind: transport.KindData}} // pre-copy: discarded
	drained := make(chan error, 1)
	go func() { drained <- f.drain(ctx, 3, &buf) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-drained:
		t.Fatalf("drain returned with a queued page unreported: %v", err)
	default:
	}
	tr.c <- []transport.PageRun{{First: 7, Count: 1, Kind: transport.KindData}} // the late report: discarded
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	tr.c <- []transport.PageRun{{First: 9, Count: 1, Kind: transport.KindZero}} // post-copy's
	tr.c <- nil                                                                 // taken once the batch above was handed on
	f.mu.Lock()
	if len(buf) != 1 || buf[0].First != 9 {
		t.Errorf("kept %v", buf)
	}
	f.mu.Unlock()
	close(tr.c)
	<-f.done
	if !errors.Is(f.err, transport.ErrClosed) || f.fatal {
		t.Fatalf("lane ended with %v (fatal %v)", f.err, f.fatal)
	}

	// More reported than queued: a stale write could pass for post-copy's.
	tr = landedOnly{c: make(chan []transport.PageRun)}
	f = newLandedFeed(64, nil)
	go f.run(ctx, tr)
	tr.c <- []transport.PageRun{{First: 1, Count: 5, Kind: transport.KindData}}
	if err := f.drain(ctx, 4, &buf); err == nil || !strings.Contains(err.Error(), "reported 5 pages landed before post-copy, the source queued 4") {
		t.Fatalf("drain past the count: %v", err)
	}
	// The session ends short of the count.
	close(tr.c)
	<-f.done
	if err := f.drain(ctx, 6, &buf); err == nil || !strings.Contains(err.Error(), "at 5 of the 6") {
		t.Fatalf("drain of an ended lane: %v", err)
	}
}

// resumeScript opens the script's transport again after a break, sends
// RESUME and returns the pages MISSING lists.
func (s *script) resume(ctx context.Context) *bitmap.Bitmap {
	must(s.t, s.tr.Open(ctx, s.req))
	s.send(ctx, msgResume, testResume(s.pages, s.tag))
	got := bitmap.New(s.pages)
	var after uint64
	for last := false; !last; {
		var runs []pageRun
		var err error
		runs, last, after, err = decodeRuns(nil, s.recv(ctx, msgMissing), s.pages, after)
		must(s.t, err)
		for _, r := range runs {
			got.SetRange(r.First, r.Count)
		}
	}
	return got
}

// The connection breaks right after COMMIT, before the source read
// RUNNING: the destination runs the VM anyway and waits for the source;
// the source, which wrote COMMIT, resumes post-copy with RESUME.
func TestPostcopyBreakAtCommit(t *testing.T) {
	breakAtCommit(t, nil)
}

// The same break, with the destination's landed lane seeing the end of
// the session before it handles COMMIT (the wrapper holds COMMIT back
// until then; in TestPostcopyBreakAtCommit it happens in about one run
// of fifty): COMMIT arrived and the fault service works, so the VM runs
// here and post-copy resumes over a new connection. It once refused to
// run and quit, leaving the source to reconnect to nobody.
func TestPostcopyBreakAtCommitLandedFirst(t *testing.T) {
	held := &commitAfterLanded{ended: make(chan struct{})}
	breakAtCommit(t, func(tr transport.Transport) transport.Transport {
		held.Transport = tr
		return held
	})
	if !held.waited.Load() {
		t.Fatal("COMMIT was not held until the landed lane ended: the test did not test the race")
	}
}

// breakAtCommit breaks the connection right after the source wrote
// COMMIT, the destination's transport wrapped by wrap (if not nil), and
// checks that post-copy resumes and completes with the VM running there.
func breakAtCommit(t *testing.T, wrap func(transport.Transport) transport.Transport) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tr transport.Transport = rcv
	if wrap != nil {
		tr = wrap(rcv)
	}
	wait := receiveAsync(ctx, dst, tr, opt)
	never, stale := pcPages(s)
	var savedSeq uint64
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		savedSeq = s.src.Seq()
		s.send(ctx, msgCommit, nil)
		s.tr.Close()
		got := s.resume(ctx)
		want := bitmap.New(s.pages)
		want.Or(s.absent)
		if diff := bitmapDiff(got, want); diff != "" {
			t.Errorf("MISSING differs from the absent pages: %s", diff)
		}
		go s.serve(ctx)
		s.push(ctx)
		s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err != nil || rep.Reconnects != 1 || rep.Handover != HandoverRunning || dst.Counters().Resumes != 1 {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	checkPages(t, s, dst, savedSeq, ^uint64(0))
}

// commitAfterLanded delivers COMMIT only once a Landed call returned the
// session's end (or after 5 s), and says whether it waited for that.
type commitAfterLanded struct {
	transport.Transport
	once   sync.Once
	ended  chan struct{}
	waited atomic.Bool
}

func (c *commitAfterLanded) Landed(ctx context.Context) ([]transport.PageRun, error) {
	runs, err := c.Transport.Landed(ctx)
	if err != nil && ctx.Err() == nil {
		c.once.Do(func() { close(c.ended) })
	}
	return runs, err
}

func (c *commitAfterLanded) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := c.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgCommit {
		select {
		case <-c.ended:
			c.waited.Store(true)
		case <-time.After(5 * time.Second):
		}
	}
	return m, err
}

// The connection breaks after LOADED and before COMMIT arrived (the
// source may have written it): the destination, which knows it never
// got COMMIT, waits for the source's RESUME and answers ABORT, so the
// source resumes the VM at once instead of both sides waiting for a
// resolve. The VM never runs here. The source answers ABORT in kind,
// and the destination, told it was heard, ends at once rather than
// listening for another RESUME (tellAborted;
// TestPostcopyAbortAfterResumeLost).
func TestPostcopyBreakBeforeCommit(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var abort string
	var answered time.Time
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close() // COMMIT lost with the connection
		time.Sleep(50 * time.Millisecond)
		must(t, s.tr.Open(ctx, s.req))
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		abort = string(s.recv(ctx, msgAbort))
		s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
		answered = time.Now()
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if d := time.Since(answered); d > 5*time.Second {
		t.Errorf("the destination ended %v after the source answered its ABORT; want at once", d.Round(time.Millisecond))
	}
	if err == nil || rep.Handover != HandoverFailed || rep.Status != StatusFailed || dst.Counters().Resumes != 0 {
		t.Fatalf("Receive: %v, report %+v, resumes %d", err, rep, dst.Counters().Resumes)
	}
	if why, answers := resumeAbort([]byte(abort), s.tag); !answers || !strings.Contains(string(why), "never received COMMIT") {
		t.Errorf("ABORT said %q; want the answer to the RESUME (its tag first) saying it never received COMMIT", abort)
	}
}

// Nobody reconnects after a break before COMMIT: after ReconnectTimeout
// the handover is unknown, as in pre-copy, and the VM never ran here.
func TestPostcopyBreakBeforeCommitNobody(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.ReconnectTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close()
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !errors.Is(err, ErrHandoverUnknown) || rep.Handover != HandoverUnknown || dst.Counters().Resumes != 0 {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
}

// Before COMMIT, a failing fault service ends the migration at once
// (the VM never ran here): the destination fails and tells the source.
func TestPostcopyRecvFailsBeforeCommit(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	const p = 10 // never sent: a device reads it during the load
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		go s.serve(ctx)
		// The destination's VMM touches the page before COMMIT (as a
		// LoadState might): requested, answered, placed.
		must(t, uffd.Populate(sliceAddr(dst.GuestMemory(0)[p*framework.PageSize:]), framework.PageSize, false))
		must(t, s.tr.SendPages(ctx, []transport.PageRun{{First: p, Count: 1, Kind: transport.KindData}}))
		m, err := s.tr.RecvMessage(ctx)
		if err != nil || m.Kind != msgAbort {
			t.Errorf("got %s %q, %v; want ABORT", msgName(m.Kind), m.Payload, err)
		}
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !errors.Is(err, errPostcopySetup) || !errors.Is(err, postcopy.ErrTransition) || rep.Handover != HandoverFailed {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	if dst.Counters().Resumes != 0 || uffdOpen() != 0 {
		t.Errorf("resumed %d, userfaultfds open %d", dst.Counters().Resumes, uffdOpen())
	}
}

// A fresh destination (a VMM started again at the address of one that
// died in post-copy, with the job's credentials) whose first message is
// a source's RESUME must not answer ABORT: the source would take it for
// "COMMIT never arrived here" and resume a copy the dead destination may
// have run past. It answers nothing; that source stays paused. Nor does
// the destination fail: it took nothing from that source (its session
// wrote no page), so it waits on for its own, which then migrates
// (without an ID its first session opens for any source; this is the
// engine's own check).
func TestForeignResumeNotAborted(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	var answered string
	failed := runScript(func() {
		must(t, s.tr.Open(ctx, s.req))
		s.send(ctx, msgResume, testResume(s.pages, newMigrationTag()))
		answered = noAnswer(ctx, s, time.Second)
		s.tr.Close()

		s.precopy(ctx, nil, nil, false) // its own source: opens, HELLO, ...
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if answered != "" {
		t.Errorf("the fresh destination answered the RESUME with %.80q; want no answer", answered)
	}
	if err != nil || rep.Status != StatusCompleted || dst.Counters().Resumes != 1 {
		t.Errorf("Receive: %v, status %s, resumes %d; want its own source's migration completed", err, rep.Status, dst.Counters().Resumes)
	}
}

// runningLost fails the destination's RUNNING, as a connection that
// breaks just as it is written.
type runningLost struct{ transport.Transport }

func (r runningLost) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgRunning {
		r.Transport.Close()
		return transport.ErrClosed
	}
	return r.Transport.SendMessage(ctx, m)
}

// Every page is on the destination at COMMIT (none absent; the same
// holds when the last pages landed just before a break), RUNNING is lost
// with the connection and no source comes back within reconnect_timeout
// (a partition). The destination holds the whole guest: it keeps running
// it (completed) instead of halting it as a broken post-copy.
func TestPostcopyCompleteWithoutSource(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	opt.ReconnectTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, runningLost{rcv}, opt)
	failed := runScript(func() {
		s.precopy(ctx, nil, nil, false) // nothing absent
		s.send(ctx, msgCommit, nil)
		// the source is cut off from here on
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if dst.Counters().Resumes != 1 {
		t.Fatalf("the VM never ran here: Receive %v", err)
	}
	if err != nil || rep.Status != StatusCompleted || rep.Handover != HandoverRunning || dst.State() != vmtest.StateRunning {
		t.Errorf("the destination held every page and ran the guest, but ended %s (%s) with the VM %v: %v",
			rep.Status, rep.Handover, dst.State(), err)
	}
}

// dropSettled is the source's transport with the first SETTLED lost on
// the wire: the destination wrote it, then the connection died before it
// arrived.
type dropSettled struct {
	transport.Transport
	mu      sync.Mutex
	dropped bool
}

func (d *dropSettled) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := d.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgSettled {
		d.mu.Lock()
		first := !d.dropped
		d.dropped = true
		d.mu.Unlock()
		if first {
			d.Transport.Close() // the connection dies with SETTLED in it
			return transport.Message{}, transport.ErrClosed
		}
	}
	return m, err
}

// Both engines in post-copy; SETTLED is written by the destination but
// lost with the connection. The destination, unanswered, listens for
// the source's reconnect and answers its RESUME with SETTLED: both end
// completed, at once rather than after the source's reconnect_timeout,
// and the source never reports a guest that runs as lost.
func TestPostcopySettledLost(t *testing.T) {
	start := time.Now()
	tr := &dropSettled{}
	r, dst := bothEngines(t, func(str transport.Transport) transport.Transport { tr.Transport = str; return tr },
		func(sopt, dopt *Options) {})
	if !tr.dropped {
		t.Fatalf("SETTLED never came: send %v (%s), receive %v (%s)", r.serr, r.srep.Status, r.derr, r.drep.Status)
	}
	if r.serr != nil || r.srep.Status != StatusCompleted || r.srep.Handover != HandoverCompleted || r.srep.Reconnects != 1 {
		t.Errorf("source: %s (%s), %d reconnects: %v", r.srep.Status, r.srep.Handover, r.srep.Reconnects, r.serr)
	}
	if r.derr != nil || r.drep.Status != StatusCompleted || dst.State() != vmtest.StateRunning {
		t.Errorf("destination: %s (%s), VM %v: %v", r.drep.Status, r.drep.Handover, dst.State(), r.derr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v: the source waited for its reconnect_timeout", d)
	}
}

// loseCommitAndAbort is the source's transport in post-copy with COMMIT
// lost on the wire (the connection dies as it goes out) and then the
// destination's first ABORT, its answer to the source's RESUME (the
// connection dies again before it arrives).
type loseCommitAndAbort struct {
	transport.Transport
	lose                   int // ABORTs lost so (0: the first only)
	mu                     sync.Mutex
	commitLost, abortsSeen int
}

func (l *loseCommitAndAbort) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgCommit {
		l.mu.Lock()
		l.commitLost++
		l.mu.Unlock()
		l.Transport.Close() // written, never delivered
		return nil
	}
	return l.Transport.SendMessage(ctx, m)
}

func (l *loseCommitAndAbort) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgAbort {
		l.mu.Lock()
		l.abortsSeen++
		lost := l.abortsSeen <= max(l.lose, 1)
		l.mu.Unlock()
		if lost {
			l.Transport.Close() // the connection dies with ABORT in it
			return transport.Message{}, transport.ErrClosed
		}
	}
	return m, err
}

// Both engines in post-copy; COMMIT is lost, and so is the
// destination's ABORT that answers the source's RESUME (it never got
// COMMIT). The destination, unanswered, listens for the source's next
// RESUME and answers it with ABORT again, as it does with SETTLED and
// BROKEN: the source resumes the VM (failed) at once, and the
// destination never ran it. Before, the destination quit after the
// first ABORT, and the source reconnected to nobody for its
// reconnect_timeout and ended handover-unknown.
func TestPostcopyAbortAfterResumeLost(t *testing.T) {
	const reconnect = 20 * time.Second
	start := time.Now()
	tr := &loseCommitAndAbort{}
	r, dst := bothEngines(t, func(str transport.Transport) transport.Transport { tr.Transport = str; return tr },
		func(sopt, dopt *Options) { sopt.ReconnectTimeout = reconnect })
	took := time.Since(start)
	if tr.commitLost != 1 || tr.abortsSeen < 1 {
		t.Fatalf("COMMIT lost %d times, ABORTs seen %d: the test did not test it; send %v (%s), receive %v (%s)",
			tr.commitLost, tr.abortsSeen, r.serr, r.srep.Status, r.derr, r.drep.Status)
	}
	abortHeard(t, r, dst, took, reconnect)
}

// abortHeard checks the end of a post-copy whose COMMIT was lost: the
// source, told ABORT, resumed its VM (failed) within half of its
// reconnect_timeout (it took took), and the destination failed, never
// having run it.
func abortHeard(t *testing.T, r pcResult, dst *vmtest.VM, took, reconnect time.Duration) {
	t.Helper()
	if r.srep.Status != StatusFailed || r.srep.Handover != HandoverFailed {
		t.Errorf("source: %s (%s) after %v: %v; want failed: told ABORT, it resumed the VM", r.srep.Status, r.srep.Handover,
			took.Round(time.Millisecond), r.serr)
	}
	if r.drep.Status != StatusFailed || r.drep.Handover != HandoverFailed || dst.Counters().Resumes != 0 {
		t.Errorf("destination: %s (%s), %d resumes: %v; want failed, never run", r.drep.Status, r.drep.Handover,
			dst.Counters().Resumes, r.derr)
	}
	if took >= reconnect/2 {
		t.Errorf("took %v: the source waited for its reconnect_timeout (%v)", took.Round(time.Millisecond), reconnect)
	}
}

// bothEngines runs Send and Receive over a loopback pipe, the source's
// end wrapped by wrap, between two fake VMs in post-copy "always" (the
// source writing every millisecond), each side with reconnect_timeout 1
// min unless tune changes the options.
func bothEngines(t *testing.T, wrap func(transport.Transport) transport.Transport, tune func(sopt, dopt *Options)) (pcResult, *vmtest.VM) {
	return bothEnginesOn(t, func(str transport.Transport, _ *vmtest.VM) transport.Transport { return wrap(str) }, tune)
}

// bothEnginesOn is bothEngines whose wrap also gets the source's VM.
func bothEnginesOn(t *testing.T, wrap func(transport.Transport, *vmtest.VM) transport.Transport, tune func(sopt, dopt *Options)) (pcResult, *vmtest.VM) {
	return bothEnginesWrapped(t, wrap, func(dtr transport.Transport) transport.Transport { return dtr }, tune)
}

// bothEnginesWrapped is bothEnginesOn with the destination's end wrapped
// by dwrap too.
func bothEnginesWrapped(t *testing.T, wrap func(transport.Transport, *vmtest.VM) transport.Transport,
	dwrap func(transport.Transport) transport.Transport, tune func(sopt, dopt *Options)) (pcResult, *vmtest.VM) {
	return bothEnginesWrappedOn(t, wrap, func(dtr transport.Transport, _ *vmtest.VM) transport.Transport { return dwrap(dtr) }, tune)
}

// bothEnginesWrappedOn is bothEnginesWrapped whose dwrap also gets the
// destination's VM.
func bothEnginesWrappedOn(t *testing.T, wrap func(transport.Transport, *vmtest.VM) transport.Transport,
	dwrap func(transport.Transport, *vmtest.VM) transport.Transport, tune func(sopt, dopt *Options)) (pcResult, *vmtest.VM) {
	return bothEnginesInto(t, vmtest.Options{}, wrap, dwrap, tune)
}

// bothEnginesInto is bothEnginesWrappedOn into a destination VM made
// with dvm (its Regions and Incoming set here).
func bothEnginesInto(t *testing.T, dvm vmtest.Options, wrap func(transport.Transport, *vmtest.VM) transport.Transport,
	dwrap func(transport.Transport, *vmtest.VM) transport.Transport, tune func(sopt, dopt *Options)) (pcResult, *vmtest.VM) {
	needUffd(t)
	src, err := vmtest.New(vmtest.Options{Regions: pcRegions, Free: pcFree, WriteEvery: time.Millisecond, WriteBatch: 4})
	must(t, err)
	t.Cleanup(func() { src.Close() })
	dvm.Regions, dvm.Incoming = pcRegions, true
	dst, err := vmtest.New(dvm)
	must(t, err)
	t.Cleanup(func() { dst.Close() })
	str, dtr := loopback.NewPipe()
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sopt := Options{Credentials: sc, Postcopy: PostcopyAlways, SwitchoverTimeout: 10 * time.Second,
		ReconnectTimeout: time.Minute, Log: testLogger(t)}
	dopt := Options{Credentials: dc, Transport: schema.Config{"zero_punch": true}, SwitchoverTimeout: 10 * time.Second,
		ReconnectTimeout: time.Minute, Log: testLogger(t)}
	tune(&sopt, &dopt)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, dwrap(dtr, dst), dopt)
	var r pcResult
	r.srep, r.serr = Send(ctx, src, wrap(str, src), sopt)
	r.drep, r.derr = wait()
	return r, dst
}

// pcResult is what both sides of bothEngines returned.
type pcResult struct {
	srep, drep Report
	serr, derr error
}

// slowArm is the destination's loopback transport whose first Landed
// call of every session after the first begins late, as a Landed call
// over the urgent channel reaches the plugin only once its credit frame
// crossed the socket (or as the landed lane's goroutine is not scheduled
// yet).
type slowArm struct {
	*loopback.Transport
	mu      sync.Mutex
	opens   int
	pending bool // the first Landed call of this session has not begun
	delay   time.Duration
}

func (s *slowArm) Open(ctx context.Context, req transport.OpenRequest) error {
	s.mu.Lock()
	s.opens++
	s.pending = s.opens > 1
	s.mu.Unlock()
	return s.Transport.Open(ctx, req)
}

func (s *slowArm) Landed(ctx context.Context) ([]transport.PageRun, error) {
	s.mu.Lock()
	late := s.pending
	s.pending = false
	s.mu.Unlock()
	if late {
		time.Sleep(s.delay)
	}
	return s.Transport.Landed(ctx)
}

// After a reconnect the source pushes its owed pages as soon as MISSING
// arrives. A destination whose new landed lane asks its transport only
// after those pages landed must still learn of each (the transport
// records from the session's start): otherwise they stay absent here,
// the source never sends them again, and post-copy never settles.
// Before that rule, 200 of ~210 pages were lost this way.
func TestPostcopyLaneArmedLate(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	wrapped := &slowArm{Transport: rcv, delay: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, wrapped, opt)
	never, stale := pcPages(s)
	var savedSeq uint64
	settled := false
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		savedSeq = s.src.Seq()
		sctx, stop := context.WithCancel(ctx)
		go s.serve(sctx)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		time.Sleep(30 * time.Millisecond)
		s.sendMu.Lock() // break the connection with nothing in flight
		s.tr.Close()
		stop()
		s.sendMu.Unlock()
		s.resume(ctx)
		go s.serve(ctx)
		s.push(ctx) // at once, as pcSend.reopen and push do
		must(t, s.tr.Flush(ctx))
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		m, err := s.tr.RecvMessage(wctx)
		settled = err == nil && m.Kind == msgSettled
		if settled {
			s.send(ctx, msgSettled, nil)
		}
		s.tr.Close()
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !settled {
		t.Fatalf("no SETTLED after every owed page was pushed and flushed once (Receive: %v, %+v)", err, rep)
	}
	checkPages(t, s, dst, savedSeq, ^uint64(0))
}

// stallAtSettled is the source's transport whose session stalls as the
// destination's SETTLED arrives, the way a transport plugin process that
// was stopped (SIGSTOP) or deadlocked does: the connection stays up and
// nothing is delivered any more. A session opened later works.
type stallAtSettled struct {
	transport.Transport
	mu      sync.Mutex
	stalled bool
	hit     bool
}

func (s *stallAtSettled) Open(ctx context.Context, req transport.OpenRequest) error {
	s.mu.Lock()
	s.stalled = false
	s.mu.Unlock()
	return s.Transport.Open(ctx, req)
}

func (s *stallAtSettled) RecvMessage(ctx context.Context) (transport.Message, error) {
	s.mu.Lock()
	stalled := s.stalled
	s.mu.Unlock()
	if !stalled {
		m, err := s.Transport.RecvMessage(ctx)
		if err != nil || m.Kind != msgSettled {
			return m, err
		}
		s.mu.Lock()
		first := !s.hit
		s.hit, s.stalled = true, first
		s.mu.Unlock()
		if !first {
			return m, err
		}
	}
	<-ctx.Done() // stalled: nothing is delivered, nothing ends
	return transport.Message{}, ctx.Err()
}

// The source's session stalls as SETTLED arrives. Its stall watch notices
// after StallTimeout and reconnects to be told SETTLED again: the
// destination must still listen for it then, whatever brokenLinger is.
// (Found by audit: the destination listened brokenLinger, 15 s, and a
// source whose stall watch took 25 s ended postcopy-broken, though every
// page arrived and the destination completed.)
func TestPostcopySettledLingerCoversStall(t *testing.T) {
	old := brokenLinger
	brokenLinger = time.Second // shorter than the source's stall timeout
	t.Cleanup(func() { brokenLinger = old })
	tr := &stallAtSettled{}
	r, _ := bothEngines(t, func(str transport.Transport) transport.Transport { tr.Transport = str; return tr },
		func(sopt, dopt *Options) {
			sopt.ReconnectTimeout = 15 * time.Second
			sopt.StallTimeout, dopt.StallTimeout = 3*time.Second, 3*time.Second
		})
	if !tr.hit {
		t.Fatalf("SETTLED never came: send %v (%s), receive %v (%s)", r.serr, r.srep.Status, r.derr, r.drep.Status)
	}
	if r.srep.Status != StatusCompleted || r.drep.Status != StatusCompleted {
		t.Errorf("source %s (%v), destination %s (%v): a post-copy that completed is reported %s by the source",
			r.srep.Status, r.serr, r.drep.Status, r.derr, r.srep.Status)
	}
}

// TestPostcopyUnknownReportsMissing: a post-copy destination left
// handover-unknown (the connection broke after LOADED, nobody
// reconnected) says how many pages it still lacks, so that a VMM can
// tell a copy that lacks pages (never to be resumed) from one that holds
// the whole guest because nothing was absent at the switch.
func TestPostcopyUnknownReportsMissing(t *testing.T) {
	for _, absent := range []bool{true, false} {
		s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
		opt.ReconnectTimeout = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		wait := receiveAsync(ctx, dst, rcv, opt)
		var never, stale []uint64
		if absent {
			never, stale = pcPages(s)
		}
		failed := runScript(func() {
			s.precopy(ctx, never, stale, false)
			s.tr.Close()
		})
		rep, err := wait()
		cancel()
		if failed {
			t.Fatalf("absent %v: script failed; Receive: %v", absent, err)
		}
		if !errors.Is(err, ErrHandoverUnknown) || rep.PagesMissing == nil {
			t.Fatalf("absent %v: Receive: %v, pages missing %s", absent, err, missingCount(rep.PagesMissing))
		}
		want := uint64(len(never) + len(stale))
		if got := *rep.PagesMissing; got != want {
			t.Errorf("absent %v: %d pages missing, want %d", absent, got, want)
		}
	}
}
