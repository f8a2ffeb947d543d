package session_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
)

// specs returns the two sides' specs of one loopback migration over a
// socket in dir, with fresh credentials.
func specs(t *testing.T, dir string, log *slog.Logger) (send, recv session.Spec) {
	t.Helper()
	src, dst, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	tr := session.Plugin{Path: plugin(transportName), Config: map[string]any{"socket": filepath.Join(dir, "s")}}
	send = session.Spec{Role: transport.RoleSend, Transport: tr, Log: log, Engine: engine.Options{Credentials: src}}
	recv = session.Spec{Role: transport.RoleReceive, Transport: tr, Log: log, Engine: engine.Options{Credentials: dst}}
	return send, recv
}

// receive opens the destination's session (so its transport listens once
// the engine opens it) and runs Receive on a goroutine, then Close: the
// result comes once its plugin is gone.
func receive(t *testing.T, dst *fakeVM, spec session.Spec, sock string) <-chan result {
	t.Helper()
	s, err := session.Open(context.Background(), dst.RAM(), spec)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan result, 1)
	go func() {
		rep, err := s.Receive(context.Background(), dst)
		s.Close()
		out <- result{rep, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal("the destination never listened")
		}
	}
}

type result struct {
	rep engine.Report
	err error
}

// pair is one loopback migration between two fake VMs over a socket in
// dir: src filled, dst empty, send and recv the two sides' specs, the
// send spec's Hints the providers newPair was given. A test changes the
// specs before it starts the destination (pair.receive) and sends.
type pair struct {
	dir        string
	send, recv session.Spec
	src, dst   *fakeVM
}

func newPair(t *testing.T, hints ...session.Hint) *pair {
	t.Helper()
	p := &pair{dir: t.TempDir(), src: newFakeVM(t), dst: newFakeVM(t)}
	p.send, p.recv = specs(t, p.dir, slog.New(newRecords()))
	p.send.Hints = hints
	p.src.fill()
	return p
}

// receive starts the pair's destination (receive), listening on the
// socket in dir.
func (p *pair) receive(t *testing.T) <-chan result {
	t.Helper()
	return receive(t, p.dst, p.recv, filepath.Join(p.dir, "s"))
}

// provider is the hint block name served by the test plugin bin.
func provider(name, bin string) session.Hint {
	return session.Hint{Name: name, Plugin: session.Plugin{Path: plugin(bin)}}
}

// TestSendReceive: a whole migration through two sessions, the transport
// and the providers in their own processes. The balloon provider calls
// back into the embedder's host and its free pages are skipped; a
// provider the host cannot serve, one that is not there and one whose
// block is wrong cost their hints only, each reported. Afterwards no
// plugin process, file or goroutine is left.
func TestSendReceive(t *testing.T) {
	p := newPair(t)
	src, dst := p.src, p.dst
	lk := startLeakCheck(t)
	host := &balloonHost{free: []hint.GPARange{{GPA: 8 * page, Size: 4 * page}, {GPA: 1<<20 + 2*page, Size: page}}}
	p.send.Hints = []session.Hint{
		{Name: "balloon", Plugin: session.Plugin{Path: plugin("ferry-hint-balloon"), Config: map[string]any{"label": "x"}}, Deadline: 5 * time.Second},
		provider("cmma", "ferry-hint-cmma"),
		{Name: "missing", Plugin: session.Plugin{Path: filepath.Join(p.dir, "no-such-plugin")}},
		{Name: "badblock", Plugin: session.Plugin{Path: plugin("ferry-hint-badblock"), Config: map[string]any{"nope": 1}}},
	}
	p.send.Engine.HintHold = 5 * time.Second // the pass is shorter than the balloon's answer: hold it
	var phases []engine.Progress
	p.send.Progress = func(pr engine.Progress) { phases = append(phases, pr) }

	got := p.receive(t)
	rep, err := session.Send(context.Background(), src, host, p.send)
	if err != nil {
		t.Fatalf("send: %v (%+v)", err, rep)
	}
	r := <-got
	if r.err != nil || r.rep.Status != engine.StatusCompleted {
		t.Fatalf("receive: %v (%+v)", r.err, r.rep)
	}
	checkHints(t, rep, map[string]string{"balloon": "ok", "cmma": "not-supported: ", "missing": "failed: ", "badblock": "failed: "})
	if rep.PagesSkipped != 5 || rep.SkippedBy["balloon"] != 5 {
		t.Errorf("skipped %d pages (%v), want the balloon's 5", rep.PagesSkipped, rep.SkippedBy)
	}
	if hints, done := host.calls(); hints == 0 || done != 1 {
		t.Errorf("host: %d BalloonHint, %d BalloonDone calls; want some and 1", hints, done)
	}
	checkRAM(t, src, dst, []uint64{8, 9, 10, 11, 66})
	if len(phases) == 0 {
		t.Error("Progress was never called")
	}
	if dst.resumed != 1 || string(dst.state) != "fake-state-v1" || !src.paused {
		t.Errorf("after the handover: destination resumed %d times with state %q, source paused %v", dst.resumed, dst.state, src.paused)
	}
	lk.check(t)
}

