package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// goAhead is what the destination sends, inside TLS, once its handshake
// has finished; the source sends nothing of its own before reading it.
// Its number changes only together with APIVersion
// (docs/ARCHITECTURE.md#versions): "/1" was transport API 2, "/2" is API 3
// to 8 (API 3's sessions add an urgent stream a version-2 peer would
// never open; API 8's migration tag travels in each transport's own
// versioned hello, whose rule handles the previous one).
var goAhead = []byte("FERRY-GO-AHEAD/2")

// Secure authenticates the peer on c with a TLS 1.3 handshake (cfg from
// Credentials.TLSConfig; RoleReceive is the server) and returns the
// connection frames travel on: the TLS connection, or with plaintext c
// itself, which then protects nothing (anyone on the path can read and
// inject frames; see Credentials.Plaintext). Nothing from the peer is
// parsed before the handshake verified
// its certificate. ctx bounds the whole exchange; the deadline on c is
// cleared on success. On failure c is left open for the caller to close.
//
// The order makes the plaintext switch safe. A TLS connection reads
// ahead, so raw bytes that arrive right behind the handshake could be
// swallowed by it. The source's (client's) handshake ends after it sent
// its Finished, before the destination (server) has read it; if the
// source then sent raw frames, the destination's TLS could read them
// with the Finished. So the destination, once its handshake is done,
// sends goAhead inside TLS, and the source sends nothing before reading
// it. Session tickets are off, so goAhead is the last TLS record on
// either side and nothing raw sits in a TLS buffer. goAhead also tells
// the source that the destination accepted its certificate (TLS 1.3
// clients otherwise learn of a refusal only on their first read).
func Secure(ctx context.Context, c net.Conn, role Role, cfg *tls.Config, plaintext bool) (net.Conn, error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	var tc *tls.Conn
	if role == RoleReceive {
		tc = tls.Server(c, cfg)
	} else {
		tc = tls.Client(c, cfg)
	}
	err := exchangeGoAhead(ctx, tc, role)
	if !stop() || ctx.Err() != nil {
		return nil, fmt.Errorf("authenticate %s: %w", c.RemoteAddr(), ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate %s: %w: %w", c.RemoteAddr(), err, ErrUnauthenticated)
	}
	c.SetDeadline(time.Time{})
	if plaintext {
		return c, nil
	}
	return tc, nil
}

func exchangeGoAhead(ctx context.Context, tc *tls.Conn, role Role) error {
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	if v := tc.ConnectionState().Version; v != tls.VersionTLS13 {
		return fmt.Errorf("TLS version %#x, want 1.3", v)
	}
	if role == RoleReceive {
		_, err := tc.Write(goAhead)
		return err
	}
	got := make([]byte, len(goAhead))
	if _, err := io.ReadFull(tc, got); err != nil {
		return fmt.Errorf("waiting for the destination to accept us: %w", err)
	}
	if !bytes.Equal(got, goAhead) {
		return fmt.Errorf("the destination answered %q after the handshake, want %q: "+
			"both sides need transport plugins of API version %d (docs/ARCHITECTURE.md#versions)", got, goAhead, APIVersion)
	}
	return nil
}
