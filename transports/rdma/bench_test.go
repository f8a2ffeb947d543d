package rdma_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/tcp"
)

// BenchmarkTransport moves 1 GiB of incompressible pages loopback, both
// ends in this process, with the rdma transport on each software provider
// and with transports/tcp (2 streams, no compression), both with
// plaintext credentials (RDMA writes are not encrypted; TLS would only
// cost tcp). It reports throughput and the CPU seconds per GiB of both
// ends together (getrusage of the process):
//
//	go test -run '^$' -bench Transport -benchtime 1x ./transports/rdma/
//
// Each iteration opens a new pair, so each maps guest RAM afresh and
// touches every page for the first time, as a migration does. The
// "-warm" variants keep one pair open and time a second pass over the
// same pages (what the transport costs once its mappings are warm, as
// on hardware, where registration pins every page at Open).
func BenchmarkTransport(b *testing.B) {
	const size = 1 << 30
	names := map[string]string{}
	for name, err := range fabricProviders() {
		if err == nil {
			names["rdma-"+name] = name
		}
	}
	names["tcp"] = ""
	for _, name := range []string{"rdma-tcp", "rdma-sockets", "rdma-net", "tcp", "rdma-tcp-warm", "rdma-sockets-warm", "rdma-net-warm", "tcp-warm"} {
		base, warm := strings.CutSuffix(name, "-warm")
		prov, ok := names[base]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			sf, sm := memfdB(b, "send", size)
			df, _ := memfdB(b, "recv", size)
			fillRandom(sm, 7)
			var secs, cpu float64
			var switches int64
			var send, recv transport.Transport
			if warm {
				send, recv = openPair(b, prov, sf, df, size)
				defer func() { send.Close(); recv.Close() }()
				sendAll(b, send, size) // the first touch of every page
			}
			for range b.N {
				if !warm {
					send, recv = openPair(b, prov, sf, df, size)
				}
				c0, s0 := cpuNow()
				t0 := time.Now()
				sendAll(b, send, size)
				secs += time.Since(t0).Seconds()
				c1, s1 := cpuNow()
				cpu, switches = cpu+c1-c0, switches+s1-s0
				if !warm {
					send.Close()
					recv.Close()
				}
			}
			gib := float64(b.N)
			b.ReportMetric(float64(size)*gib/secs/1e9*8, "Gb/s")
			b.ReportMetric(cpu/gib, "cpu-s/GiB")
			b.ReportMetric(float64(switches)/gib, "switches/GiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// openPair opens a pair of prov ("": transports/tcp) over sf and df.
func openPair(b *testing.B, prov string, sf, df *os.File, size int) (send, recv transport.Transport) {
	layout := []transport.RAMRegion{{GPA: 0, Size: uint64(size), File: 0}}
	sc, rc, _ := transport.MintCredentials(true)
	cfg := schema.Config{"listen": freeAddr(b, "127.0.0.1")}
	if prov == "" {
		send, recv = tcp.New(nil), tcp.New(nil)
		cfg["streams"], cfg["compress"] = int64(2), "none"
	} else {
		send, recv = rdma.New(nil), rdma.New(nil)
		cfg["provider"], cfg["unsafe_sockets"] = prov, prov == "sockets"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	// The source dials until the destination listens (netdial.Retry, within connect_timeout).
	err := send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc})
	wg.Wait()
	if err != nil || rerr != nil {
		b.Fatalf("open: %v %v", err, rerr)
	}
	return send, recv
}

// sendAll sends every page in runs of 4096 pages with a Flush every 64 MiB
// (FERRY_BENCH_FLUSH_MIB: every that many MiB instead, a multiple of 16;
// the engine flushes once per pass). FERRY_BENCH_TRACE=1 logs the time
// spent in SendPages and in Flush per call.
func sendAll(b *testing.B, send transport.Transport, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pages := uint64(size / 4096)
	every := uint64(16384)
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_FLUSH_MIB")); err == nil && v >= 16 && v%16 == 0 {
		every = uint64(v) << 8
	}
	trace := os.Getenv("FERRY_BENCH_TRACE") != ""
	var tsp, tfl time.Duration
	for first := uint64(0); first < pages; first += every {
		t0 := time.Now()
		for q := first; q < min(first+every, pages); q += 4096 {
			if err := send.SendPages(ctx, []transport.PageRun{{First: q, Count: 4096, Kind: transport.KindData}}); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		if err := send.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		tsp, tfl = tsp+t1.Sub(t0), tfl+time.Since(t1)
	}
	if trace {
		b.Logf("SendPages %v, Flush %v", tsp, tfl)
	}
}

// cpuNow is the process's CPU seconds and context switches (voluntary
// and not) so far: each switch here is a wake-up, which in this nested
// guest often costs a VM exit.
func cpuNow() (float64, int64) {
	var r unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r)
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9, r.Nvcsw + r.Nivcsw
}

func memfdB(b *testing.B, name string, size int64) (*os.File, []byte) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), name)
	f.Truncate(size)
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(m); f.Close() })
	return f, m
}
