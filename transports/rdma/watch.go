package rdma

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errSourceGone is the error of a destination's setup whose source
// closed the control channel half-way: that try of the source's Open
// ended (its deadline, or its process), and openReceive waits for the
// next one instead of failing.
var errSourceGone = errors.New("the source closed the control channel during setup (its Open ended)")

// errSourceStalled is the error of a destination's setup that the
// source's try did not finish within connect_timeout, the bound of the
// source's own Open, without closing the control channel: that try will
// not finish (its host stalled, or it was refused its urgent channel, or
// came too late for it, and does not retry), and openReceive drops it
// and waits for the next one instead of failing.
var errSourceStalled = errors.New("the source's try stalled during setup")

// peerClosed reports whether err is that of a read from a connection
// its peer closed or reset.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// ownError is a destination's setup failure of its own making
// (registering guest RAM): it fails Open even if the source closed the
// control channel meanwhile, for the source may have closed it because
// of that failure (its fabric connect refused), and its next try would
// meet the same failure.
type ownError struct{ error }

func (e ownError) Unwrap() error { return e.error }

// own marks err (nil stays nil) as an ownError.
func own(err error) error {
	if err == nil {
		return nil
	}
	return ownError{err}
}

// peerWatch notices that the peer of a connection closed its end while
// this side is not reading it: during a destination's setup the source
// sends nothing after HELLO until its Open returns, so a readable
// control channel there means end of stream (or reset), or the first
// frame of a session already set up.
type peerWatch struct {
	c      *net.TCPConn
	rc     syscall.RawConn
	done   chan struct{}
	closed bool // set by the goroutine before done is closed
}

// watchPeer watches c until stop, calling gone once if the peer closed
// or reset it. It reads nothing (MSG_PEEK), so bytes that arrive are
// left for the reader; the first byte ends the watch. It cannot see a
// peer that vanished without a FIN or RST (a host that went down, a cut
// cable): the caller's deadline covers that; nor one that closes its
// TLS connection cleanly, whose close_notify is a record like any data
// (Ferry's sources close the socket itself, on failure and at Close);
// nor a peer that closes after sending anything.
func watchPeer(c *net.TCPConn, gone func()) *peerWatch {
	w := &peerWatch{c: c, done: make(chan struct{})}
	rc, err := c.SyscallConn()
	if err != nil {
		close(w.done)
		return w
	}
	w.rc = rc
	go func() {
		defer close(w.done)
		if w.peek(true) {
			w.closed = true
			gone()
		}
	}()
	return w
}

// peek reports whether the peer closed or reset the connection: at once
// if wait is false, else once c becomes readable (false when c's read
// deadline passed or something arrived).
func (w *peerWatch) peek(wait bool) bool {
	closed := false
	var b [1]byte
	err := w.rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR {
			return !wait
		}
		closed = err != nil || n == 0
		return true
	})
	return err == nil && closed
}

// stop ends the watch, clears c's read deadline and reports whether the
// peer has closed or reset the connection by now.
func (w *peerWatch) stop() bool {
	if w.rc == nil {
		return false
	}
	w.c.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	w.c.SetReadDeadline(time.Time{})
	return w.closed || w.peek(false)
}
