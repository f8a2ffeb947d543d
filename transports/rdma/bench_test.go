package rdma_test

import (
	"context"
	"os"
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
func BenchmarkTransport(b *testing.B) {
	const size = 1 << 30
	names := map[string]string{}
	for name, err := range fabricProviders() {
		if err == nil {
			names["rdma-"+name] = name
		}
	}
	names["tcp"] = ""
	for _, name := range []string{"rdma-tcp", "rdma-sockets", "rdma-net", "tcp"} {
		prov, ok := names[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			sf, sm := memfdB(b, "send", size)
			df, _ := memfdB(b, "recv", size)
			fillRandom(sm, 7)
			var secs, cpu float64
			for range b.N {
				s, c := transfer(b, prov, sf, df, size)
				secs += s
				cpu += c
			}
			gib := float64(b.N)
			b.ReportMetric(float64(size)*gib/secs/1e9*8, "Gb/s")
			b.ReportMetric(cpu/gib, "cpu-s/GiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// transfer opens a pair, sends every page in runs of 4096 pages with a
// Flush every 64 MiB, and returns the seconds and CPU seconds it took.
func transfer(b *testing.B, prov string, sf, df *os.File, size int) (secs, cpu float64) {
	layout := []transport.RAMRegion{{GPA: 0, Size: uint64(size), File: 0}}
	sc, rc, _ := transport.MintCredentials(true)
	var send, recv transport.Transport
	cfg := schema.Config{"listen": freeAddrB(b)}
	if prov == "" {
		send, recv = tcp.New(nil), tcp.New(nil)
		cfg["streams"], cfg["compress"] = int64(2), "none"
	} else {
		send, recv = rdma.New(nil), rdma.New(nil)
		cfg["provider"] = prov
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	var err error
	for {
		if err = send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc}); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if err != nil || rerr != nil {
		b.Fatalf("open: %v %v", err, rerr)
	}
	defer func() { send.Close(); recv.Close() }()
	c0, t0 := cpuNow(), time.Now()
	pages := uint64(size / 4096)
	for first := uint64(0); first < pages; first += 16384 {
		for q := first; q < first+16384; q += 4096 {
			if err := send.SendPages(ctx, []transport.PageRun{{First: q, Count: 4096, Kind: transport.KindData}}); err != nil {
				b.Fatal(err)
			}
		}
		if err := send.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0).Seconds(), cpuNow() - c0
}

func cpuNow() float64 {
	var r unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r)
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
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
