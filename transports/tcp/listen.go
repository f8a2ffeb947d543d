package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// maxPending bounds connections that are accepted but not yet part of a
// complete session (port scanners, strangers, stale attempts of an
// earlier try); see admit for what happens when they are all taken.
const maxPending = 4 * maxStreams

// acceptor gathers the streams of one session on the destination: each
// connection authenticates first (tls.go); a HELLO that names another
// migration than the one awaited is refused as a stranger is (tag);
// then the first session whose every stream said HELLO wins; a HELLO
// with another RAM layout from an authenticated source of this
// migration fails Open at once (the migration cannot work).
type acceptor struct {
	s *session
	// want is the tag awaited (the OpenRequest's; zero: any). Every
	// connection's goroutine reads it; s.tag is set only once they are
	// joined (openReceive), from key.
	want    [wire.TagSize]byte
	mu      sync.Mutex
	conns   map[*net.TCPConn]*admission // every accepted connection still open
	refused refusals                    // connections that did not authenticate
	foreign refusals                    // authenticated, but of another migration
	// mismatch names the likely cause when an authenticated source spoke
	// the other framing (encryptionMismatch): the destination's Open
	// ends with it, if it times out, as well as logging it.
	mismatch string
	groups   map[groupKey][]*stream
	winner   []*stream
	key      groupKey // the winner's
	err      error
	settled  chan struct{} // closed once winner or err is set
	wg       sync.WaitGroup
}

// groupKey is what the streams of one session share: a stream that names
// another tag or speaks another wire version than the rest of its
// session joins no session of theirs (no splicing).
type groupKey struct {
	session [wire.SessionSize]byte
	tag     [wire.TagSize]byte
	version uint8
}

// openReceive listens and returns once a source connected all its streams.
func openReceive(ctx context.Context, s *session) error {
	ln, err := transport.Listen(ctx, s.cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.listen, err)
	}
	s.log.Info("waiting for the source", "listen", ln.Addr().String())
	a := &acceptor{s: s, want: s.tag, conns: map[*net.TCPConn]*admission{}, groups: map[groupKey][]*stream{},
		settled: make(chan struct{}), refused: refusals{what: "did not authenticate"},
		foreign: refusals{what: "named another migration"}}
	a.wg.Go(func() { a.acceptLoop(ln) })
	select {
	case <-a.settled:
	case <-ctx.Done():
		a.mu.Lock()
		mismatch := a.mismatch
		a.mu.Unlock()
		a.settle(nil, fmt.Errorf("waiting for the source on %s: %w%s", s.cfg.listen, ctx.Err(), mismatch))
	}
	ln.Close()
	a.mu.Lock()
	for c := range a.conns {
		if !slices.ContainsFunc(a.winner, func(st *stream) bool { return st.raw == c }) {
			c.Close()
		}
	}
	a.mu.Unlock()
	a.wg.Wait()
	a.refused.summary(s.log)
	a.foreign.summary(s.log)
	if a.err != nil {
		closeStreams(a.winner)
		return a.err
	}
	n := len(a.winner) - 1
	s.streams, s.urgent = a.winner[:n:n], a.winner[n]
	s.id, s.tag, s.ver = a.key.session, a.key.tag, a.key.version
	if err := a.accept(ctx); err != nil {
		closeStreams(s.all())
		return err
	}
	s.log.Info("source connected", "streams", len(s.streams), "from", s.streams[0].conn.RemoteAddr().String())
	return nil
}

func (a *acceptor) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by openReceive
		}
		tc := c.(*net.TCPConn)
		if !a.admit(tc) {
			continue
		}
		tune(tc)
		a.wg.Go(func() {
			if st := a.authenticate(tc); st != nil {
				a.hello(st)
			}
		})
	}
}

