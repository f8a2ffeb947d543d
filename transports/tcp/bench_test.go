//go:build linux

package tcp

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

const benchRAM = 1 << 30

var benchLayout = []transport.RAMRegion{{GPA: 0, Size: benchRAM}}

// BenchmarkLoopback moves 1 GiB of non-zero pages over loopback per
// iteration, the way the engine does (SendPages of 2048 pages, then
// Flush). "random" pages do not compress; "compressible" ones shrink to
// about a quarter. The destination is touched beforehand, so page faults
// of first use are not counted.
func BenchmarkLoopback(b *testing.B) {
	for _, data := range []string{"random", "compressible"} {
		src := newVM(b, benchLayout)
		fillBench(src.mem[0], data == "compressible")
		dst := newVM(b, benchLayout)
		for i := 0; i < len(dst.mem[0]); i += pageSize {
			dst.mem[0][i] = 1
		}
		for _, streams := range []int{1, 2, 4} {
			for _, comp := range []string{"lz4", "none"} {
				b.Run(fmt.Sprintf("%s/streams=%d/%s", data, streams, comp), func(b *testing.B) {
					benchLoopback(b, src, dst, streams, comp)
				})
			}
		}
	}
}

// BenchmarkEncryption is BenchmarkLoopback's incompressible case with
// TLS 1.3 (AES-GCM) and with plaintext after the authenticating handshake.
func BenchmarkEncryption(b *testing.B) {
	src := newVM(b, benchLayout)
	fillBench(src.mem[0], false)
	dst := newVM(b, benchLayout)
	for i := 0; i < len(dst.mem[0]); i += pageSize {
		dst.mem[0][i] = 1
	}
	for _, streams := range []int{1, 2, 4} {
		for _, mode := range []string{"tls", "plaintext"} {
			b.Run(fmt.Sprintf("streams=%d/%s", streams, mode), func(b *testing.B) {
				benchLoopbackPlain(b, src, dst, streams, "none", mode == "plaintext")
			})
		}
	}
}

func benchLoopback(b *testing.B, src, dst *vm, streams int, comp string) {
	benchLoopbackPlain(b, src, dst, streams, comp, false)
}

