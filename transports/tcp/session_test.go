//go:build linux

package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestFlushOrdering sends the same pages in consecutive Flush intervals,
// and twice inside one interval: the last value sent always wins.
func TestFlushOrdering(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, _ := openPair(t, src, dst, cfg(freeAddr(t), 4, "lz4"))
	ctx := ctxT(t)
	n := src.pages()
	all := []transport.PageRun{{First: 0, Count: n, Kind: transport.KindData}}
	for round := byte(1); round <= 20; round++ {
		for p := range n {
			b := src.page(p)
			b[0], b[100], b[4095] = round, byte(p), round
		}
		if err := send.SendPages(ctx, all); err != nil {
			t.Fatal(err)
		}
		// Twice within the interval for a few pages, the second value differs.
		for _, p := range []uint64{0, 255, 256, 700, n - 1} {
			src.page(p)[1] = round
			if err := send.SendPages(ctx, []transport.PageRun{{First: p, Count: 1, Kind: transport.KindData}}); err != nil {
				t.Fatal(err)
			}
		}
		if round%2 == 0 {
			continue // two intervals' worth of sends before this Flush
		}
		if err := send.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for p := range n {
			if !bytes.Equal(src.page(p), dst.page(p)) {
				t.Fatalf("round %d: page %d is %v..., want %v...", round, p, dst.page(p)[:2], src.page(p)[:2])
			}
		}
	}
}

func TestFlushCancelled(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, _ := openPair(t, src, dst, cfg(freeAddr(t), 2, "none"))
	ctx := ctxT(t)
	fillCompressible(src.mem[0], 1)
	if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: src.pages(), Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := send.Flush(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with a cancelled context: %v", err)
	}
	// The next call finishes the cut-short Flush first.
	src.page(3)[0] = 0x77
	if err := send.SendPages(ctx, []transport.PageRun{{First: 3, Count: 1, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	if err := send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src.mem[0], dst.mem[0]) {
		t.Fatal("region 0 differs")
	}
}

func TestMessages(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, recv := openPair(t, src, dst, cfg(freeAddr(t), 2, "lz4"))
	ctx := ctxT(t)
	big := bytes.Repeat([]byte("ferry"), transport.MaxMessage/5)
	msgs := []transport.Message{{Kind: 1}, {Kind: 2, Payload: []byte("hello")}, {Kind: 3, Payload: big}}
	for i := range 50 {
		msgs = append(msgs, transport.Message{Kind: uint32(10 + i), Payload: []byte(strings.Repeat("x", i))})
	}
	exchange := func(from, to *Transport) {
		t.Helper()
		var wg sync.WaitGroup
		var serr error
		wg.Go(func() {
			for _, m := range msgs {
				if serr = from.SendMessage(ctx, m); serr != nil {
					return
				}
			}
		})
		for i, want := range msgs {
			got, err := to.RecvMessage(ctx)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if got.Kind != want.Kind || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("message %d: kind %d, %d bytes; want kind %d, %d bytes", i, got.Kind, len(got.Payload), want.Kind, len(want.Payload))
			}
		}
		wg.Wait()
		if serr != nil {
			t.Fatal(serr)
		}
	}
	exchange(send, recv)
	exchange(recv, send)
	if err := send.SendMessage(ctx, transport.Message{Kind: 1, Payload: make([]byte, transport.MaxMessage+1)}); err == nil {
		t.Fatal("a message over MaxMessage was sent")
	}
	if err := send.SendMessage(ctx, transport.Message{Kind: 0}); err == nil {
		t.Fatal("a message of kind 0 was sent")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := recv.RecvMessage(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RecvMessage with nothing to receive: %v", err)
	}
}

// TestCloseEndsPeer: after the source closes, the destination still gets
// the messages sent before, then ErrClosed; and the other way round.
func TestCloseEndsPeer(t *testing.T) {
	for _, sourceCloses := range []bool{true, false} {
		src, dst := newVM(t, testLayout), newVM(t, testLayout)
		send, recv := openPair(t, src, dst, cfg(freeAddr(t), 2, "lz4"))
		ctx := ctxT(t)
		closer, other := send, recv
		if !sourceCloses {
			closer, other = recv, send
		}
		if err := closer.SendMessage(ctx, transport.Message{Kind: 4, Payload: []byte("last")}); err != nil {
			t.Fatal(err)
		}
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		if m, err := other.RecvMessage(ctx); err != nil || string(m.Payload) != "last" {
			t.Fatalf("message before close: %v %q", err, m.Payload)
		}
		if _, err := other.RecvMessage(ctx); !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("after the peer closed: %v, want ErrClosed", err)
		}
		if sourceCloses {
			continue
		}
		err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}})
		if err == nil {
			err = send.Flush(ctx)
		}
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("SendPages/Flush after the destination closed: %v", err)
		}
	}
}

