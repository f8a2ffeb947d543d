package rdma_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/netdial"
	"github.com/ferryvm/ferry/transports/rdma"
)

// setupFrame is a setup frame as any version writes it: magic, version,
// type, length, payload.
func setupFrame(version, typ uint16, payload []byte) []byte {
	b := append([]byte("FRDM"), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(b[4:], version)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint32(b[8:], uint32(len(payload)))
	return append(b, payload...)
}

// TestSetupVersionAnswered: setup frames must match exactly
// (docs/ARCHITECTURE.md#versions), and the user on either side of a
// mismatch is told so:
//   - a source of setup version 2 (a Ferry from before transport API 8)
//     at this destination is answered with a frame of this version,
//     which that source's reader refuses naming both versions, instead
//     of a closed connection it could only report as EOF;
//   - this source at a destination that closes after its HELLO without
//     a word, as a version-2 destination does, says that this may be
//     another setup version.
func TestSetupVersionAnswered(t *testing.T) {
	p := providers(t)[0]
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, _ := transport.MintCredentials(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("version 2 source", func(t *testing.T) {
		df, _ := memfd(t, "recv", 1<<20)
		cfg := config(t, p)
		recv := rdma.New(nil)
		defer recv.Close()
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- recv.Open(rctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout,
				Files: []*os.File{df}, Credentials: rc, Tag: transport.Tag{1}})
		}()
		defer func() { stop(); <-done }()
		c := dialTLS(ctx, t, cfg["listen"].(string), sc)
		defer c.Close()
		hello := binary.BigEndian.AppendUint32(nil, 1) // version 2's HELLO: the layout alone
		hello = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(hello, 0), 1<<20)
		if _, err := c.Write(setupFrame(2, 1, hello)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var h [12]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("the destination answered a version-2 HELLO with %v; want a frame of its own version", err)
		}
		if string(h[:4]) != "FRDM" || binary.BigEndian.Uint16(h[4:]) != 3 {
			t.Fatalf("answer header %x; want magic FRDM and version 3, which a version-2 reader refuses naming both", h)
		}
		reason := make([]byte, binary.BigEndian.Uint32(h[8:]))
		if _, err := io.ReadFull(c, reason); err != nil || !bytes.Contains(reason, []byte("setup version 2")) {
			t.Errorf("answer %q (%v); want it to name the source's version", reason, err)
		}
	})

	t.Run("version 2 destination", func(t *testing.T) {
		sf, _ := memfd(t, "send", 1<<20)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() { // reads the header, finds version 3, closes: what version 2 does
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			cfg, _ := rc.TLSConfig(transport.RoleReceive)
			sc, err := transport.Secure(ctx, c, transport.RoleReceive, cfg, false)
			if err != nil {
				return
			}
			var h [12]byte
			io.ReadFull(sc, h[:])
		}()
		cfg := config(t, p)
		cfg["listen"] = ln.Addr().String()
		send := rdma.New(nil)
		defer send.Close()
		err = send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf},
			Credentials: sc, Tag: transport.Tag{1}})
		if err == nil || !strings.Contains(err.Error(), "setup version") {
			t.Fatalf("Open at a destination that closed after HELLO: %v; want it to name a possible setup version mismatch", err)
		}
	})
}

// dialTLS connects to addr and authenticates as the job's source.
func dialTLS(ctx context.Context, t *testing.T, addr string, creds transport.Credentials) net.Conn {
	t.Helper()
	c, err := netdial.Retry(ctx, addr, 10*time.Second) // the destination listens a moment after Open starts
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := creds.TLSConfig(transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := transport.Secure(ctx, c, transport.RoleSend, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}
