package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
)

// Authentication. Every stream starts with transport.Secure: a TLS 1.3
// handshake, mutual, against the OpenRequest's credentials; the source
// is the TLS client. Frames then travel inside TLS, or, with
// Credentials.Plaintext, on the socket itself (writev of the batch
// buffer, reads into the staging buffer, without TLS's record copies),
// after the go-ahead that makes the switch safe (see Secure).
//
// The destination parses nothing from a connection before its handshake
// succeeded: a stranger cannot get a HELLO read, so it never meets the
// layout check nor an ABORT that would name the layout (what it does see
// is TLS's own: the destination's certificate, sent before the client's
// is checked, and an alert). It cannot hold
// the acceptor either: a handshake has handshakeBound, and when the
// pending slots are full the oldest unauthenticated connection makes
// room for the new one. Refusals are logged once per remote host and
// summed up when Open returns. What this cannot stop: a flood of more
// than maxPending new connections within one handshake time evicts the
// real source's too, and its Open fails (it keeps running; the job can
// be run again); filtering such a flood is the network's job.

// handshakeBound bounds a pending connection's TLS handshake on the
// destination (connect_timeout, if shorter).
const handshakeBound = 3 * time.Second

// maxLoggedHosts bounds the hosts whose refusals are counted one by one.
const maxLoggedHosts = 64

// authErr explains a failed authentication on the source.
func authErr(ctx context.Context, stream int, err error) error {
	if ctx.Err() != nil && !errors.Is(err, transport.ErrUnauthenticated) {
		return fmt.Errorf("stream %d: %w", stream, err)
	}
	return fmt.Errorf("stream %d: the destination refused this job's credentials, or is not this job's destination "+
		"(each side needs the credentials migrate made for this job): %w", stream, err)
}

// admission is the acceptor's state of one accepted connection.
type admission struct {
	since  time.Time
	authed bool
}

// admit records a newly accepted connection. With the pending slots
// full it closes the oldest unauthenticated one to make room. It closes c
// and reports false once the session is settled (openReceive has swept,
// or is about to sweep, the pending connections), or when every pending
// connection is authenticated.
func (a *acceptor) admit(c *net.TCPConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.winner != nil || a.err != nil {
		c.Close()
		return false
	}
	if len(a.conns) >= maxPending {
		var oldest *net.TCPConn
		for o, ad := range a.conns {
			if !ad.authed && (oldest == nil || ad.since.Before(a.conns[oldest].since)) {
				oldest = o
			}
		}
		if oldest == nil {
			a.s.log.Warn("every pending connection is authenticated, refusing one more", "from", c.RemoteAddr().String())
			c.Close()
			return false
		}
		delete(a.conns, oldest)
		oldest.Close() // its handshake fails and is counted as a refusal
	}
	a.conns[c] = &admission{since: time.Now()}
	return true
}

// authenticate runs the TLS handshake on a pending connection within
// handshakeBound and returns its stream, or nil after refusing it.
func (a *acceptor) authenticate(c *net.TCPConn) *stream {
	ctx, cancel := context.WithTimeout(context.Background(), min(handshakeBound, a.s.cfg.connectTimeout))
	defer cancel()
	sc, rc, err := secure(ctx, c, transport.RoleReceive, a.s.auth, a.s.plain)
	a.mu.Lock()
	ad := a.conns[c]
	if err == nil && ad != nil {
		ad.authed = true
	}
	over := a.winner != nil || a.err != nil
	a.mu.Unlock()
	if err == nil && ad != nil {
		st := newStream(0, sc, c)
		st.rc = rc
		return st
	}
	if ad == nil && !over {
		err = fmt.Errorf("closed before it authenticated, to make room for newer connections (%d pending): %w", maxPending, err)
	}
	if !over {
		a.refused.note(a.s.log, c.RemoteAddr(), err)
	}
	a.forget(c)
	return nil
}

// forget closes c and frees its pending slot.
func (a *acceptor) forget(c *net.TCPConn) {
	c.Close()
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
}

// refusals logs the first refused connection of each remote host and
// counts the others.
type refusals struct {
	mu     sync.Mutex
	hosts  map[string]int
	others int // from hosts beyond maxLoggedHosts
}

func (r *refusals) note(log hclog.Logger, from net.Addr, err error) {
	host := from.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	r.mu.Lock()
	if r.hosts == nil {
		r.hosts = map[string]int{}
	}
	n, known := r.hosts[host]
	if !known && len(r.hosts) >= maxLoggedHosts {
		r.others++
		r.mu.Unlock()
		return
	}
	r.hosts[host] = n + 1
	r.mu.Unlock()
	if n == 0 {
		log.Warn("refused a connection that did not authenticate (more from this host are counted, not logged)",
			"from", from.String(), "error", err)
	}
}

// summary logs what note counted but did not log.
func (r *refusals) summary(log hclog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for host, n := range r.hosts {
		if n > 1 {
			log.Warn("refused more connections that did not authenticate", "host", host, "count", n-1)
		}
	}
	if r.others > 0 {
		log.Warn("refused connections from further hosts", "count", r.others)
	}
}
