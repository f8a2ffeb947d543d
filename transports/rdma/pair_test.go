package rdma_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// logLines is a logger whose lines a test can wait for: what a
// destination says as it listens and as it drops a try of the source's
// (rdma.LogListening, rdma.LogDropped).
type logLines struct {
	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced at each line
}

func newLogLines() (*logLines, hclog.Logger) {
	l := &logLines{grew: make(chan struct{})}
	return l, hclog.New(&hclog.LoggerOptions{Output: l, Level: hclog.Debug, DisableTime: true})
}

// Write takes one line (hclog writes each entry in one call).
func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	close(l.grew)
	l.grew = make(chan struct{})
	return len(p), nil
}

// count returns how many lines contain s, and a channel closed at the
// next line.
func (l *logLines) count(s string) (int, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n, l.grew
}

// wait blocks until n lines contain s; it fails t if ctx ends first,
// or when ended is closed (then saying why, why()).
func (l *logLines) wait(ctx context.Context, t *testing.T, s string, n int, ended <-chan struct{}, why func() error) {
	t.Helper()
	for {
		got, grew := l.count(s)
		if got >= n {
			return
		}
		select {
		case <-grew:
		case <-ended:
			t.Fatalf("%d lines saying %q, want %d, when the destination's Open returned %v; the log:\n%s", got, s, n, why(), l.String())
		case <-ctx.Done():
			t.Fatalf("%d lines saying %q, want %d, when %v; the log:\n%s", got, s, n, ctx.Err(), l.String())
		}
	}
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "")
}

// pair is a source and a destination of 1 MiB of guest RAM each, with
// the destination's Open running in the background from start on.
type pair struct {
	send, recv *rdma.Transport
	cfg        schema.Config
	layout     []transport.RAMRegion
	sf, df     *os.File
	sm, dm     []byte // the source's and the destination's RAM
	sc, rc     transport.Credentials
	ctx        context.Context // 30 s for the whole test
	cancel     context.CancelFunc
	log        *logLines // the destination's
	started    bool      // the destination's Open
	recvDone   chan struct{}
	recvErr    error // the destination's Open, once recvDone is closed
}

// newPair makes a pair on provider with cfg (config's when nil); the
// test's end waits for the destination's Open, if started, and closes
// both sides.
func newPair(t *testing.T, provider string, cfg schema.Config) *pair {
	t.Helper()
	if cfg == nil {
		cfg = config(t, provider)
	}
	p := &pair{cfg: cfg, layout: []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}, recvDone: make(chan struct{})}
	p.sf, p.sm = memfd(t, "send", 1<<20)
	p.df, p.dm = memfd(t, "recv", 1<<20)
	var err error
	if p.sc, p.rc, err = transport.MintCredentials(false); err != nil {
		t.Fatal(err)
	}
	var log hclog.Logger
	p.log, log = newLogLines()
	p.send, p.recv = rdma.New(nil), rdma.New(log)
	t.Cleanup(func() { p.send.Close(); p.recv.Close() })
	p.ctx, p.cancel = context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		p.cancel()
		if p.started {
			<-p.recvDone
		}
	})
	return p
}

// startPair is newPair with the destination started for tag.
func startPair(t *testing.T, provider string, cfg schema.Config, tag transport.Tag) *pair {
	t.Helper()
	p := newPair(t, provider, cfg)
	p.startDestination(t, tag)
	return p
}

// startDestination opens the destination for tag in the background and
// returns once its control port listens.
func (p *pair) startDestination(t *testing.T, tag transport.Tag) {
	t.Helper()
	p.started = true
	go func() {
		defer close(p.recvDone)
		p.recvErr = p.recv.Open(p.ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: p.cfg, RAM: p.layout,
			Files: []*os.File{p.df}, Credentials: p.rc, Tag: tag})
	}()
	p.waitLog(t, rdma.LogListening, 1)
}

// waitLog waits until the destination logged n lines saying s; it fails
// t if the destination's Open returns first, or the test's time is up.
func (p *pair) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	p.log.wait(p.ctx, t, s, n, p.recvDone, func() error { return p.recvErr })
}

// sendReq is the source's OpenRequest for tag.
func (p *pair) sendReq(tag transport.Tag) transport.OpenRequest {
	return transport.OpenRequest{Role: transport.RoleSend, Config: p.cfg, RAM: p.layout, Files: []*os.File{p.sf},
		Credentials: p.sc, Tag: tag}
}

// received waits for the destination's Open (at most until ctx ends)
// and returns its error.
func (p *pair) received() error {
	<-p.recvDone
	return p.recvErr
}

// nextTryOpens opens the source for tag, at its first try, and checks
// that the destination's Open took it and a message goes through.
func (p *pair) nextTryOpens(t *testing.T, tag transport.Tag) {
	t.Helper()
	if err := p.send.Open(p.ctx, p.sendReq(tag)); err != nil {
		p.cancel()
		t.Fatalf("the source's next try: %v (the destination's Open: %v)", err, p.received())
	}
	if err := p.received(); err != nil {
		t.Fatalf("the destination's Open: %v", err)
	}
	if err := p.send.SendMessage(p.ctx, transport.Message{Kind: 7, Payload: []byte("after the try dropped")}); err != nil {
		t.Fatal(err)
	}
	if m, err := p.recv.RecvMessage(p.ctx); err != nil || m.Kind != 7 {
		t.Fatalf("message after the try dropped: kind %d, %v", m.Kind, err)
	}
}
