package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
	"github.com/ferryvm/ferry/framework/schema"
)

// Launch starts the transport plugin binary at path and returns the
// Transport it serves. files are the guest RAM files (engine.RAMFiles):
// the plugin receives files[i] as descriptor 3+i, and OpenRequest.Files
// must be these files or others open on the same inodes. ctx bounds the
// start only; logger (nil: hclog.Default) receives the plugin's logs.
// An error it returns begins "start transport plugin <path>: ".
//
// Close stops the plugin process and waits for it, so nothing of that
// process writes guest RAM after Close returns (Transport.Close; a
// process the plugin started itself is killed, not waited for:
// plugproc.Process.Kill); a later Info, Schema or Open starts a fresh
// one with the same files. A process that is
// stopped (SIGSTOP), or that left a Stats call unanswered for hungAfter
// with no call answered since (it hangs), is killed at once, not asked
// anything. If the process dies, every call fails with ErrPluginGone
// until Close.
//
// Stats counts the current process's session only: a process started
// after Close begins at zero. After Close it reports the closed
// session's totals, with a nil error if Close got them from the plugin;
// if it could not (the process was stopped, hung or gone), the last
// counters seen from that process, with an error wrapping ErrPluginGone
// that says so: they may be short of what the session moved.
//
// The returned Transport is also a ListenerHolder: the listening sockets
// its plugins bound through Listen are kept by this process and handed
// to every process it starts, from their first Listen until Close.
// CloseHoldingListeners stops the process but keeps them, for a next
// Open on the same address (post-copy's reconnect).
func Launch(ctx context.Context, path string, files []*os.File, logger hclog.Logger) (Transport, error) {
	if logger == nil {
		logger = hclog.Default().Named(PluginName)
	}
	l := &launched{path: path, files: files, logger: logger}
	if _, err := l.get(ctx, true); err != nil {
		return nil, err
	}
	return l, nil
}

// launched is the Transport Launch returns: a grpcClient to the current
// plugin process, started on demand.
type launched struct {
	path   string
	files  []*os.File
	logger hclog.Logger

	starting sync.Mutex // one start at a time, without holding mu

	mu  sync.Mutex
	cur *process // nil: not running
	// last is the last Stats seen from the current (or, after Close,
	// the last) process; lastErr, after Close, why they are not the
	// session's totals (nil: they are).
	last    Stats
	lastErr error
	held    map[string]*os.File // listening sockets by address (listen.go)
	// released: Close let the held sockets go, and no process started
	// since; a socket a dying process still hands over is closed.
	released bool
}

var _ ListenerHolder = (*launched)(nil)

// hold keeps the socket a plugin handed over for address, replacing
// (closing) an older one for the same address.
func (l *launched) hold(address string, f *os.File) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released || (l.held[address] == nil && len(l.held) >= plugproc.MaxHeld) {
		// More than a process can be handed: the plugin keeps its own.
		f.Close()
		return
	}
	if l.held == nil {
		l.held = map[string]*os.File{}
	}
	if old := l.held[address]; old != nil && old != f {
		old.Close()
	}
	l.held[address] = f
}

// heldNow lists the held sockets for a process being started.
func (l *launched) heldNow() []plugproc.Held {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := make([]plugproc.Held, 0, len(l.held))
	for name, f := range l.held {
		held = append(held, plugproc.Held{Name: name, File: f})
	}
	return held
}

type process struct {
	proc *plugproc.Process
	c    *grpcClient
	// answered is when a call last returned without error (UnixNano);
	// unanswered when the last Stats call left unanswered for
	// hungAfter began (0: none).
	answered, unanswered atomic.Int64
}

// hungAfter is how long a Stats call must go unanswered for Close to
// take the process for hung (if no call answered since it began) and
// kill it at once. It is longer than the engine's statsTimeout, so the
// engine's own bounded calls (a last Stats of a slow plugin, cut after a
// second) never make Close skip a plugin's orderly close; its stall
// watch's and stats poller's calls, which wait until the session ends,
// do when the plugin never answered them.
const hungAfter = 2 * time.Second

// ok records an answered call (err nil).
func (p *process) ok(err error) {
	if err == nil {
		p.answered.Store(time.Now().UnixNano())
	}
}

// hung reports since when the process has answered nothing (its last
// unanswered Stats call's start), if it is taken for hung.
func (p *process) hung() (time.Time, bool) {
	u := p.unanswered.Load()
	if u == 0 || p.answered.Load() >= u {
		return time.Time{}, false
	}
	return time.Unix(0, u), true
}

