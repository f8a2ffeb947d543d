package vmtest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// The throughput case of issue 11: a 2 GiB guest whose first 1.5 GiB
// hold incompressible data and whose last 0.5 GiB were never touched
// (holes in its memfd), migrated over loopback by the real TCP transport
// into a fresh, sparse destination.
const (
	tputRAM  = 2 << 30
	tputData = 1536 << 20
)

// BenchmarkThroughput moves that guest once per iteration, in process
// (tcp.New on both sides, both engines in this process) and over the
// real plugin processes (framework/session, as a VMM embeds Ferry), with
// TLS and with plaintext frames (encryption = false); "writer" adds a
// light guest writer (8 pages every 10 ms). It reports the page data
// rate of the bulk pass (data-MB/s) and of the whole migration
// (total-MB/s), and CPU seconds per GB of page data: the whole process
// in process (cpu-s/GB); with plugins the source plugin (src-plugin),
// the destination plugin (dst-plugin, all of the receive side but the
// destination engine, which only handles messages) and this process (both
// engines, the source's classifier and zero check). docs/BENCHMARKS.md
// records its figures. `make bench` runs it; `make test` does not.
//
// "cold" and "warm" are about this machine, a virtual machine whose
// memory its host backs on first use and takes back (free page
// reporting) a few seconds after the kernel freed it: a page the
// destination allocates is "cold" unless memory was freed just before,
// and filling cold memory costs the host's fault, 2.3-2.5 CPU-seconds
// per GB inside the kernel's copy, whatever writes it (pwrite into a
// fresh memfd: 0.2 s/GB warm, 2.3-2.5 s/GB cold). "warm" fills and frees
// as much memory as the destination will take just before the
// migration, so the destination's pages come from memory the host has
// backed: the figure a host with its RAM backed would see.
func BenchmarkThroughput(b *testing.B) {
	src := tputSource(b, 0)
	for _, mode := range []string{"inproc", "plugin"} {
		for _, enc := range []string{"tls", "plain"} {
			for _, mem := range []string{"cold", "warm"} {
				b.Run(mode+"/"+enc+"/"+mem, func(b *testing.B) { benchThroughput(b, src, mode, enc == "plain", mem == "warm") })
			}
		}
	}
	src.Close()
	b.Run("plugin/tls/cold/writer", func(b *testing.B) {
		src := tputSource(b, 10*time.Millisecond)
		defer src.Close()
		benchThroughput(b, src, "plugin", false, false)
	})
}

// warmMemory fills and frees n bytes of memory (a memfd written with
// pwrite), so that the host backs the pages the kernel hands out next.
func warmMemory(b *testing.B, n int) {
	fd, err := unix.MemfdCreate("warm", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i | 1)
	}
	for off := 0; off < n; off += len(buf) {
		if _, err := unix.Pwrite(fd, buf, int64(off)); err != nil {
			b.Fatal(err)
		}
	}
}

// tputSource makes the source guest: tputData bytes of random data from
// page 0, the rest punched back to holes.
func tputSource(b *testing.B, writeEvery time.Duration) *vmtest.VM {
	src, err := vmtest.New(vmtest.Options{Regions: []vmtest.Region{{GPA: 0, Size: tputRAM}}, WriteEvery: writeEvery})
	if err != nil {
		b.Fatal(err)
	}
	rand.NewChaCha8([32]byte{11}).Read(src.Memory(0)[:tputData])
	fd := src.RAM()[0].Fd
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, tputData, tputRAM-tputData); err != nil {
		b.Fatal(err)
	}
	return src
}

// tputFigures are one migration's measurements.
type tputFigures struct {
	rep            engine.Report
	wall           time.Duration
	cpu            time.Duration // this process
	srcCPU, dstCPU time.Duration // the plugin processes (plugin mode)
}

func benchThroughput(b *testing.B, src *vmtest.VM, mode string, plain, warm bool) {
	var sum tputFigures
	var data float64
	for i := range b.N {
		dst := newVM(b, vmtest.Options{Regions: []vmtest.Region{{GPA: 0, Size: tputRAM}}, Incoming: true})
		var f tputFigures
		if warm {
			warmMemory(b, tputData+256<<20)
		}
		if mode == "inproc" {
			f = tputInProcess(b, src, dst, plain)
		} else {
			f = tputPlugins(b, src, dst, plain)
		}
		if i == 0 {
			tputCheck(b, src, dst)
		}
		dst.Close()
		if err := src.Resume(); err != nil { // for the next iteration
			b.Fatal(err)
		}
		r := f.rep
		b.Logf("%s: %d ms (bulk %d, %d passes, downtime %d), %d data pages, %d zero; cpu %v process, %v source plugin, %v destination plugin",
			b.Name(), r.TotalMS, r.BulkMS, r.Passes, r.DowntimeMS, r.PagesSent, r.PagesZero, f.cpu, f.srcCPU, f.dstCPU)
		sum.rep.BulkMS += r.BulkMS
		sum.rep.TotalMS += r.TotalMS
		sum.cpu += f.cpu
		sum.srcCPU += f.srcCPU
		sum.dstCPU += f.dstCPU
		data += float64(r.PagesSent) * framework.PageSize
	}
	gb := data / 1e9
	b.ReportMetric(data/1e6/(float64(sum.rep.BulkMS)/1e3), "data-MB/s")
	b.ReportMetric(data/1e6/(float64(sum.rep.TotalMS)/1e3), "total-MB/s")
	if mode == "inproc" {
		b.ReportMetric(sum.cpu.Seconds()/gb, "cpu-s/GB")
	} else {
		b.ReportMetric(sum.srcCPU.Seconds()/gb, "src-plugin-cpu-s/GB")
		b.ReportMetric(sum.dstCPU.Seconds()/gb, "dst-plugin-cpu-s/GB")
		b.ReportMetric(sum.cpu.Seconds()/gb, "engines-cpu-s/GB")
	}
	b.ReportMetric(0, "ns/op")
}

