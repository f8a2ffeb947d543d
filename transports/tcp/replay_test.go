//go:build linux

package tcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// recorder is a TCP proxy on the path between a source and its
// destination that keeps every byte the source sent, per connection.
type recorder struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	sent []*bytes.Buffer // what each accepted connection carried towards the destination
	wg   sync.WaitGroup
}

func newRecorder(t *testing.T, to string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, to: to}
	r.wg.Go(r.run)
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *recorder) run() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		var d net.Conn
		for range 100 { // the destination may not listen yet
			if d, err = net.Dial("tcp", r.to); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			c.Close()
			continue
		}
		buf := &bytes.Buffer{}
		r.mu.Lock()
		r.sent = append(r.sent, buf)
		r.mu.Unlock()
		r.wg.Go(func() {
			io.Copy(io.MultiWriter(d, lockedWriter{&r.mu, buf}), c)
			d.(*net.TCPConn).CloseWrite()
		})
		r.wg.Go(func() {
			io.Copy(c, d)
			c.(*net.TCPConn).CloseWrite()
		})
	}
}

// streams returns what each recorded connection carried.
func (r *recorder) streams() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, b := range r.sent {
		out = append(out, bytes.Clone(b.Bytes()))
	}
	return out
}

// TestReplayRefused: someone on the path records a whole session of the
// job's real source (handshakes, HELLOs, pages, a message, Flush, BYE)
// and replays it, connection by connection, to the job's destination
// started again at another address with the same credentials (a
// restarted destination, or the same one's next Open in post-copy). The
// replay never authenticates: TLS 1.3 binds each handshake to the
// destination's fresh random, so the recorded Finished no longer
// verifies, with encryption or without it (encryption = false still
// authenticates every handshake). The destination writes nothing into
// guest RAM, reads no frame, and takes the real source afterwards.
func TestReplayRefused(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "encrypted", true: "plaintext"}[plain], func(t *testing.T) {
			src, dst := newVM(t, testLayout), newVM(t, testLayout)
			fillCompressible(src.mem[0], 1)
			addr := freeAddr(t)
			rec := newRecorder(t, addr)
			c := cfg(addr, 2, "lz4")
			send, recv := New(testLogger(t)), New(testLogger(t))
			defer send.Close()
			defer recv.Close()
			ctx := ctxT(t)
			sreq, rreq := src.request(transport.RoleSend, cfg(rec.ln.Addr().String(), 2, "lz4")), dst.request(transport.RoleReceive, c)
			sreq.Credentials.Plaintext, rreq.Credentials.Plaintext = plain, plain
			done := make(chan error, 1)
			go func() { done <- recv.Open(ctx, rreq) }()
			if err := send.Open(ctx, sreq); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			pages := []transport.PageRun{{First: 0, Count: 256, Kind: transport.KindData}, {First: 300, Count: 20, Kind: transport.KindZero}}
			if err := send.SendPages(ctx, pages); err != nil {
				t.Fatal(err)
			}
			if err := send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := send.SendMessage(ctx, transport.Message{Kind: 5, Payload: []byte("COMMIT")}); err != nil {
				t.Fatal(err)
			}
			if m, err := recv.RecvMessage(ctx); err != nil || string(m.Payload) != "COMMIT" {
				t.Fatalf("the recorded session: %q %v", m.Payload, err)
			}
			send.Close()
			recv.Close()
			recorded := rec.streams()
			if len(recorded) != 3 || len(recorded[0])+len(recorded[1]) < 256*pageSize/4 {
				t.Fatalf("recorded %d connections", len(recorded))
			}

			// The replay, against the job's destination started again.
			again := newVM(t, testLayout)
			addr2 := freeAddr(t)
			var mu sync.Mutex
			var logs strings.Builder
			log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: lockedWriter{&mu, &logs}})
			recv2 := New(log)
			defer recv2.Close()
			rreq2 := again.request(transport.RoleReceive, cfg(addr2, 2, "lz4"))
			rreq2.Credentials.Plaintext = plain
			done2 := make(chan error, 1)
			go func() { done2 <- recv2.Open(ctx, rreq2) }()
			var replays sync.WaitGroup
			for _, b := range recorded {
				conn := dialUntil(t, addr2)
				defer conn.Close()
				replays.Go(func() {
					conn.Write(b)
					conn.(*net.TCPConn).CloseWrite()
					got := answer(conn)
					if bytes.Contains(got, []byte("FERRY-GO-AHEAD")) || bytes.Contains(got, []byte("FRYW")) {
						t.Errorf("the replay was answered in the clear: %q", got)
					}
				})
			}
			replays.Wait()
			select {
			case err := <-done2:
				t.Fatalf("the destination's Open returned for a replayed session: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			for i, m := range again.mem {
				if !bytes.Equal(m, make([]byte, len(m))) {
					t.Fatalf("the replay wrote into guest RAM (region %d)", i)
				}
			}
			mu.Lock()
			refused := strings.Count(logs.String(), "did not authenticate")
			mu.Unlock()
			if refused != 1 {
				t.Errorf("refusals logged %d times, want once (per host):\n%s", refused, logs.String())
			}
			// The job's real source still gets in.
			send2 := New(testLogger(t))
			defer send2.Close()
			sreq2 := src.request(transport.RoleSend, cfg(addr2, 2, "lz4"))
			sreq2.Credentials.Plaintext = plain
			if err := send2.Open(ctx, sreq2); err != nil {
				t.Fatalf("the real source after the replay: %v", err)
			}
			if err := <-done2; err != nil {
				t.Fatalf("the destination after the replay: %v", err)
			}
			if err := send2.SendPages(ctx, pages[:1]); err != nil {
				t.Fatal(err)
			}
			if err := send2.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.mem[0][:256*pageSize], src.mem[0][:256*pageSize]) {
				t.Error("the real source's pages did not arrive")
			}
		})
	}
}