// start runs one plugin process (plugproc.Launch: mutual TLS, a private
// socket directory). ctx may kill it until the handshake is done, never
// after.
func (l *launched) start(ctx context.Context) (*process, error) {
	host, plug, err := NewChannelPair()
	if err != nil {
		return nil, fmt.Errorf("start transport plugin %s: %w", l.path, err)
	}
	// The client dups host; the process inherits plug: neither copy
	// here is needed after the start, and plug must be closed for the
	// host to see the channel end when the process does.
	defer host.Close()
	defer plug.Close()
	p, c, err := plugproc.Launch[*grpcClient](ctx, kind, l.path, l.files, plug, l.heldNow(),
		&GRPCPlugin{Files: l.files, Channel: host, OnHold: l.hold}, l.logger)
	if err != nil {
		return nil, err
	}
	return &process{proc: p, c: c}, nil
}

// get returns the running process, starting one if spawn
// is set and none runs.
func (l *launched) get(ctx context.Context, spawn bool) (*process, error) {
	if p := l.running(); p != nil || !spawn {
		if p == nil {
			return nil, fmt.Errorf("%w: closed (Open starts it again)", ErrPluginGone)
		}
		return p, nil
	}
	l.starting.Lock()
	defer l.starting.Unlock()
	if p := l.running(); p != nil {
		return p, nil
	}
	// A new process counts from zero: the last one's totals were the
	// caller's after its Close, and must not be reported again.
	l.mu.Lock()
	l.last, l.lastErr = Stats{}, nil
	l.mu.Unlock()
	p, err := l.start(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.cur, l.released = p, false
	l.mu.Unlock()
	return p, nil
}

func (l *launched) running() *process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// call runs f on the current process's client (starting one if spawn
// is set and none runs) and records whether it answered.
func call[T any](l *launched, ctx context.Context, spawn bool, f func(*grpcClient) (T, error)) (T, error) {
	p, err := l.get(ctx, spawn)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := f(p.c)
	p.ok(err)
	return v, err
}

// call0 is call for a method that returns only an error.
func call0(l *launched, ctx context.Context, spawn bool, f func(*grpcClient) error) error {
	_, err := call(l, ctx, spawn, func(c *grpcClient) (struct{}, error) { return struct{}{}, f(c) })
	return err
}

// Info implements Transport.Info.
func (l *launched) Info(ctx context.Context) (Info, error) {
	return call(l, ctx, true, func(c *grpcClient) (Info, error) { return c.Info(ctx) })
}

// Schema implements Transport.Schema.
func (l *launched) Schema(ctx context.Context) (schema.Schema, error) {
	return call(l, ctx, true, func(c *grpcClient) (schema.Schema, error) { return c.Schema(ctx) })
}

// Open implements Transport.Open.
func (l *launched) Open(ctx context.Context, req OpenRequest) error {
	return call0(l, ctx, true, func(c *grpcClient) error { return c.Open(ctx, req) })
}

// SendPages implements Transport.SendPages.
func (l *launched) SendPages(ctx context.Context, runs []PageRun) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.SendPages(ctx, runs) })
}

// Flush implements Transport.Flush.
func (l *launched) Flush(ctx context.Context) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.Flush(ctx) })
}

// SendMessage implements Transport.SendMessage.
func (l *launched) SendMessage(ctx context.Context, m Message) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.SendMessage(ctx, m) })
}

// RecvMessage implements Transport.RecvMessage.
func (l *launched) RecvMessage(ctx context.Context) (Message, error) {
	return call(l, ctx, false, func(c *grpcClient) (Message, error) { return c.RecvMessage(ctx) })
}

// SendUrgent implements Transport.SendUrgent.
func (l *launched) SendUrgent(ctx context.Context, m Message) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.SendUrgent(ctx, m) })
}

// RecvUrgent implements Transport.RecvUrgent.
func (l *launched) RecvUrgent(ctx context.Context) (Message, error) {
	return call(l, ctx, false, func(c *grpcClient) (Message, error) { return c.RecvUrgent(ctx) })
}

// SendPagesUrgent implements Transport.SendPagesUrgent.
func (l *launched) SendPagesUrgent(ctx context.Context, runs []PageRun) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.SendPagesUrgent(ctx, runs) })
}

// Answer implements Answerer.
func (l *launched) Answer(ctx context.Context, kind uint32, owed *Owed) error {
	return call0(l, ctx, false, func(c *grpcClient) error { return c.Answer(ctx, kind, owed) })
}

