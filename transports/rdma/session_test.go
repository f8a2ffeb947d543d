package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// memfd returns a sparse memfd of size bytes and its read-write mapping.
func memfd(t *testing.T, name string, size int64) (*os.File, []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m); f.Close() })
	return f, m
}

// session opens a pair over one region of size bytes at file offset off
// of sparse memfds of off+size bytes.
type session struct {
	send, recv *rdma.Transport
	src, dst   []byte // the regions' bytes on each side
}

func open(t *testing.T, provider string, off, size int64, send *rdma.Transport) *session {
	t.Helper()
	return openWith(t, provider, off, size, send, nil)
}

// openWith is open with a receiver of the caller's (nil: a new one).
func openWith(t *testing.T, provider string, off, size int64, send, recv *rdma.Transport) *session {
	t.Helper()
	return openCreds(t, provider, off, size, send, recv, true)
}

// openCreds is openWith over plaintext credentials or TLS.
func openCreds(t *testing.T, provider string, off, size int64, send, recv *rdma.Transport, plaintext bool) *session {
	t.Helper()
	sf, sm := memfd(t, "send", off+size)
	df, dm := memfd(t, "recv", off+size)
	layout := []transport.RAMRegion{{GPA: 0, Size: uint64(size), File: 0, Offset: uint64(off)}}
	sc, rc, err := transport.MintCredentials(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, provider)
	if send == nil {
		send = rdma.New(nil)
	}
	if recv == nil {
		recv = rdma.New(nil)
	}
	s := &session{send: send, recv: recv, src: sm[off:], dst: dm[off:]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = s.recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	// The source dials until the destination listens (netdial.Retry, within connect_timeout).
	serr := s.send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc})
	wg.Wait()
	if serr != nil || rerr != nil {
		t.Fatalf("open: send %v, receive %v", serr, rerr)
	}
	t.Cleanup(func() { s.send.Close(); s.recv.Close() })
	return s
}

func fillRandom(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// batches sends n batches of per random pages and reports how many were
// not completely visible at the destination when Flush returned.
func batches(t *testing.T, s *session, n int, per uint64) (bad int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pages := uint64(len(s.src) / 4096)
	for i := range n {
		first := uint64(i) * per % (pages - per)
		fillRandom(s.src[first*4096:(first+per)*4096], uint64(i))
		if err := s.send.SendPages(ctx, []transport.PageRun{{First: first, Count: per, Kind: transport.KindData}}); err != nil {
			t.Fatalf("batch %d: SendPages: %v", i, err)
		}
		if err := s.send.Flush(ctx); err != nil {
			t.Fatalf("batch %d: Flush: %v", i, err)
		}
		// Read the destination at once: every page of the batch must be there.
		if !bytes.Equal(s.dst[first*4096:(first+per)*4096], s.src[first*4096:(first+per)*4096]) {
			bad++
		}
	}
	return bad
}

// TestVisibleAtFlush: over many batches, every page of a batch is in the
// destination's RAM when Flush returns; the same check catches a sender
// that commits before its writes. Guest RAM is registered once per side.
func TestVisibleAtFlush(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 0, 64<<20, nil)
			if m := s.send.CompletionMode(); m != "send-after-write" {
				t.Errorf("the session commits by %s, want send-after-write (all software providers here have FI_ORDER_SAW)", m)
			}
			if !s.send.RegisteredOnce() {
				t.Error("the destination registered guest RAM more than once (bulk and urgent endpoint keys differ)")
			}
			if bad := batches(t, s, 64, 1024); bad != 0 { // 4 MiB a batch
				t.Fatalf("%d of 64 batches were not visible when Flush returned", bad)
			}
			early := rdma.New(nil)
			early.SetCommitEarly()
			s = open(t, p, 0, 64<<20, early)
			// Batches of 16 MiB: the broken sender's writes still move
			// when the ACK comes back (with 4 MiB, since the destination
			// populates pages ahead of the writes, they often do not).
			bad := batches(t, s, 32, 4096)
			t.Logf("commit before writes: %d of 32 batches caught incomplete at Flush", bad)
			if bad == 0 {
				t.Fatal("the check did not catch a sender that commits before its writes")
			}
		})
	}
}

