package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

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
// Close stops the plugin process and waits for it (one that is stopped,
// SIGSTOP, is killed at once); a later Info, Schema or Open starts a
// fresh one with the same files. Stats after Close reports the last
// session's totals (of a stopped process: the last counters seen). If
// the process dies, every call fails with ErrPluginGone until Close.
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

	mu   sync.Mutex
	cur  *process            // nil: not running
	last Stats               // the last Stats seen, for Stats after Close
	held map[string]*os.File // listening sockets by address (listen.go)
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

// get returns the client of the running process, starting one if spawn
// is set and none runs.
func (l *launched) get(ctx context.Context, spawn bool) (*grpcClient, error) {
	if c := l.running(); c != nil || !spawn {
		if c == nil {
			return nil, fmt.Errorf("%w: closed (Open starts it again)", ErrPluginGone)
		}
		return c, nil
	}
	l.starting.Lock()
	defer l.starting.Unlock()
	if c := l.running(); c != nil {
		return c, nil
	}
	p, err := l.start(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.cur, l.released = p, false
	l.mu.Unlock()
	return p.c, nil
}

func (l *launched) running() *grpcClient {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	return l.cur.c
}

// Info implements Transport.Info.
func (l *launched) Info(ctx context.Context) (Info, error) {
	c, err := l.get(ctx, true)
	if err != nil {
		return Info{}, err
	}
	return c.Info(ctx)
}

// Schema implements Transport.Schema.
func (l *launched) Schema(ctx context.Context) (schema.Schema, error) {
	c, err := l.get(ctx, true)
	if err != nil {
		return nil, err
	}
	return c.Schema(ctx)
}

// Open implements Transport.Open.
func (l *launched) Open(ctx context.Context, req OpenRequest) error {
	c, err := l.get(ctx, true)
	if err != nil {
		return err
	}
	return c.Open(ctx, req)
}

// SendPages implements Transport.SendPages.
func (l *launched) SendPages(ctx context.Context, runs []PageRun) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.SendPages(ctx, runs)
}

// Flush implements Transport.Flush.
func (l *launched) Flush(ctx context.Context) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.Flush(ctx)
}

// SendMessage implements Transport.SendMessage.
func (l *launched) SendMessage(ctx context.Context, m Message) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.SendMessage(ctx, m)
}

// RecvMessage implements Transport.RecvMessage.
func (l *launched) RecvMessage(ctx context.Context) (Message, error) {
	c, err := l.get(ctx, false)
	if err != nil {
		return Message{}, err
	}
	return c.RecvMessage(ctx)
}

// SendUrgent implements Transport.SendUrgent.
func (l *launched) SendUrgent(ctx context.Context, m Message) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.SendUrgent(ctx, m)
}

// RecvUrgent implements Transport.RecvUrgent.
func (l *launched) RecvUrgent(ctx context.Context) (Message, error) {
	c, err := l.get(ctx, false)
	if err != nil {
		return Message{}, err
	}
	return c.RecvUrgent(ctx)
}

// SendPagesUrgent implements Transport.SendPagesUrgent.
func (l *launched) SendPagesUrgent(ctx context.Context, runs []PageRun) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.SendPagesUrgent(ctx, runs)
}

// Answer implements Answerer.
func (l *launched) Answer(ctx context.Context, kind uint32, owed *Owed) error {
	c, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return c.Answer(ctx, kind, owed)
}

// Landed implements Transport.Landed.
func (l *launched) Landed(ctx context.Context) ([]PageRun, error) {
	c, err := l.get(ctx, false)
	if err != nil {
		return nil, err
	}
	return c.Landed(ctx)
}

// Stats implements Transport.Stats; without a running process it
// returns the last stats seen.
func (l *launched) Stats(ctx context.Context) (Stats, error) {
	l.mu.Lock()
	p := l.cur
	last := l.last
	l.mu.Unlock()
	if p == nil {
		return last, nil
	}
	st, err := p.c.Stats(ctx)
	if err == nil {
		l.mu.Lock()
		l.last = st
		l.mu.Unlock()
	}
	return st, err
}

// Close implements Transport.Close: it records the session's stats, ends
// the session, then stops the plugin process and waits for it and for
// go-plugin's goroutines, and lets the held listening sockets go. A
// process already gone is not an error; a process that is stopped
// (SIGSTOP: plugproc.Process.Stopped) is not asked anything and is
// killed at once, so its session's last stats are the last seen.
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
	defer func() {
		p.proc.Kill()
		// The sockets it handed over last are held before a next
		// process is started with them, or Close lets them go.
		if p.c.ch != nil {
			p.c.ch.drained()
		}
	}()
	if p.proc.Stopped() {
		// It answers nothing (SIGSTOP, a tracer): asking would wait
		// closeTimeout. Kill kills it at once; Stats keeps the last seen.
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if st, err := p.c.Stats(ctx); err == nil {
		l.mu.Lock()
		l.last = st
		l.mu.Unlock()
	}
	if err := p.c.closeCtx(ctx); err != nil && !errors.Is(err, ErrPluginGone) {
		return err
	}
	return nil
}
