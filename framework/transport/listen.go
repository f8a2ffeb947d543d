package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// Held listening sockets (transport API 7). A destination's post-copy
// that lost its connection closes its transport, which stops the plugin
// process, and opens it again for the source's RESUME in a new process
// (engine pcRecv.reconnect). If the listening port were free in between,
// any local user could bind it and keep the source out until
// reconnect_timeout, which after a cut in post-copy loses the guest. So
// the socket outlives the process that bound it:
//
//	plugin A: Listen(addr) binds ──fHold(addr, socket)──► host (launched) keeps a copy
//	host: CloseHoldingListeners stops A; the port stays bound by the host's copy
//	host: starts plugin B with the copy (FERRY_TRANSPORT_HELD)
//	plugin B: Listen(addr) takes the inherited socket, binds nothing
//	host: Close (the migration is over) closes its copies
//
// Connections that arrive while no process accepts wait in the socket's
// accept queue and meet the next Open's authentication like any other.

// listeners is this process's side of it: the listening sockets it
// holds by address (a copy of each; in a plugin process also the ones
// the host handed over at start), and the channel to hand new ones to
// the host (nil outside a plugin process, or with a host that gave no
// channel).
var listeners struct {
	mu   sync.Mutex
	held map[string]*os.File
	// users counts, by address, the Listened sets that recorded it: the
	// Transports of this process whose Close has yet to let it go.
	users map[string]int
	host  *chanWriter
}

// Listen opens the TCP listening socket of a receiving Open on address
// (a "host:port" as the transport's configuration names it; the same
// string finds the same socket again). Stream transports call it
// instead of net.Listen so that a post-copy reconnect finds its port
// still held. The process keeps a copy of the socket, so the port stays
// bound after the listener is closed (connections queue unanswered),
// and the next Listen on address takes the same socket instead of
// binding:
//
//   - in a plugin process Launch started, the host gets a copy too,
//     keeps it until the Transport is closed for good (Close, not
//     CloseHoldingListeners) and hands it to each process it starts
//     next; Listened.Release does not let it go there.
//   - in any other process (a transport in process) the copy is kept
//     until Listened.Release, which the transport's Close calls (and
//     its CloseHoldingListeners does not).
//
// One receiving Open per address at a time: two Transports of one
// process that listen on the same address share one socket, kept until
// the last of them is closed (Listened).
func Listen(ctx context.Context, address string) (*net.TCPListener, error) {
	if address == "" || len(address) > plugproc.MaxHeldName {
		return nil, fmt.Errorf("%w: listen address %q: want host:port, at most %d bytes", ErrBadConfig, address, plugproc.MaxHeldName)
	}
	listeners.mu.Lock()
	defer listeners.mu.Unlock()
	if f := listeners.held[address]; f != nil {
		return heldListener(address, f)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tl := ln.(*net.TCPListener)
	f, err := keep(address, tl, listeners.host)
	if err != nil {
		tl.Close()
		return nil, fmt.Errorf("keep the listening socket on %s: %w", address, err)
	}
	if listeners.held == nil {
		listeners.held = map[string]*os.File{}
	}
	listeners.held[address] = f
	return tl, nil
}

// unlistenLocked lets go of the socket Listen keeps for address,
// outside a plugin process (there the host decides); once the listeners
// on it are closed too, the port is free. listeners.mu is held.
func unlistenLocked(address string) {
	if f := listeners.held[address]; f != nil && listeners.host == nil {
		f.Close()
		delete(listeners.held, address)
	}
}

// heldListener is a listener of its own on the socket the host handed
// over for address (net.FileListener duplicates the descriptor).
func heldListener(address string, f *os.File) (*net.TCPListener, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("the listening socket the host held for %s: %w", address, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("the socket the host held for %s is a %T, not a TCP listener", address, ln)
	}
	return tl, nil
}

// listenBacklog bounds the connections a held socket queues while no
// Open accepts on it (the whole session, and between two): Go listens
// with the host's somaxconn (4096 by default), and anyone who can reach
// the port could fill that with connections that each hold kernel
// buffers until the next Open drains them. A session's own streams are
// accepted as they come (at most 17 for tcp).
const listenBacklog = 64

// keep sets ln's accept queue to listenBacklog and returns a copy of
// ln's socket, and hands another to the host in
// an fHold frame if host is not nil (the kernel holds that one from the
// write on, and the host reads it even if this process dies first:
// chanClient's drain). The
// descriptor is taken through the raw connection: File or Fd would put
// the socket, shared with ln, in blocking mode.
func keep(address string, ln *net.TCPListener, host *chanWriter) (*os.File, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup, werr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		if werr = unix.Listen(int(fd), listenBacklog); werr != nil {
			return
		}
		if dup, werr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); werr != nil || host == nil {
			return
		}
		werr = host.writeFD(chanFrame{Type: fHold, Text: address}, int(fd))
	}); err != nil {
		werr = err
	}
	if werr != nil {
		if dup >= 0 {
			unix.Close(dup)
		}
		return nil, werr
	}
	return os.NewFile(uintptr(dup), "held-"+address), nil
}