// TestAbove4GiB moves pages of a region that lies above 4 GiB in a
// sparse memfd (file offset 5 GiB), and zero runs there.
func TestAbove4GiB(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 5<<30, 64<<20, nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fillRandom(s.src[:32<<20], 9)
			fillRandom(s.dst[32<<20:], 10) // to be zeroed
			runs := []transport.PageRun{{First: 0, Count: 8192, Kind: transport.KindData}, {First: 8192, Count: 8192, Kind: transport.KindZero}}
			if err := s.send.SendPages(ctx, runs); err != nil {
				t.Fatal(err)
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.dst, s.src) {
				t.Fatal("the destination differs above 4 GiB")
			}
		})
	}
}

// TestDropMidBatch: the destination goes away while a batch is being
// written; the sender's SendPages or Flush fails within its bound instead
// of hanging or reporting success.
func TestDropMidBatch(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 0, 256<<20, nil)
			fillRandom(s.src, 3)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The destination closes once the first batch's writes are
			// posted, while they move.
			posted := make(chan struct{})
			closed := make(chan struct{})
			go func() { <-posted; s.recv.Close(); close(closed) }()
			defer func() { <-closed }()
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				err = s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 65536, Kind: transport.KindData}})
				if i == 0 {
					close(posted)
				}
				if err == nil {
					err = s.send.Flush(ctx)
				}
			}
			if err == nil || ctx.Err() != nil {
				t.Fatalf("after the destination closed: %v (context: %v); want a session error", err, ctx.Err())
			}
			if !errors.Is(err, transport.ErrClosed) {
				t.Errorf("error %v does not wrap ErrClosed", err)
			}
			t.Logf("the sender saw: %v", err)
		})
	}
}

// TestWrongKeyOrOffset: writes with a key the destination did not give,
// or past the end of its registered RAM, fail the session with an error on
// both sides, and nothing lands in the destination's RAM.
func TestWrongKeyOrOffset(t *testing.T) {
	for _, p := range providers(t) {
		for _, c := range []struct {
			name      string
			key, base uint64
		}{{"key", 0x5a5a, 0}, {"offset", 0, 64 << 20}} {
			t.Run(p+"/"+c.name, func(t *testing.T) {
				s := open(t, p, 0, 64<<20, nil)
				fillRandom(s.src, 4)
				s.send.Corrupt(c.key, c.base)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 16, Kind: transport.KindData}})
				if err == nil {
					err = s.send.Flush(ctx)
				}
				if err == nil || ctx.Err() != nil {
					t.Fatalf("a write with a wrong %s: %v; want an error", c.name, err)
				}
				t.Logf("sender: %v", err)
				_, rerr := s.recv.RecvMessage(ctx)
				t.Logf("receiver: %v", rerr)
				if rerr == nil || ctx.Err() != nil {
					t.Errorf("the receiver's session goes on: %v", rerr)
				}
				if bytes.ContainsFunc(s.dst, func(r rune) bool { return r != 0 }) {
					t.Error("something landed in the destination's RAM")
				}
			})
		}
	}
}

// TestDeliveryComplete runs the visibility check with endpoints opened
// without FI_ORDER_SAW, as on a provider that lacks it: writes carry
// FI_DELIVERY_COMPLETE and the COMMIT waits for their completions.
func TestDeliveryComplete(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			forceDeliveryComplete(t, p)
			s := open(t, p, 0, 64<<20, nil)
			if m := s.send.CompletionMode(); m != "delivery-complete" {
				t.Fatalf("the session commits by %s, want delivery-complete", m)
			}
			if bad := batches(t, s, 32, 1024); bad != 0 {
				t.Fatalf("%d of 32 batches were not visible when Flush returned", bad)
			}
		})
	}
}