// Landed implements Transport.Landed.
func (l *launched) Landed(ctx context.Context) ([]PageRun, error) {
	return call(l, ctx, false, func(c *grpcClient) ([]PageRun, error) { return c.Landed(ctx) })
}

// Stats implements Transport.Stats: the current process's session;
// without a running process, the closed session's totals, or the last
// counters seen with an error saying why they may fall short (Launch).
// A call that goes unanswered for hungAfter is remembered: Close then
// asks that process nothing more.
func (l *launched) Stats(ctx context.Context) (Stats, error) {
	l.mu.Lock()
	p := l.cur
	last, lastErr := l.last, l.lastErr
	l.mu.Unlock()
	if p == nil {
		return last, lastErr
	}
	start := time.Now()
	st, err := p.c.Stats(ctx)
	switch {
	case err == nil:
		p.ok(nil)
		l.mu.Lock()
		if l.cur == p { // not a process Close already let go of
			l.last = st
		}
		l.mu.Unlock()
	case time.Since(start) >= hungAfter:
		p.unanswered.Store(start.UnixNano())
	}
	return st, err
}

// Close implements Transport.Close: it ends the session and records its
// totals (the plugin's Stats after its Close, which count what the
// Close finished; those before it when the plugin no longer answers,
// and Stats then says so), then stops the plugin process and waits for
// it and for go-plugin's goroutines, and lets the held listening
// sockets go. A process already gone is not an error; a process that is
// stopped (SIGSTOP: plugproc.Process.Stopped) or hung (process.hung) is
// not asked anything and is killed at once, so its session's last stats
// are the last seen (Stats then says so).
func (l *launched) Close() error {
	err := l.CloseHoldingListeners()
	l.mu.Lock()
	held := l.held
	l.held, l.released = nil, true
	l.mu.Unlock()
	for _, f := range held {
		f.Close()
	}
	return err
}

// CloseHoldingListeners implements ListenerHolder: Close, but the
// listening sockets stay bound here for the next process.
func (l *launched) CloseHoldingListeners() error {
	l.mu.Lock()
	p := l.cur
	l.cur = nil
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	now := false // kill without asking it to exit
	defer func() {
		if now {
			p.proc.KillNow()
		} else {
			p.proc.Kill()
		}
		// The sockets it handed over last are held before a next
		// process is started with them, or Close lets them go.
		if p.c.ch != nil {
			p.c.ch.drained()
		}
	}()
	if p.proc.Stopped() {
		// It answers nothing (SIGSTOP, a tracer): asking would wait
		// closeTimeout. Kill kills it at once; Stats keeps the last seen.
		l.closedShort("its process is stopped")
		return nil
	}
	if since, hung := p.hung(); hung {
		// It left a Stats call unanswered and answered nothing since:
		// asking would wait closeTimeout, and its exit killGrace.
		now = true
		l.closedShort(fmt.Sprintf("it had answered nothing for %v", time.Since(since).Round(time.Millisecond)))
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// The counters before the Close are what is left if the process
	// cannot answer after it; the session's totals are its Stats after
	// its Close (Transport.Stats), which count what the Close itself
	// finished: a receiving transport's close joins the writes of pages
	// in flight (tcp's does), and a destination refusing a stranger's
	// session checks those counts for a page written into guest RAM.
	if st, err := p.c.Stats(ctx); err != nil {
		l.closedShort(fmt.Sprintf("its last Stats failed: %v", err))
	} else {
		l.mu.Lock()
		l.last = st
		l.mu.Unlock()
	}
	cerr := p.c.closeCtx(ctx)
	if cerr != nil && (errors.Is(cerr, ErrPluginGone) || ctx.Err() != nil) {
		l.closedShort(fmt.Sprintf("its Close did not return: %v", cerr))
	} else if st, err := p.c.Stats(ctx); err != nil {
		l.closedShort(fmt.Sprintf("its Stats after its Close failed: %v", err))
	} else {
		l.mu.Lock()
		l.last, l.lastErr = st, nil
		l.mu.Unlock()
	}
	if cerr != nil && !errors.Is(cerr, ErrPluginGone) {
		return cerr
	}
	return nil
}

// closedShort records that the session just closed was not asked for
// its totals, or did not give them, and why: Stats after Close then
// returns the last counters seen with that error.
func (l *launched) closedShort(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = fmt.Errorf("%w: closed without the session's last counters (%s); these are the last seen, "+
		"and may fall short of what it moved", ErrPluginGone, why)
}