// TestReopen runs two sessions on the same Transports and port.
func TestReopen(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	addr := freeAddr(t)
	send, recv := New(testLogger(t)), New(testLogger(t))
	for round := range 3 {
		ctx := ctxT(t)
		var wg sync.WaitGroup
		var rerr error
		wg.Go(func() { rerr = recv.Open(ctx, dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))) })
		if err := send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4"))); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		wg.Wait()
		if rerr != nil {
			t.Fatalf("round %d: %v", round, rerr)
		}
		fillCompressible(src.mem[1], uint64(round))
		if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: src.pages(), Kind: transport.KindData}}); err != nil {
			t.Fatal(err)
		}
		if err := send.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src.mem[1], dst.mem[1]) {
			t.Fatalf("round %d: region 1 differs", round)
		}
		if err := send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4"))); err == nil {
			t.Fatal("Open of an open transport succeeded")
		}
		send.Close()
		recv.Close()
		if err := send.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if _, err := send.RecvMessage(ctxT(t)); err == nil {
		t.Fatal("RecvMessage after Close succeeded")
	}
}

// TestSourceFirst: the source may start dialling before the destination listens.
func TestSourceFirst(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	addr := freeAddr(t)
	send, recv := New(testLogger(t)), New(testLogger(t))
	defer send.Close()
	defer recv.Close()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var serr error
	wg.Go(func() { serr = send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 3, "lz4"))) })
	time.Sleep(300 * time.Millisecond)
	if err := recv.Open(ctx, dst.request(transport.RoleReceive, cfg(addr, 1, "lz4"))); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if serr != nil {
		t.Fatal(serr)
	}
	if s, _ := recv.slot.Get(); len(s.streams) != 3 {
		t.Fatalf("destination has %d streams, the source asked for 3", len(s.streams))
	}
}

func TestOpenTimeouts(t *testing.T) {
	src := newVM(t, testLayout)
	c := cfg(freeAddr(t), 2, "lz4")
	c["connect_timeout"] = int64(200 * time.Millisecond)
	start := time.Now()
	err := New(nil).Open(ctxT(t), src.request(transport.RoleSend, c))
	if err == nil || !errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), "listening") {
		t.Fatalf("dial with nobody listening: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second { // room for a loaded machine; the default is 10 s
		t.Fatalf("connect_timeout 200ms took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := New(nil).Open(ctx, src.request(transport.RoleReceive, c)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("listen with no source: %v", err)
	}
}

// TestNoLeaks: Close joins every goroutine of a session, on both sides,
// after a normal session and after a failed one.
func TestNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 2 {
		src, dst := newVM(t, testLayout), newVM(t, testLayout)
		send, recv := openPair(t, src, dst, cfg(freeAddr(t), 4, "lz4"))
		ctx := ctxT(t)
		if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: src.pages(), Kind: transport.KindData}}); err != nil {
			t.Fatal(err)
		}
		recv.Close() // mid-stream
		send.Close()
	}
	deadline := time.Now().Add(10 * time.Second) // goroutines on their way out may run late on a loaded machine
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestZeroFramesGathered: ZERO batches queued back to back go out in
// gathered writes (writeZeros), and a data batch taken from the queue
// behind them still goes next: every page ends as the last run sent for
// it says, and both sides count every page and byte once. A large
// guest's holes (256 MiB here: 512 ZERO frames over 2 streams) and zero
// runs interleaved with data within one SendPages call.
func TestZeroFramesGathered(t *testing.T) {
	layout := []transport.RAMRegion{{GPA: 0, Size: 256 << 20, File: 0, Offset: 0}}
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			src, dst := newVM(t, layout), newVM(t, layout)
			send, recv := openPairPlain(t, src, dst, cfg(freeAddr(t), 2, "none"), plain)
			ctx := ctxT(t)
			n := src.pages()
			for p := range n {
				dst.page(p)[7] = 0xee // stale bytes the ZERO runs must clear
			}
			var runs []transport.PageRun
			want := make([]bool, n) // data, else zero
			for p := uint64(0); p < n; {
				k, c := transport.KindZero, uint64(5000)
				if (p/5000)%7 == 3 { // a short data run now and then
					k, c = transport.KindData, 37
				}
				c = min(c, n-p)
				for q := p; q < p+c; q++ {
					if k == transport.KindData {
						src.page(q)[0], src.page(q)[1] = byte(q), byte(q>>8)|1
						want[q] = true
					}
				}
				runs = append(runs, transport.PageRun{First: p, Count: c, Kind: k})
				p += c
			}
			if err := send.SendPages(ctx, runs); err != nil {
				t.Fatal(err)
			}
			if err := send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var data, zero uint64
			for p := range n {
				if want[p] {
					data++
					if !bytes.Equal(src.page(p), dst.page(p)) {
						t.Fatalf("data page %d: %x..., want %x...", p, dst.page(p)[:2], src.page(p)[:2])
					}
				} else {
					zero++
					if !bytes.Equal(dst.page(p), make([]byte, pageSize)) {
						t.Fatalf("zero page %d is not zero", p)
					}
				}
			}
			ss, err := send.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := recv.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ss.PagesZero != zero || ss.PagesData != data || rs.PagesZero != zero || rs.PagesData != data {
				t.Errorf("pages zero/data: source %d/%d, destination %d/%d, want %d/%d", ss.PagesZero, ss.PagesData, rs.PagesZero, rs.PagesData, zero, data)
			}
			if ss.BytesWire != rs.BytesWire {
				t.Errorf("bytes on the wire: source %d, destination %d", ss.BytesWire, rs.BytesWire)
			}
		})
	}
}