// TestPluginsCannotDamageRAM: the files a sending session hands its
// plugins are read-only, so a provider that writes, punches or truncates
// guest RAM through them by mistake gets an error and the source's RAM
// stays whole; a receiving session seals the destination's RAM against
// shrinking before its transport gets it.
func TestPluginsCannotDamageRAM(t *testing.T) {
	p := newPair(t, provider("vandal", "ferry-hint-vandal"))
	p.send.Engine.HintHold = 5 * time.Second // the provider has configured before the first pass
	src, dst := p.src, p.dst
	before := bytes.Clone(src.mem)
	got := p.receive(t)
	rep, err := session.Send(context.Background(), src, nil, p.send)
	if err != nil {
		t.Fatalf("send: %v (%+v)", err, rep)
	}
	if r := <-got; r.err != nil || r.rep.Status != engine.StatusCompleted {
		t.Fatalf("receive: %v (%+v)", r.err, r.rep)
	}
	checkHints(t, rep, map[string]string{"vandal": "ok"})
	if !bytes.Equal(src.mem, before) {
		t.Error("the source's guest RAM changed")
	}
	checkRAM(t, src, dst, nil)
	var st unix.Stat_t
	if err := unix.Fstat(src.fd, &st); err != nil || st.Size != int64(len(before)) {
		t.Errorf("the source's RAM file is %d bytes (%v), want %d", st.Size, err, len(before))
	}
	if seals, err := unix.FcntlInt(uintptr(dst.fd), unix.F_GET_SEALS, 0); err != nil || seals&unix.F_SEAL_SHRINK == 0 {
		t.Errorf("the destination's RAM file has seals %#x (%v), want F_SEAL_SHRINK", seals, err)
	}
	if err := unix.Ftruncate(dst.fd, 0); err == nil {
		t.Error("the destination's RAM file could be truncated")
	}
}

// checkHints wants one HintStats per provider whose Status starts as
// given.
func checkHints(t *testing.T, rep engine.Report, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, h := range rep.Hints {
		w, ok := want[h.Name]
		if !ok || seen[h.Name] || !strings.HasPrefix(h.Status, w) {
			t.Errorf("hint %s: status %q, want one, starting %q", h.Name, h.Status, w)
		}
		seen[h.Name] = true
	}
	if len(seen) != len(want) {
		t.Errorf("hint stats %+v, want one for each of %v", rep.Hints, want)
	}
}

// checkRAM wants the destination's RAM to equal the source's, except
// for the free pages, which arrive as zero.
func checkRAM(t *testing.T, src, dst *fakeVM, free []uint64) {
	t.Helper()
	isFree := map[uint64]bool{}
	for _, p := range free {
		isFree[p] = true
	}
	zero := make([]byte, page)
	for p := uint64(0); p < uint64(len(src.mem)/page); p++ {
		want := src.mem[p*page : (p+1)*page]
		if isFree[p] {
			want = zero
		}
		if !bytes.Equal(dst.mem[p*page:(p+1)*page], want) {
			t.Errorf("page %d differs on the destination (free: %v)", p, isFree[p])
		}
	}
}
