//go:build linux

package tcp

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
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
	if c, _ := recv.s.streams[0].conn.(*tls.Conn); c != nil {
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