// adoptHeld makes this process a plugin process whose host holds
// listening sockets: held are the ones it handed over at start, w the
// channel to hand it new ones.
func adoptHeld(held []plugproc.Held, w *chanWriter) {
	listeners.mu.Lock()
	defer listeners.mu.Unlock()
	listeners.held = map[string]*os.File{}
	for _, h := range held { // names are unique: the host's map keys
		listeners.held[h.Name] = h.File
	}
	listeners.host = w
}

// Listened is the set of addresses a Transport's receiving Opens listen
// on through Listen: Add each before it listens, and Release in Close
// (not in CloseHoldingListeners). The zero value is ready to use.
//
// Two Transports of one process that listen on one address share its
// socket (Listen), so the socket is let go only when the last
// Listened that recorded the address releases it: one Transport's Close
// must not free the port another still holds for its reconnect.
type Listened struct {
	mu    sync.Mutex
	addrs map[string]bool
}

// Add records address.
func (l *Listened) Add(address string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs[address] {
		return
	}
	if l.addrs == nil {
		l.addrs = map[string]bool{}
	}
	l.addrs[address] = true
	listeners.mu.Lock()
	defer listeners.mu.Unlock()
	if listeners.users == nil {
		listeners.users = map[string]int{}
	}
	listeners.users[address]++
}

// Release forgets every address recorded and lets go of the sockets of
// those no other Listened of this process still records.
func (l *Listened) Release() {
	l.mu.Lock()
	addrs := l.addrs
	l.addrs = nil
	l.mu.Unlock()
	listeners.mu.Lock()
	defer listeners.mu.Unlock()
	for a := range addrs {
		if listeners.users[a]--; listeners.users[a] <= 0 {
			delete(listeners.users, a)
			unlistenLocked(a)
		}
	}
}

// ListenerHolder is a Transport whose listening sockets can outlive a
// session: CloseHoldingListeners ends the session like Close but keeps
// the sockets bound for the next Open, which takes them again; Close
// lets them go. Post-copy's reconnect uses it on both sides
// (CloseHolding): the destination's, so that no one else on the host
// can take the port between two sessions; the source's, which holds no
// listening socket, to end the session it gave up on at once also
// through a wrapper whose Close leaves the real close to a later
// teardown (framework/session's forwards CloseHoldingListeners).
type ListenerHolder interface {
	CloseHoldingListeners() error
}

// CloseHolding ends tr's session for a reconnect: CloseHoldingListeners
// when tr is a ListenerHolder (its listening port stays bound for the
// next Open), else Close. The caller still calls Close at the end, which
// lets held sockets go.
func CloseHolding(tr Transport) error {
	if h, ok := tr.(ListenerHolder); ok {
		return h.CloseHoldingListeners()
	}
	return tr.Close()
}
