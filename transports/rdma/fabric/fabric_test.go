//go:build linux && cgo && !nolibfabric

package fabric

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// softProviders are the providers that run without RDMA hardware.
var softProviders = []string{"tcp", "sockets", "net"}

func mapping(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// pair connects two endpoints of prov on loopback; the listener's side
// registers dst for remote writes and posts one receive into msg.
func pair(t *testing.T, prov string, dst, msg []byte) (src, target *Endpoint, dmr, mmr *MR) {
	t.Helper()
	l, err := Listen(prov, "127.0.0.1")
	if err != nil {
		t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
	}
	defer l.Close()
	port, err := l.Port()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		e   *Endpoint
		err error
	}
	acc := make(chan res, 1)
	go func() {
		e, err := l.Accept(ctx, func(p []byte) bool { return bytes.Equal(p, []byte("nonce")) }, func(e *Endpoint) error {
			var err error
			if dmr, err = e.Register(dst, AccessRemoteWrite, 0x1234); err != nil {
				return err
			}
			if mmr, err = e.Register(msg, AccessRecv, 0x1235); err != nil {
				return err
			}
			return e.Recv(msg, mmr, 7)
		})
		acc <- res{e, err}
	}()
	// A stranger with the wrong parameter is refused; the listener goes on.
	if e, err := Connect(ctx, prov, "127.0.0.1", port, []byte("wrong")); err == nil {
		e.Close()
		t.Error("a connection with the wrong parameter was accepted")
	}
	src, err = Connect(ctx, prov, "127.0.0.1", port, []byte("nonce"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { src.Close(); r.e.Close() })
	return src, r.e, dmr, mmr
}

// wait polls every endpoint until each completion in want has been seen
// (software providers make progress only while their side polls); the
// first failed operation ends it.
func wait(t *testing.T, eps []*Endpoint, want ...uint64) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	seen := map[uint64]bool{}
	var cs [8]Completion
	for time.Now().Before(deadline) {
		for _, e := range eps {
			n, err := e.Poll(cs[:], time.Millisecond)
			if err != nil {
				return err
			}
			for _, c := range cs[:n] {
				seen[c.Ctx] = true
			}
		}
		all := true
		for _, w := range want {
			all = all && seen[w]
		}
		if all {
			return nil
		}
	}
	t.Fatalf("completions %v not all seen within 10s (seen %v)", want, seen)
	return nil
}

