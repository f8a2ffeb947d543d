package rdma_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
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
//   - a source of setup version 5 (before PROGRESS named only pages
//     RUNS named), 4 (before PROGRESS), 3 (before READY) or 2 (before
//     transport API 8) at this destination is answered
//     with a frame of this version, which that source's reader refuses
//     naming both versions, instead of a closed connection it could
//     only report as EOF; the destination waits on, and its Open's
//     error, when its context ends, names the refusal;
//   - this source at a destination of version 5, 4 or 3, which answers a
//     HELLO of another version with a REFUSE of its own, names both
//     versions;
//   - this source at a destination that closes after its HELLO without
//     a word, as a version-2 destination does, says that this may be
//     another setup version.
func TestSetupVersionAnswered(t *testing.T) {
	p := providers(t)[0]
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, _ := transport.MintCredentials(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	layout1M := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 1), 0), 1<<20)
	for _, old := range []struct {
		version uint16
		hello   []byte
	}{
		{5, append(append([]byte(nil), make([]byte, 16)...), layout1M...)}, // tag, layout
		{4, append(append([]byte(nil), make([]byte, 16)...), layout1M...)},
		{3, append(append([]byte(nil), make([]byte, 16)...), layout1M...)},
		{2, layout1M}, // the layout alone
	} {
		t.Run(fmt.Sprintf("version %d source", old.version), func(t *testing.T) {
			pr := startPair(t, p, nil, transport.Tag{})
			c := dialTLS(ctx, t, pr.cfg["listen"].(string), pr.sc)
			defer c.Close()
			if _, err := c.Write(setupFrame(old.version, 1, old.hello)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var h [12]byte
			if _, err := io.ReadFull(c, h[:]); err != nil {
				t.Fatalf("the destination answered a version-%d HELLO with %v; want a frame of its own version", old.version, err)
			}
			if string(h[:4]) != "FRDM" || binary.BigEndian.Uint16(h[4:]) != 6 {
				t.Fatalf("answer header %x; want magic FRDM and version 6, which a version-%d reader refuses naming both", h, old.version)
			}
			reason := make([]byte, binary.BigEndian.Uint32(h[8:]))
			if _, err := io.ReadFull(c, reason); err != nil || !bytes.Contains(reason, fmt.Appendf(nil, "setup version %d", old.version)) {
				t.Errorf("answer %q (%v); want it to name the source's version", reason, err)
			}
			// The destination waits on for a source of its own version;
			// when its Open ends, it says why none came.
			pr.cancel()
			want := fmt.Sprintf("setup version %d, this side speaks 6", old.version)
			if err := pr.received(); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("the destination's Open: %v; want it to say %q", err, want)
			} else {
				t.Logf("the destination's Open: %v", err)
			}
		})
	}

	// An older destination: after TLS it reads the header of this
	// source's HELLO and either closes (version 2) or answers with a
	// REFUSE of its own version, 3, 4 or 5, naming both.
	for _, answer := range []uint16{0, 3, 4, 5} {
		name := "version 2 destination"
		if answer != 0 {
			name = fmt.Sprintf("version %d destination", answer)
		}
		t.Run(name, func(t *testing.T) {
			sf, _ := memfd(t, "send", 1<<20)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
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
				if answer != 0 {
					sc.Write(setupFrame(answer, 4, fmt.Appendf(nil, "setup version %d, this side speaks %d", binary.BigEndian.Uint16(h[4:]), answer)))
				}
			}()
			cfg := config(t, p)
			cfg["listen"] = ln.Addr().String()
			send := rdma.New(nil)
			defer send.Close()
			err = send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf},
				Credentials: sc, Tag: transport.Tag{1}})
			want := "setup version"
			if answer != 0 {
				want = fmt.Sprintf("setup version %d, this side speaks 6", answer)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Open at a %s: %v; want it to say %q", name, err, want)
			}
			t.Logf("the source's Open: %v", err)
		})
	}
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
