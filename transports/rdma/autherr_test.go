package rdma_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestSourceAuthErrors: the source's Open says why its authentication
// failed, as far as it can tell. A destination that drops the connection
// during the handshake (one whose Open ended, or with too many
// connections at once; before the gate, also one busy with a dead try
// of the source's, README "The source's next try during a setup") is
// not said to have refused the job's credentials, as it was before; one
// that refuses them, and one whose certificate the source refuses, are.
// The class stays transport.ErrUnauthenticated.
func TestSourceAuthErrors(t *testing.T) {
	provider := providers(t)[0]
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	other, otherRecv, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	other.PeerRoots = sc.PeerRoots     // it takes our destination, which refuses it (its TLS alert)
	otherRecv.PeerRoots = sc.PeerRoots // it takes our source; our source does not take it
	const refused, dropped = "refused this job's credentials", "closed the connection during authentication"
	for _, c := range []struct {
		name       string
		send, recv transport.Credentials // recv: zero for a server that drops every connection
		want, not  string
	}{
		{"dropped", sc, transport.Credentials{}, dropped, refused},
		{"stranger source", other, rc, refused, dropped},
		{"stranger destination", sc, otherRecv, refused, dropped},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := openAgainst(t, provider, c.send, c.recv)
			t.Logf("the source's Open: %v", err)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), c.not) {
				t.Fatalf("the source's Open = %v; want an error saying %q", err, c.want)
			}
			if !errors.Is(err, transport.ErrUnauthenticated) {
				t.Fatalf("the source's Open = %v; want class ErrUnauthenticated", err)
			}
		})
	}
}

// openAgainst opens a source with send against a destination with recv
// (a real rdma receiver), or, with zero recv, against a listener that
// accepts each connection and closes it at once, and returns the
// source's error.
func openAgainst(t *testing.T, provider string, send, recv transport.Credentials) error {
	sf, _ := memfd(t, "send", 1<<20)
	df, _ := memfd(t, "recv", 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	cfg := config(t, provider)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	if recv.Empty() {
		ln, err := net.Listen("tcp", cfg["listen"].(string))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { ln.Close(); <-done }()
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	} else {
		r := rdma.New(nil)
		defer r.Close()
		defer func() { cancel(); <-done }()
		go func() {
			defer close(done)
			r.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: recv})
		}()
	}
	s := rdma.New(nil)
	defer s.Close()
	return s.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: send})
}
