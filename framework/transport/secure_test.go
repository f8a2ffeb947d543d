package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dial, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-got
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

type secured struct {
	c   net.Conn
	err error
}

// secure runs both sides of Secure at once.
func secure(t *testing.T, src, dst Credentials) (send, recv secured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, a := tcpPair(t)
	cfg := func(c Credentials, r Role) *tls.Config {
		cfg, err := c.TLSConfig(r)
		if err != nil {
			t.Fatalf("TLSConfig(%v): %v", r, err)
		}
		return cfg
	}
	rc := make(chan secured, 1)
	go func() {
		c, err := Secure(ctx, a, RoleReceive, cfg(dst, RoleReceive), dst.Plaintext)
		if err != nil {
			a.Close() // as a transport would: the source's wait ends too
		}
		rc <- secured{c, err}
	}()
	c, err := Secure(ctx, d, RoleSend, cfg(src, RoleSend), src.Plaintext)
	return secured{c, err}, <-rc
}

func TestSecureMinted(t *testing.T) {
	for _, plain := range []bool{false, true} {
		src, dst, err := MintCredentials(plain)
		if err != nil {
			t.Fatal(err)
		}
		s, r := secure(t, src, dst)
		if s.err != nil || r.err != nil {
			t.Fatalf("plaintext=%v: send %v, receive %v", plain, s.err, r.err)
		}
		if _, isTLS := s.c.(*tls.Conn); isTLS == plain {
			t.Errorf("plaintext=%v: the source got a %T", plain, s.c)
		}
		// Raw or not, bytes sent right after Secure arrive whole, both ways.
		msg := []byte("first frame after the handshake")
		go s.c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(r.c, got); err != nil || string(got) != string(msg) {
			t.Errorf("plaintext=%v: destination read %q, %v", plain, got, err)
		}
		go r.c.Write(msg)
		if _, err := io.ReadFull(s.c, got); err != nil || string(got) != string(msg) {
			t.Errorf("plaintext=%v: source read %q, %v", plain, got, err)
		}
	}
}

func TestSecureStranger(t *testing.T) {
	src, dst, _ := MintCredentials(false)
	other, otherDst, _ := MintCredentials(false) // another job's
	otherDst.PeerRoots = dst.PeerRoots           // trusts our source, but our source does not pin it
	for name, c := range map[string]struct{ src, dst Credentials }{
		"stranger source":      {other, dst},
		"stranger destination": {src, otherDst},
	} {
		s, r := secure(t, c.src, c.dst)
		if !errors.Is(s.err, ErrUnauthenticated) || !errors.Is(r.err, ErrUnauthenticated) {
			t.Errorf("%s: send %v, receive %v; want ErrUnauthenticated on both", name, s.err, r.err)
		}
	}
}

func TestCredentialsUnusable(t *testing.T) {
	src, _, _ := MintCredentials(false)
	for name, c := range map[string]Credentials{
		"none":           {},
		"no key":         {Certificate: src.Certificate, PeerRoots: src.PeerRoots},
		"no roots":       {Certificate: src.Certificate, Key: src.Key},
		"junk roots":     {Certificate: src.Certificate, Key: src.Key, PeerRoots: []byte("junk")},
		"foreign key":    {Certificate: src.Certificate, Key: src.PeerRoots, PeerRoots: src.PeerRoots},
		"nothing to pin": {Certificate: src.Certificate, Key: src.Key, PeerRoots: []byte("junk"), PinPeer: true},
	} {
		if _, err := c.TLSConfig(RoleSend); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: TLSConfig = %v; want ErrBadConfig", name, err)
		}
	}
}

// TestSecureGoAheadVersion: a destination whose go-ahead is not this
// version's (docs/ARCHITECTURE.md#versions: it changes only with the
// transport API) is refused by the source, naming both.
func TestSecureGoAheadVersion(t *testing.T) {
	src, dst, err := MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, a := tcpPair(t)
	dcfg, err := dst.TLSConfig(RoleReceive)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := src.TLSConfig(RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	other := []byte("FERRY-GO-AHEAD/1") // transport API 2's
	go func() {
		tc := tls.Server(a, dcfg)
		if tc.HandshakeContext(ctx) == nil {
			tc.Write(other)
		}
	}()
	_, err = Secure(ctx, d, RoleSend, scfg, false)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", other)) || !strings.Contains(err.Error(), fmt.Sprintf("%q", goAhead)) {
		t.Fatalf("Secure = %v, want a refusal naming %q and %q", err, other, goAhead)
	}
}
