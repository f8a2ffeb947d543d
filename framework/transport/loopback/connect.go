package loopback

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// dialPatience bounds how long a sender waits for its receiver's socket
// (within Open's context): the two sides start at about the same time.
const dialPatience = 10 * time.Second

// refuseTimeout bounds writing REFUSE to a stranger that may not read.
const refuseTimeout = 500 * time.Millisecond

// listener is where a receiving Open waits for its sender: it hands out
// one connection per Accept until closed.
type listener interface {
	Accept(ctx context.Context) (net.Conn, error)
	Close()
}

// dialSocket dials the unix socket again while it is not there or
// refuses, until ctx ends or dialPatience passed.
func dialSocket(ctx context.Context, o options) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialPatience)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(dctx, "unix", o.socket)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("loopback: dial: %w", err)
		}
		select {
		case <-dctx.Done():
			return nil, fmt.Errorf("loopback: dial: no receiver at %s: %w", o.socket, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// socketListener listens on the unix socket; Close removes the socket
// file.
type socketListener struct{ ln net.Listener }

func listenSocket(o options) (listener, error) {
	ln, err := net.Listen("unix", o.socket)
	if err != nil {
		return nil, fmt.Errorf("loopback: listen: %w", err)
	}
	return socketListener{ln}, nil
}

func (l socketListener) Accept(ctx context.Context) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { l.ln.(*net.UnixListener).SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := l.ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("loopback: waiting for the sender: %w", ctx.Err())
		}
		return nil, fmt.Errorf("loopback: accept: %w", err)
	}
	return c, nil
}

func (l socketListener) Close() { l.ln.Close() }

// pipeListener meets the other transport of a NewPipe pair on rv: each
// Accept makes a net.Pipe and hands one end to the next sending Open.
type pipeListener struct{ rv chan net.Conn }

func (l pipeListener) Accept(ctx context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.rv <- b:
		return a, nil
	case <-ctx.Done():
		a.Close()
		b.Close()
		return nil, fmt.Errorf("loopback: waiting for the sender: %w", ctx.Err())
	}
}

func (pipeListener) Close() {}

// dialPipe takes the end a receiving Open of the pair offers on rv.
func dialPipe(ctx context.Context, rv chan net.Conn) (net.Conn, error) {
	select {
	case c := <-rv:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("loopback: waiting for the receiver: %w", ctx.Err())
	}
}

// errStranger marks a peer the receiver refused (it failed to
// authenticate, or named another migration): Open waits on for its own.
var errStranger = errors.New("loopback: refused a peer")

// connectSend dials, authenticates and exchanges HELLOs as the sender.
func (t *Transport) connectSend(ctx context.Context, req transport.OpenRequest, cfg *tls.Config, o options) (net.Conn, error) {
	c, err := t.dial(ctx, o)
	if err != nil {
		return nil, err
	}
	sc, err := authenticate(ctx, c, req, cfg, o.helloTimeout)
	if err != nil {
		return nil, err
	}
	if err := handshake(ctx, sc, req, o.helloTimeout); err != nil {
		c.Close() // not sc: its close_notify could wait for a peer that does not read
		return nil, err
	}
	return sc, nil
}

// connectReceive waits for the sender: it takes connections one after
// the other until one authenticates and names this Open's migration
// (transport.Transport, "Migration tag"); a stranger is closed and
// told nothing beyond the refusal. Any other failure of an
// authenticated peer (another layout, a broken HELLO) ends Open.
func (t *Transport) connectReceive(ctx context.Context, req transport.OpenRequest, cfg *tls.Config, o options) (net.Conn, error) {
	ln, err := t.listen(o)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return nil, err
		}
		sc, err := authenticate(ctx, c, req, cfg, o.helloTimeout)
		if err == nil {
			if err = handshake(ctx, sc, req, o.helloTimeout); err == nil {
				return sc, nil
			}
			c.Close() // not sc: its close_notify could wait for a peer that does not read
		}
		if ctx.Err() != nil || !errors.Is(err, errStranger) && !errors.Is(err, transport.ErrUnauthenticated) {
			return nil, err
		}
	}
}

// authenticate runs transport.Secure on c within helloTimeout and ctx:
// nothing from the peer is parsed before its certificate checked out.
// It closes c on failure.
func authenticate(ctx context.Context, c net.Conn, req transport.OpenRequest, cfg *tls.Config, helloTimeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	sc, err := transport.Secure(ctx, c, req.Role, cfg, req.Credentials.Plaintext)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("loopback: %w", err)
	}
	return sc, nil
}

// handshake exchanges HELLOs (the sender speaks first, so it works on a
// synchronous net.Pipe too) within helloTimeout and ctx.
func handshake(ctx context.Context, c net.Conn, req transport.OpenRequest, helloTimeout time.Duration) error {
	deadline := time.Now().Add(helloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err := exchange(c, req)
	if !stop() || ctx.Err() != nil {
		return fmt.Errorf("loopback: handshake: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("loopback: handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	return nil
}

// exchange: the sender says HELLO and reads the receiver's HELLO or
// REFUSE; the receiver reads HELLO, refuses a peer of another
// migration before it looks at anything else the peer said, and answers
// with its own HELLO, naming the tag it took.
func exchange(c net.Conn, req transport.OpenRequest) error {
	mine := hello{role: req.Role, tag: req.Tag}
	for _, r := range req.RAM {
		mine.regions = append(mine.regions, [2]uint64{r.GPA, r.Size})
	}
	if req.Role == transport.RoleSend {
		if _, err := c.Write(appendHello(nil, mine)); err != nil {
			return err
		}
	}
	typ, body, err := readFrame(c, make([]byte, maxBody)) // unbuffered: frames may follow
	if err != nil {
		return err
	}
	if typ == frameRefuse && req.Role == transport.RoleSend {
		return fmt.Errorf("%w: the receiver refused the session (tag %x)", transport.ErrWrongMigration, req.Tag[:4])
	}
	peer, err := parseHello(typ, body)
	if err != nil {
		return err
	}
	if req.Role == transport.RoleReceive {
		if !req.Tag.IsZero() && peer.tag != req.Tag {
			c.SetWriteDeadline(time.Now().Add(refuseTimeout))
			c.Write(finish(appendHeader(nil, frameRefuse)))
			return fmt.Errorf("%w: it names another migration (tag %x, this one waits for %x)", errStranger, peer.tag[:4], req.Tag[:4])
		}
		mine.tag = peer.tag
		if _, err := c.Write(appendHello(nil, mine)); err != nil {
			return err
		}
	} else if peer.tag != req.Tag {
		return fmt.Errorf("%w: the receiver answered for tag %x, not this session's %x", transport.ErrProtocol, peer.tag[:4], req.Tag[:4])
	}
	return checkPeer(mine, peer)
}

// checkPeer compares the peer's HELLO with this side's.
func checkPeer(mine, peer hello) error {
	if peer.role == mine.role {
		return fmt.Errorf("%w: both ends opened with role %v", transport.ErrBadConfig, mine.role)
	}
	if len(peer.regions) != len(mine.regions) {
		return fmt.Errorf("%w: %d RAM regions here, %d on the other side", transport.ErrBadConfig, len(mine.regions), len(peer.regions))
	}
	for i := range mine.regions {
		if mine.regions[i] != peer.regions[i] {
			return fmt.Errorf("%w: RAM region %d is %#x+%#x here, %#x+%#x on the other side", transport.ErrBadConfig,
				i, mine.regions[i][0], mine.regions[i][1], peer.regions[i][0], peer.regions[i][1])
		}
	}
	return nil
}
