package tcp

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
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
// pending slots are full an unauthenticated connection makes room for
// the new one (evictable: a flooding host's own first). Refusals are
// logged once per remote host and summed up when Open returns. What
// this cannot stop: a flood from many hosts (more than maxPending new
// connections within one handshake time) evicts the real source's too,
// and its Open fails or, in post-copy, its reconnect waits out the
// flood (it keeps running; the job can be run again); filtering such a
// flood is the network's job.

// handshakeBound bounds a pending connection's TLS handshake on the
// destination (connect_timeout, if shorter).
const handshakeBound = 3 * time.Second

// maxLoggedHosts bounds the hosts whose refusals are counted one by one.
const maxLoggedHosts = 64

// authErr explains a failed authentication of stream on the source
// (sessionbase.AuthFailed: its deadline, a destination that dropped the
// connection, or a refusal).
func authErr(ctx context.Context, stream int, err error) error {
	return fmt.Errorf("stream %d: %w", stream, sessionbase.AuthFailed(ctx, err))
}

// admission is the acceptor's state of one accepted connection.
type admission struct {
	since  time.Time
	host   string // the remote address without its port
	authed bool
}

// admit records a newly accepted connection. With the pending slots
// full it closes an unauthenticated one to make room (evictable). It
// closes c and reports false once the session is settled (openReceive
// has swept, or is about to sweep, the pending connections), or when
// every pending connection is authenticated.
func (a *acceptor) admit(c *net.TCPConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.winner != nil || a.err != nil {
		c.Close()
		return false
	}
	host := transport.HostOf(c.RemoteAddr())
	if len(a.conns) >= maxPending {
		victim := a.evictable(host)
		if victim == nil {
			a.s.log.Warn("every pending connection is authenticated, refusing one more", "from", c.RemoteAddr().String())
			c.Close()
			return false
		}
		delete(a.conns, victim)
		victim.Close() // its handshake fails and is counted as a refusal
	}
	a.conns[c] = &admission{since: time.Now(), host: host}
	return true
}

// floodShare is how many unauthenticated connections one remote host
// may hold pending before its own are the first to go (Evictable): as
// many as one source opens at once (every bulk stream and the urgent
// one).
const floodShare = maxStreams + 1

// evictable picks the unauthenticated pending connection to close for a
// new one from newHost (transport.Evictable; nil when every pending one
// is authenticated). Called with a.mu held.
func (a *acceptor) evictable(newHost string) *net.TCPConn {
	unauthed := make(map[*net.TCPConn]transport.Pending, len(a.conns))
	for c, ad := range a.conns {
		if !ad.authed {
			unauthed[c] = transport.Pending{Host: ad.host, Since: ad.since}
		}
	}
	victim, _ := transport.Evictable(unauthed, newHost, floodShare)
	return victim
}

// authenticate runs the TLS handshake on a pending connection within
// handshakeBound and returns its stream, or nil after refusing it.
func (a *acceptor) authenticate(c *net.TCPConn) *stream {
	bound := min(handshakeBound, a.s.cfg.connectTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	sc, rc, err := secure(ctx, c, transport.RoleReceive, a.s.auth, a.s.plain)
	if err != nil && ctx.Err() != nil {
		// Said as what it is: slow, not refused (a loaded or emulated
		// host's real source can be this slow; it is told only by the
		// connection's end, and says so: sessionbase.AuthFailed).
		err = fmt.Errorf("its handshake did not finish within %v: %w", bound, err)
	}
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
// counts the others; what says why they were refused.
type refusals struct {
	what   string
	mu     sync.Mutex
	hosts  map[string]int
	others int // from hosts beyond maxLoggedHosts
}

func (r *refusals) note(log hclog.Logger, from net.Addr, err error) {
	host := transport.HostOf(from)
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
		log.Warn("refused a connection that "+r.what+" (more from this host are counted, not logged)",
			"from", from.String(), "error", err)
	}
}

// summary logs what note counted but did not log.
func (r *refusals) summary(log hclog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for host, n := range r.hosts {
		if n > 1 {
			log.Warn("refused more connections that "+r.what, "host", host, "count", n-1)
		}
	}
	if r.others > 0 {
		log.Warn("refused connections that "+r.what+" from further hosts", "count", r.others)
	}
}