// TestSecondConnectionDuringSession: while a session runs, a stranger
// and a peer holding the job's credentials each open connections to the
// destination's port; the peer says HELLO for the running session's own
// id, as an extra stream and as its urgent stream (a hijack), and the
// stranger sends junk. Neither is answered or read; the running session
// goes on, page-exact, and neither can end it.
func TestSecondConnectionDuringSession(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	fillCompressible(src.mem[0], 3)
	addr := freeAddr(t)
	send, recv := openPair(t, src, dst, cfg(addr, 2, "lz4"))
	ctx := ctxT(t)
	id := recv.openSession().id
	var wg sync.WaitGroup
	for i, h := range []struct {
		stream, streams uint16
		urgent          bool
	}{{2, 3, false}, {0, 2, true}, {0, 2, false}} {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return // nothing listens between Opens: refused is fine too
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Second))
			if i == 2 {
				c.Write(junk(4096, 5))
			} else if sc, err := secureWithin(c, transport.RoleSend); err == nil {
				b, _ := wire.AppendHello(nil, wire.Hello{Session: id, Stream: h.stream, Streams: h.streams, Urgent: h.urgent,
					PageSize: pageSize, RAM: wireLayout(dst.ram)})
				sc.Write(b)
				t.Errorf("connection %d authenticated while the session ran", i)
			}
			if got, _ := io.ReadAll(c); len(got) != 0 {
				t.Errorf("connection %d was answered: %q", i, got)
			}
		})
	}
	pages := []transport.PageRun{{First: 0, Count: 300, Kind: transport.KindData}}
	if err := send.SendPages(ctx, pages); err != nil {
		t.Fatal(err)
	}
	if err := send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := send.SendMessage(ctx, transport.Message{Kind: 7, Payload: []byte("still ours")}); err != nil {
		t.Fatal(err)
	}
	if m, err := recv.RecvMessage(ctx); err != nil || string(m.Payload) != "still ours" {
		t.Fatalf("the session after the intruders: %q %v", m.Payload, err)
	}
	if !bytes.Equal(dst.mem[0][:300*pageSize], src.mem[0][:300*pageSize]) {
		t.Error("pages differ")
	}
}

// secureWithin authenticates c as role with the job's credentials
// within a second, or fails.
func secureWithin(c net.Conn, role transport.Role) (net.Conn, error) {
	cfg, err := creds(role).TLSConfig(role)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return transport.Secure(ctx, c, role, cfg, false)
}

// TestPlaintextMismatchRefused: encryption = false is not negotiated on
// the wire (each side takes it from its own job), so nobody on the path
// can talk one side into it; sides that disagree (one in the clear, one
// in TLS) never open a session, and no page reaches guest RAM.
func TestPlaintextMismatchRefused(t *testing.T) {
	for _, plainSender := range []bool{true, false} {
		t.Run(map[bool]string{true: "sender in the clear", false: "receiver in the clear"}[plainSender], func(t *testing.T) {
			src, dst := newVM(t, testLayout), newVM(t, testLayout)
			fillCompressible(src.mem[0], 4)
			addr := freeAddr(t)
			c := cfg(addr, 2, "lz4")
			c["connect_timeout"] = int64(2 * time.Second)
			send, recv := New(testLogger(t)), New(testLogger(t))
			defer send.Close()
			defer recv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			sreq, rreq := src.request(transport.RoleSend, c), dst.request(transport.RoleReceive, c)
			sreq.Credentials.Plaintext, rreq.Credentials.Plaintext = plainSender, !plainSender
			done := make(chan error, 1)
			go func() { done <- recv.Open(ctx, rreq) }()
			serr := send.Open(ctx, sreq)
			if serr == nil {
				send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 64, Kind: transport.KindData}})
				send.Flush(ctx)
			}
			rerr := <-done
			if serr == nil && rerr == nil {
				t.Fatal("a session opened with one side in the clear and the other in TLS")
			}
			t.Logf("sender: %v; receiver: %v", serr, rerr)
			if serr != nil && !errors.Is(serr, context.DeadlineExceeded) && !strings.Contains(serr.Error(), "encryption = false") {
				t.Errorf("the sender's error does not name the likely cause (encryption set on one side only): %v", serr)
			}
			// The destination refuses the source as it would a stranger
			// and waits on; when its wait ends it says why no source came.
			if rerr != nil && !strings.Contains(rerr.Error(), "encryption = false") {
				t.Errorf("the receiver's error does not name the likely cause (encryption set on one side only): %v", rerr)
			}
			for i, m := range dst.mem {
				if !bytes.Equal(m, make([]byte, len(m))) {
					t.Fatalf("guest RAM region %d was written", i)
				}
			}
		})
	}
}
