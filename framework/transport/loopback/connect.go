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

// connectSocket listens on (receive) or dials (send) the unix socket.
// The listener accepts one connection and removes the socket file. The
// sender dials again while the socket is not there or refuses, until
// ctx ends or dialPatience passed.
func connectSocket(ctx context.Context, role transport.Role, o options) (net.Conn, error) {
	if role == transport.RoleSend {
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
	ln, err := net.Listen("unix", o.socket)
	if err != nil {
		return nil, fmt.Errorf("loopback: listen: %w", err)
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("loopback: waiting for the sender: %w", ctx.Err())
		}
		return nil, fmt.Errorf("loopback: accept: %w", err)
	}
	return c, nil
}

// connectPipe meets the other transport of a NewPipe pair on rv.
func connectPipe(ctx context.Context, rv chan net.Conn, role transport.Role) (net.Conn, error) {
	if role == transport.RoleSend {
		select {
		case c := <-rv:
			return c, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("loopback: waiting for the receiver: %w", ctx.Err())
		}
	}
	a, b := net.Pipe()
	select {
	case rv <- b:
		return a, nil
	case <-ctx.Done():
		a.Close()
		b.Close()
		return nil, fmt.Errorf("loopback: waiting for the sender: %w", ctx.Err())
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
func handshake(ctx context.Context, c net.Conn, role transport.Role, ram []transport.RAMRegion, helloTimeout time.Duration) error {
	deadline := time.Now().Add(helloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err := exchange(c, role, ram)
	if !stop() || ctx.Err() != nil {
		return fmt.Errorf("loopback: handshake: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("loopback: handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	return nil
}

func exchange(c net.Conn, role transport.Role, ram []transport.RAMRegion) error {
	mine := hello{role: role}
	for _, r := range ram {
		mine.regions = append(mine.regions, [2]uint64{r.GPA, r.Size})
	}
	if role == transport.RoleSend {
		if _, err := c.Write(appendHello(nil, mine)); err != nil {
			return err
		}
	}
	typ, body, err := readFrame(c, make([]byte, maxBody)) // unbuffered: frames may follow
	if err != nil {
		return err
	}
	peer, err := parseHello(typ, body)
	if err != nil {
		return err
	}
	if role == transport.RoleReceive {
		if _, err := c.Write(appendHello(nil, mine)); err != nil {
			return err
		}
	}
	if peer.role == role {
		return fmt.Errorf("%w: both ends opened with role %v", transport.ErrBadConfig, role)
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