// tputCheck: the data arrived intact and the holes stayed holes.
func tputCheck(b *testing.B, src, dst *vmtest.VM) {
	if !bytes.Equal(src.Memory(0)[:tputData], dst.Memory(0)[:tputData]) {
		b.Fatal("the destination's data differs from the source's")
	}
	if src.Counters().Writes != 0 {
		return // the writer may have populated pages of the tail
	}
	if off, err := unix.Seek(dst.RAM()[0].Fd, tputData, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
		b.Fatalf("the destination holds data at %#x past the source's data (%v): it is not sparse", off, err)
	}
}

func tputOptions(b *testing.B, plain bool) (src, dst engine.Options) {
	srcCreds, dstCreds, err := transport.MintCredentials(plain)
	if err != nil {
		b.Fatal(err)
	}
	return engine.Options{Credentials: srcCreds}, engine.Options{Credentials: dstCreds, IncomingTimeout: 30 * time.Second}
}

func tputInProcess(b *testing.B, src, dst *vmtest.VM, plain bool) tputFigures {
	sopt, dopt := tputOptions(b, plain)
	cfg := map[string]any{"listen": localAddr(), "streams": int64(2), "compress": "lz4",
		"connect_timeout": int64(10 * time.Second)}
	sopt.Transport, dopt.Transport = cfg, cfg
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	send, recv := tcp.New(nil), tcp.New(nil)
	defer send.Close()
	defer recv.Close()
	var f tputFigures
	var derr error
	var drep engine.Report
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), plugintest.SelfCPU()
	wg.Go(func() { drep, derr = engine.Receive(ctx, dst, recv, dopt) })
	rep, serr := engine.Send(ctx, src, send, sopt)
	wg.Wait()
	f.wall, f.cpu, f.rep = time.Since(start), plugintest.SelfCPU()-cpu0, rep
	if serr != nil || derr != nil || rep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		b.Fatalf("source %s (%v), destination %s (%v)", rep.Status, serr, drep.Status, derr)
	}
	return f
}

func tputPlugins(b *testing.B, src, dst *vmtest.VM, plain bool) tputFigures {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ss, ds, spid, dpid := openPluginPair(ctx, b, src.RAM(), dst.RAM(), plain)
	defer ss.Close()
	defer ds.Close()

	var f tputFigures
	var derr error
	var drep engine.Report
	var wg sync.WaitGroup
	start, cpu0, scpu0, dcpu0 := time.Now(), plugintest.SelfCPU(), plugintest.CPU(b, spid), plugintest.CPU(b, dpid)
	wg.Go(func() { drep, derr = ds.Receive(ctx, dst) })
	rep, serr := ss.Send(ctx, src, src)
	wg.Wait()
	f.wall, f.cpu, f.rep = time.Since(start), plugintest.SelfCPU()-cpu0, rep
	f.srcCPU, f.dstCPU = plugintest.CPU(b, spid)-scpu0, plugintest.CPU(b, dpid)-dcpu0
	if serr != nil || derr != nil || rep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		b.Fatalf("source %s (%v), destination %s (%v)", rep.Status, serr, drep.Status, derr)
	}
	return f
}

// openPluginPair opens the sessions of a migration from src to dst over
// the real TCP plugin (2 streams; TLS unless plain) and returns them
// with each side's plugin process id. The caller closes both.
func openPluginPair(ctx context.Context, b *testing.B, src, dst framework.Layout, plain bool) (ss, ds *session.Session, spid, dpid int) {
	sopt, dopt := tputOptions(b, plain)
	tcpPlugin := session.Plugin{Path: filepath.Join(plugins(b), "ferry-transport-tcp"),
		Config: map[string]any{"listen": localAddr(), "streams": 2}}
	log := slog.New(slog.DiscardHandler)
	// The destination's session first, so the one new plugin process
	// after each Open is that side's.
	before := plugintest.Children("ferry-transpor")
	ds, err := session.Open(ctx, dst, session.Spec{Role: transport.RoleReceive, Transport: tcpPlugin, Log: log, Engine: dopt})
	if err != nil {
		b.Fatal(err)
	}
	dpid = plugintest.NewChild(b, before, plugintest.Children("ferry-transpor"))
	before = plugintest.Children("ferry-transpor")
	ss, err = session.Open(ctx, src, session.Spec{Role: transport.RoleSend, Transport: tcpPlugin, Log: log, Engine: sopt})
	if err != nil {
		ds.Close()
		b.Fatal(err)
	}
	return ss, ds, plugintest.NewChild(b, before, plugintest.Children("ferry-transpor")), dpid
}