// hello reads an authenticated connection's HELLO and files it under
// its session.
func (a *acceptor) hello(st *stream) {
	c := st.conn
	c.SetDeadline(time.Now().Add(a.s.cfg.connectTimeout))
	f, err := st.dec.Next()
	from := c.RemoteAddr().String()
	switch {
	case err != nil:
		mismatch := encryptionMismatch(err, "destination", "source")
		if mismatch != "" {
			a.mu.Lock()
			a.mismatch = mismatch
			a.mu.Unlock()
		}
		a.drop(st, sessionbase.AbortCode(err), fmt.Sprintf("no HELLO: %v%s", err, mismatch))
		return
	case f.Type != wire.TypeHello:
		a.drop(st, wire.CodeProtocol, fmt.Sprintf("first frame is %v, not HELLO", f.Type))
		return
	case a.want != [wire.TagSize]byte{} && f.Hello.Tag != a.want:
		a.stranger(st, f)
		return
	case int(f.Hello.Streams) > maxStreams:
		a.drop(st, wire.CodeRejected, fmt.Sprintf("%d streams, this transport takes at most %d", f.Hello.Streams, maxStreams))
		return
	}
	h := f.Hello
	if !slices.Equal(h.RAM, a.s.ram.Layout) || h.PageSize != pageSize {
		err := layoutErr(a.s.ram.Layout, h.RAM, "destination", "source")
		a.drop(st, wire.CodeLayout, err.Error())
		a.settle(nil, fmt.Errorf("refused the source at %s: %w", from, err))
		return
	}
	// A session's group holds its bulk streams by index, then its urgent
	// stream; it is complete once every one of them said HELLO.
	st.idx = int(h.Stream)
	if h.Urgent {
		st.idx, st.urgent = int(h.Streams), true
	}
	key := groupKey{h.Session, h.Tag, f.Version}
	a.mu.Lock()
	g := a.groups[key]
	if g == nil {
		g = make([]*stream, int(h.Streams)+1)
		a.groups[key] = g
	}
	ok := len(g) == int(h.Streams)+1 && g[st.idx] == nil && a.winner == nil && a.err == nil
	if ok {
		g[st.idx] = st
	}
	complete := ok && !slices.Contains(g, nil)
	a.mu.Unlock()
	if !ok {
		a.drop(st, wire.CodeRejected, fmt.Sprintf("stream %d of %d of session %x does not fit the session being accepted", h.Stream, h.Streams, h.Session))
		return
	}
	a.s.log.Debug("stream connected", "from", from, "stream", h.Stream, "streams", h.Streams)
	if complete {
		a.settleOn(g, key, nil)
	}
}

// stranger refuses an authenticated connection whose HELLO names another
// migration (transport.Transport, "Migration tag"), or none (a source of
// wire version 1), while this Open waits for a tagged one: it reads
// nothing more of it, answers only the refusal (ABORT, another
// migration, in the source's version, naming nothing of this side; to a
// version-1 source the reason says to upgrade it) and closes it. Open
// waits on.
func (a *acceptor) stranger(st *stream, f wire.Frame) {
	why, reason := fmt.Errorf("its HELLO names migration %x, this destination waits for %x", f.Hello.Tag[:4], a.want[:4]),
		"this destination waits for another migration"
	if f.Version == 1 {
		// Most likely this migration's own source, of a Ferry from before
		// transport API 8: tell it what to do (it shows the code as code(5)).
		why = fmt.Errorf("its HELLO is of wire version 1, which names no migration; this destination waits for %x", a.want[:4])
		reason = "this destination takes only a source that names its migration (wire version 2, transport API 8); " +
			"this source speaks wire version 1: upgrade Ferry on the source"
	}
	a.foreign.note(a.s.log, st.conn.RemoteAddr(), why)
	b := wire.AppendAbort(nil, wire.CodeOtherMigration, reason)
	wire.SetVersion(b, f.Version)
	st.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	st.conn.Write(b)
	a.forget(st.raw)
}

// settle records the outcome once: a complete session or an error.
func (a *acceptor) settle(winner []*stream, err error) { a.settleOn(winner, groupKey{}, err) }

// settleOn is settle with the winner's key, which openReceive gives the
// session once every connection's goroutine is joined.
func (a *acceptor) settleOn(winner []*stream, key groupKey, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.winner != nil || a.err != nil {
		return
	}
	a.winner, a.key, a.err = winner, key, err
	close(a.settled)
}

// drop refuses an authenticated connection, telling the peer why when
// code is set.
func (a *acceptor) drop(st *stream, code wire.Code, reason string) {
	a.s.log.Warn("refused a connection", "from", st.conn.RemoteAddr().String(), "reason", reason)
	if code != 0 {
		b := wire.AppendAbort(nil, code, reason)
		if v := st.dec.Version(); v != 0 {
			wire.SetVersion(b, v) // in the version the peer spoke, if any
		}
		st.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
		st.conn.Write(b)
	}
	a.forget(st.raw)
}

// accept answers HELLO on every stream of the winning session.
func (a *acceptor) accept(ctx context.Context) error {
	s := a.s
	ctx, cancel := context.WithTimeout(ctx, s.cfg.connectTimeout)
	defer cancel()
	all := s.all()
	stop := deadlineOnCancel(ctx, all)
	defer stop()
	for _, st := range all {
		b, err := wire.AppendHelloIn(nil, s.hello(st), s.ver) // in the source's version
		if err == nil {
			_, err = st.conn.Write(b)
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return fmt.Errorf("answer HELLO: %w", connErr(st, err))
		}
	}
	return nil
}