// TestWriteThenSend writes 4 MiB into the peer's registration and then
// sends a message: once the message arrives, the write is visible.
func TestWriteThenSend(t *testing.T) {
	for _, prov := range softProviders {
		t.Run(prov, func(t *testing.T) {
			const size = 4 << 20
			dst, msg := mapping(t, size), mapping(t, 4096)
			src, target, dmr, _ := pair(t, prov, dst, msg)
			c := src.Caps()
			t.Logf("%s: domain %s mr_mode %#x SAW %v delivery-complete %v tx %d rx %d key %d bytes",
				c.Provider, c.Domain, c.MRMode, c.SAW, c.DeliveryComplete, c.TxSize, c.RxSize, c.KeySize)
			buf := mapping(t, size+4096)
			for i := range buf {
				buf[i] = byte(i*7 + 3)
			}
			smr, err := src.Register(buf, AccessWrite|AccessSend, 0x99)
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < size; off += 1 << 20 {
				if err := src.Write(buf[off:off+1<<20], smr, dmr.Base(c.VirtAddr)+uint64(off), dmr.Key(), 1); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			copy(buf[size:], "commit")
			if err := src.Send(buf[size:size+6], smr, 2); err != nil {
				t.Fatalf("send: %v", err)
			}
			if err := wait(t, []*Endpoint{src, target}, 1, 2, 7); err != nil || string(msg[:6]) != "commit" {
				t.Fatalf("write, send and receive: %v %q", err, msg[:6])
			}
			if !bytes.Equal(dst, buf[:size]) {
				t.Fatal("the message arrived before the writes were visible")
			}
		})
	}
}

// TestBadWrite: a write with a wrong key, or past the end of the peer's
// registration, fails with an error and writes nothing.
func TestBadWrite(t *testing.T) {
	for _, prov := range softProviders {
		for _, c := range []struct {
			name     string
			off, key uint64
		}{{"wrong key", 0, 1}, {"past the end", 4096, 0}} {
			t.Run(prov+"/"+c.name, func(t *testing.T) {
				dst, msg := mapping(t, 8192), mapping(t, 4096)
				src, target, dmr, _ := pair(t, prov, dst, msg)
				buf := mapping(t, 8192)
				for i := range buf {
					buf[i] = 0xAB
				}
				smr, err := src.Register(buf, AccessWrite, 0x77)
				if err != nil {
					t.Fatal(err)
				}
				key := dmr.Key() + c.key
				err = src.Write(buf, smr, dmr.Base(src.Caps().VirtAddr)+c.off, key, 3)
				if err == nil {
					err = wait(t, []*Endpoint{src, target}, 3)
				}
				var op *OpError
				if err == nil {
					t.Fatal("the bad write succeeded")
				}
				t.Logf("refused: %v (OpError: %v)", err, errors.As(err, &op))
				if bytes.Contains(dst, []byte{0xAB}) {
					t.Fatal("the bad write reached the peer's memory")
				}
			})
		}
	}
}

// TestSharedDomain: two connections whose endpoints share one domain at
// each end (ListenShared, ConnectShared) use memory registered once per
// side: the source writes from one registration through both endpoints
// into the one registration of the target, each endpoint's message sees
// its writes, and the registrations outlive the first endpoint closed.
func TestSharedDomain(t *testing.T) {
	for _, prov := range softProviders {
		t.Run(prov, func(t *testing.T) {
			const size = 2 << 20
			dst, msg := mapping(t, size), mapping(t, 8192)
			l, err := Listen(prov, "127.0.0.1")
			if err != nil {
				t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
			}
			defer l.Close()
			ul, err := ListenShared(l, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer ul.Close()
			port, _ := l.Port()
			uport, _ := ul.Port()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var dmr, mmr *MR
			type res struct {
				e, ue *Endpoint
				err   error
			}
			acc := make(chan res, 1)
			go func() {
				var r res
				accept := func([]byte) bool { return true }
				r.e, r.err = l.Accept(ctx, accept, func(e *Endpoint) error {
					var err error
					if dmr, err = e.Register(dst, AccessRemoteWrite, 0x1234); err != nil {
						return err
					}
					if mmr, err = e.Register(msg, AccessRecv, 0x1235); err != nil {
						return err
					}
					return e.Recv(msg[:4096], mmr, 7)
				})
				if r.err == nil { // the urgent side registers nothing: dst and msg serve it too
					r.ue, r.err = ul.Accept(ctx, accept, func(e *Endpoint) error { return e.Recv(msg[4096:], mmr, 8) })
				}
				acc <- r
			}()
			src, err := Connect(ctx, prov, "127.0.0.1", port, []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			usrc, err := ConnectShared(ctx, src, "127.0.0.1", uport, []byte("b"))
			if err != nil {
				t.Fatal(err)
			}
			r := <-acc
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.ue.Close()
			defer usrc.Close()
			buf := mapping(t, size+4096)
			for i := range buf {
				buf[i] = byte(i*5 + 1)
			}
			smr, err := src.Register(buf, AccessWrite|AccessSend, 0x99)
			if err != nil {
				t.Fatal(err)
			}
			base := dmr.Base(src.Caps().VirtAddr)
			half := size / 2
			copy(buf[size:], "bulk")
			copy(buf[size+8:], "urgent")
			if err := src.Write(buf[:half], smr, base, dmr.Key(), 1); err != nil {
				t.Fatal(err)
			}
			if err := usrc.Write(buf[half:size], smr, base+uint64(half), dmr.Key(), 1); err != nil {
				t.Fatal(err)
			}
			if err := src.Send(buf[size:size+4], smr, 2); err != nil {
				t.Fatal(err)
			}
			if err := usrc.Send(buf[size+8:size+14], smr, 3); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, []*Endpoint{src, usrc, r.e, r.ue}, 2, 3, 7, 8); err != nil {
				t.Fatal(err)
			}
			if string(msg[:4]) != "bulk" || string(msg[4096:4102]) != "urgent" || !bytes.Equal(dst, buf[:size]) {
				t.Fatalf("messages %q %q, data equal %v", msg[:4], msg[4096:4102], bytes.Equal(dst, buf[:size]))
			}
			// The first endpoints go; the registrations stay for the others.
			src.Close()
			r.e.Close()
			clear(dst)
			if err := r.ue.Recv(msg[4096:], mmr, 9); err != nil {
				t.Fatal(err)
			}
			if err := usrc.Write(buf[:size], smr, base, dmr.Key(), 4); err != nil {
				t.Fatal(err)
			}
			if err := usrc.Send(buf[size+8:size+14], smr, 5); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, []*Endpoint{usrc, r.ue}, 4, 5, 9); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, buf[:size]) {
				t.Fatal("a write after the first endpoints closed did not land")
			}
		})
	}
}