func benchLoopbackPlain(b *testing.B, src, dst *vm, streams int, comp string, plain bool) {
	send, recv := openPairPlain(b, src, dst, cfg(freeAddr(b), streams, comp), plain)
	if c, _ := recv.openSession().streams[0].conn.(*tls.Conn); c != nil {
		b.Logf("cipher suite %s", tls.CipherSuiteName(c.ConnectionState().CipherSuite))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a busy machine takes long
	defer cancel()
	runs := make([]transport.PageRun, 0, 1)
	pages := src.pages()
	b.SetBytes(benchRAM)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for range b.N {
		for p := uint64(0); p < pages; p += 2048 {
			runs = append(runs[:0], transport.PageRun{First: p, Count: min(2048, pages-p), Kind: transport.KindData})
			if err := send.SendPages(ctx, runs); err != nil {
				b.Fatal(err)
			}
		}
		if err := send.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	secs, cpu := time.Since(start).Seconds(), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/GiB")
	st, _ := send.Stats(ctx)
	b.ReportMetric(float64(st.BytesWire)/secs/1e6, "wireMB/s")
	b.ReportMetric(float64(st.Compressed)/float64(st.PagesData)*100, "%compressed")
}

// fillBench fills b with 16 MiB of random (or quarter-random) pages
// repeated: beyond lz4's 64 KiB window, so the repeat does not help it.
func fillBench(b []byte, compressible bool) {
	const block = 16 << 20
	if compressible {
		fillCompressible(b[:block], 42)
	} else {
		fillRandom(b[:block], rand.New(rand.NewPCG(42, 42)))
	}
	for off := block; off < len(b); off += block {
		copy(b[off:], b[:block])
	}
}

// cpuTime is the process's user and system time: on a busy machine it
// says more than the wall clock about what a GiB costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUrgentRoundTrip measures what post-copy's fault service waits
// for: the destination sends a page request (SendUrgent), the source
// receives it (RecvUrgent) and answers with the page (SendPagesUrgent),
// and the destination's Landed reports the page written. One iteration
// is one round trip; p50 and p99 are reported as metrics. "idle" has
// nothing else on the wire; "bulk" keeps SendPages of the rest of guest
// RAM running all the time (the sender's queue full), as in post-copy's
// background push. 64 MiB guest, TLS 1.3 unless "plaintext".
func BenchmarkUrgentRoundTrip(b *testing.B) {
	const ram = 64 << 20
	layout := []transport.RAMRegion{{GPA: 0, Size: ram}}
	src, dst := newVM(b, layout), newVM(b, layout)
	fillBench(src.mem[0][:ram], false)
	for i := 0; i < len(dst.mem[0]); i += pageSize {
		dst.mem[0][i] = 1
	}
	for _, load := range []string{"idle", "bulk"} {
		for _, streams := range []int{1, 4} {
			for _, mode := range []string{"tls", "plaintext"} {
				b.Run(fmt.Sprintf("%s/streams=%d/%s", load, streams, mode), func(b *testing.B) {
					benchUrgent(b, src, dst, streams, load == "bulk", mode == "plaintext")
				})
			}
		}
	}
}

func benchUrgent(b *testing.B, src, dst *vm, streams int, bulk, plain bool) {
	send, recv := openPairPlain(b, src, dst, cfg(freeAddr(b), streams, "none"), plain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pages := src.pages()
	half := pages / 2 // bulk moves [0, half); requests go to [half, pages)

	// The source: a request server, and the background push.
	served := make(chan error, 1)
	go func() {
		for {
			m, err := send.RecvUrgent(ctx)
			if err != nil {
				served <- err
				return
			}
			if m.Kind == 2 {
				served <- nil
				return
			}
			q := binary.LittleEndian.Uint64(m.Payload)
			if err := send.SendPagesUrgent(ctx, []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}}); err != nil {
				served <- err
				return
			}
		}
	}()
	stop := make(chan struct{})
	pushed := make(chan error, 1)
	if bulk {
		go func() {
			for {
				select {
				case <-stop:
					pushed <- nil
					return
				default:
				}
				if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: half, Kind: transport.KindData}}); err != nil {
					pushed <- err
					return
				}
			}
		}()
	} else {
		pushed <- nil
	}

	// The destination: arm Landed, then request pages one at a time.
	request := func(q uint64) {
		if err := recv.SendUrgent(ctx, transport.Message{Kind: 1, Payload: binary.LittleEndian.AppendUint64(nil, q)}); err != nil {
			b.Fatal(err)
		}
		for {
			runs, err := recv.Landed(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range runs {
				if q >= r.First && q < r.First+r.Count {
					return
				}
			}
		}
	}
	armed := make(chan struct{})
	go func() { recv.Landed(ctx); close(armed) }() // the first call arms; its result is ignored
	for {
		if err := send.SendPagesUrgent(ctx, []transport.PageRun{{First: pages - 1, Count: 1, Kind: transport.KindData}}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-armed:
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	if bulk {
		time.Sleep(100 * time.Millisecond) // the queue fills
	}
	rtts := make([]time.Duration, 0, b.N)
	st0, _ := send.Stats(ctx)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		q := half + uint64(i)%(pages-half-1)
		t0 := time.Now()
		request(q)
		rtts = append(rtts, time.Since(t0))
	}
	secs := time.Since(start).Seconds()
	b.StopTimer()
	st1, _ := send.Stats(ctx)
	recv.SendUrgent(ctx, transport.Message{Kind: 2})
	if err := <-served; err != nil {
		b.Fatal(err)
	}
	close(stop)
	if err := <-pushed; err != nil {
		b.Fatal(err)
	}
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-us")
	b.ReportMetric(float64(rtts[len(rtts)-1].Nanoseconds())/1e3, "max-us")
	b.ReportMetric(float64(st1.BytesWire-st0.BytesWire)/secs/1e6, "bulkMB/s")
}

// BenchmarkMessageRoundTrip measures a message's round trip on stream 0:
// the source's SendMessage of size bytes, the destination's RecvMessage
// and its SendMessage of the same size back, the source's RecvMessage.
// One iteration is one round trip; p50 and p99 are reported as metrics.
// Nothing else is on the wire. TLS 1.3 unless "plaintext".
func BenchmarkMessageRoundTrip(b *testing.B) {
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	src, dst := newVM(b, layout), newVM(b, layout)
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		for _, mode := range []string{"tls", "plaintext"} {
			b.Run(fmt.Sprintf("size=%d/%s", size, mode), func(b *testing.B) {
				benchMessages(b, src, dst, size, mode == "plaintext")
			})
		}
	}
}

func benchMessages(b *testing.B, src, dst *vm, size int, plain bool) {
	send, recv := openPairPlain(b, src, dst, cfg(freeAddr(b), 1, "none"), plain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	echoed := make(chan error, 1)
	go func() { // the destination echoes each message until kind 2
		for {
			m, err := recv.RecvMessage(ctx)
			if err != nil || m.Kind == 2 {
				echoed <- err
				return
			}
			if err := recv.SendMessage(ctx, m); err != nil {
				echoed <- err
				return
			}
		}
	}()
	m := transport.Message{Kind: 1, Payload: make([]byte, size)}
	rtts := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(2 * size))
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := send.SendMessage(ctx, m); err != nil {
			b.Fatal(err)
		}
		if _, err := send.RecvMessage(ctx); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	b.StopTimer()
	if err := send.SendMessage(ctx, transport.Message{Kind: 2}); err != nil {
		b.Fatal(err)
	}
	if err := <-echoed; err != nil {
		b.Fatal(err)
	}
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-us")
}
