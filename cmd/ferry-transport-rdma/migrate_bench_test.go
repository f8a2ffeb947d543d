package main

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// migrateRAM is the guest of BenchmarkMigrate: 1 GiB, every page
// incompressible data.
const migrateRAM = 1 << 30

// BenchmarkMigrate migrates a 1 GiB guest of incompressible pages once
// per iteration, end to end and as a VMM embeds Ferry: both engines in
// this process, each side's transport plugin in its own process
// (framework/session), over loopback into a fresh destination. It runs
// this plugin on every software provider that works here and, beside it,
// the tcp transport plugin with plaintext frames (rdma writes pages in
// the clear, so TLS would only cost tcp) and without compression:
//
//	go test -run '^$' -bench Migrate -benchtime 3x ./cmd/ferry-transport-rdma/
//
// It reports the page data rate of the bulk pass (data-Gb/s) and CPU
// seconds per GiB of page data at each end: the source plugin
// (src-plugin), the destination plugin (dst-plugin) and this process
// (both engines: the source's classifier and the messages). Raw fi_write
// on the same provider, the ceiling, is transports/rdma/fabric's
// BenchmarkRawWrite ("fresh-pop-wait": fresh memory, populated as the
// transport populates it). docs/BENCHMARKS.md records the figures.
func BenchmarkMigrate(b *testing.B) {
	src, err := vmtest.New(vmtest.Options{Regions: []vmtest.Region{{GPA: 0, Size: migrateRAM}}})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rand.NewChaCha8([32]byte{12}).Read(src.Memory(0))
	cases := []struct{ name, plugin, provider string }{
		{"rdma-tcp", pluginName, "tcp"},
		{"rdma-sockets", pluginName, "sockets"},
		{"rdma-net", pluginName, "net"},
		{"tcp", tcpPluginName, ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if c.provider != "" {
				if err := fabric.Providers("127.0.0.1", c.provider)[c.provider]; err != nil {
					b.Skipf("SKIPPED: provider %s does not work here: %v", c.provider, err)
				}
			}
			var sum migrateFigures
			for i := range b.N {
				f := migrateOnce(b, src, c.plugin, c.provider, i == 0)
				sum.bulk += f.bulk
				sum.data += f.data
				sum.engines += f.engines
				sum.src += f.src
				sum.dst += f.dst
			}
			gib := float64(sum.data) / (1 << 30)
			b.ReportMetric(float64(sum.data)*8/1e9/sum.bulk.Seconds(), "data-Gb/s")
			b.ReportMetric(sum.src.Seconds()/gib, "src-plugin-cpu-s/GiB")
			b.ReportMetric(sum.dst.Seconds()/gib, "dst-plugin-cpu-s/GiB")
			b.ReportMetric(sum.engines.Seconds()/gib, "engines-cpu-s/GiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// migrateFigures are one migration's measurements.
type migrateFigures struct {
	bulk              time.Duration // the source's bulk pass
	data              int64         // bytes of page data sent
	engines, src, dst time.Duration // CPU: this process, each plugin
}

// migrateOnce migrates src into a new destination through plugin (on
// provider, for rdma), checks every page when check is set, and resumes
// src for the next iteration.
func migrateOnce(b *testing.B, src *vmtest.VM, plugin, provider string, check bool) migrateFigures {
	dst, err := vmtest.New(vmtest.Options{Regions: []vmtest.Region{{GPA: 0, Size: migrateRAM}}, Incoming: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	cfg := map[string]any{"listen": localAddr(b)}
	if provider != "" {
		cfg["provider"], cfg["cleartext_pages"], cfg["unsafe_sockets"] = provider, true, provider == "sockets"
	} else {
		cfg["streams"], cfg["compress"] = 2, "none"
	}
	srcCreds, dstCreds, err := transport.MintCredentials(provider == "")
	if err != nil {
		b.Fatal(err)
	}
	p := session.Plugin{Path: plugintest.Path(b, plugin), Config: cfg}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The destination's session first, so the one new plugin process
	// after each Open is that side's.
	const prefix = "ferry-transpor" // the command name of both plugins
	before := plugintest.Children(prefix)
	ds, err := session.Open(ctx, dst.RAM(), session.Spec{Role: transport.RoleReceive, Transport: p, Log: log,
		Engine: engine.Options{Credentials: dstCreds, IncomingTimeout: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Close()
	dpid := plugintest.NewChild(b, before, plugintest.Children(prefix))
	before = plugintest.Children(prefix)
	ss, err := session.Open(ctx, src.RAM(), session.Spec{Role: transport.RoleSend, Transport: p, Log: log,
		Engine: engine.Options{Credentials: srcCreds}})
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	spid := plugintest.NewChild(b, before, plugintest.Children(prefix))

	cpu0, scpu0, dcpu0 := plugintest.SelfCPU(), plugintest.CPU(b, spid), plugintest.CPU(b, dpid)
	done := make(chan struct{})
	var drep engine.Report
	var derr error
	go func() { defer close(done); drep, derr = ds.Receive(ctx, dst) }()
	rep, serr := ss.Send(ctx, src, src)
	<-done
	f := migrateFigures{
		bulk: time.Duration(rep.BulkMS) * time.Millisecond, data: int64(rep.PagesSent) * framework.PageSize,
		engines: plugintest.SelfCPU() - cpu0, src: plugintest.CPU(b, spid) - scpu0, dst: plugintest.CPU(b, dpid) - dcpu0,
	}
	if serr != nil || derr != nil || rep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		b.Fatalf("source %s (%v), destination %s (%v)", rep.Status, serr, drep.Status, derr)
	}
	if check && !bytes.Equal(src.Memory(0), dst.Memory(0)) {
		b.Fatal("the destination's pages differ from the source's")
	}
	if err := src.Resume(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: total %d ms, bulk %d ms, %d data pages; cpu: engines %v, source plugin %v, destination plugin %v",
		b.Name(), rep.TotalMS, rep.BulkMS, rep.PagesSent, f.engines, f.src, f.dst)
	return f
}
