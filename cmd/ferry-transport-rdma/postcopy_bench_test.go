package main

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/postcopy"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// BenchmarkPostcopyFaultsPlugin is framework/vmtest's
// BenchmarkPostcopyFaultsTCPPlugin over this plugin on libfabric's tcp
// provider: a 16 MiB guest (source writing 16 random pages a millisecond)
// switched to post-copy after the first 8 MiB batch of a bulk pass
// capped at 1 MiB/s (the pusher keeps the cap, so most faults go over the
// network); the destination reads every page once in a random order. It
// reports the destination's fault latency (the report's, every fault
// included; net-p50-us etc.: network faults only) and the reader's, and
// pages requested. docs/BENCHMARKS.md
// records its figures.
func BenchmarkPostcopyFaultsPlugin(b *testing.B) {
	benchRDMAFaults(b, func(b *testing.B, cfg map[string]any, src, dst *vmtest.VM, sopt, dopt engine.Options) (engine.Report, engine.Report, error, error) {
		p := session.Plugin{Path: plugintest.Path(b, pluginName), Config: cfg}
		log := slog.New(slog.DiscardHandler)
		sspec := session.Spec{Role: transport.RoleSend, Transport: p, Log: log, Engine: sopt, Progress: sopt.Progress}
		sspec.Engine.Progress = nil
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var drep engine.Report
		var derr error
		var wg sync.WaitGroup
		wg.Go(func() { drep, derr = session.Receive(ctx, dst, session.Spec{Transport: p, Log: log, Engine: dopt}) })
		srep, serr := session.Send(ctx, src, src, sspec)
		wg.Wait()
		return srep, drep, serr, derr
	})
}

// BenchmarkPostcopyFaultsInProcess is BenchmarkPostcopyFaultsPlugin with
// the transport in this process on both sides (no plugin, no gRPC).
func BenchmarkPostcopyFaultsInProcess(b *testing.B) {
	benchRDMAFaults(b, func(b *testing.B, cfg map[string]any, src, dst *vmtest.VM, sopt, dopt engine.Options) (engine.Report, engine.Report, error, error) {
		sopt.Transport, dopt.Transport = schema.Config(cfg), schema.Config(cfg)
		sopt.Log, dopt.Log = slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var drep engine.Report
		var derr error
		var wg sync.WaitGroup
		wg.Go(func() { drep, derr = engine.Receive(ctx, dst, rdma.New(hclog.NewNullLogger()), dopt) })
		srep, serr := engine.Send(ctx, src, rdma.New(hclog.NewNullLogger()), sopt)
		wg.Wait()
		return srep, drep, serr, derr
	})
}

type rdmaSide func(b *testing.B, cfg map[string]any, src, dst *vmtest.VM, sopt, dopt engine.Options) (engine.Report, engine.Report, error, error)

func benchRDMAFaults(b *testing.B, side rdmaSide) {
	const prov = "tcp"
	if err := fabric.Providers("127.0.0.1", prov)[prov]; err != nil {
		b.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
	}
	if err := postcopy.Available(); err != nil {
		b.Skipf("POST-COPY NOT MEASURED: userfaultfd is not available here: %v", err)
	}
	var p50, p99, maxUS, np50, np99, nmax, rp50, req, local float64
	for b.Loop() {
		src, err := vmtest.New(vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 16})
		if err != nil {
			b.Fatal(err)
		}
		var dst *vmtest.VM
		var reader sync.WaitGroup
		var lat []time.Duration
		dst, err = vmtest.New(vmtest.Options{Incoming: true, OnResume: func() {
			reader.Go(func() {
				order := make([]uint64, dst.Pages())
				for i := range order {
					order[i] = uint64(i)
				}
				for i := len(order) - 1; i > 0; i-- { // a fixed shuffle
					j := int((uint64(i) * 0x9E3779B97F4A7C15 >> 11) % uint64(i+1))
					order[i], order[j] = order[j], order[i]
				}
				for _, p := range order {
					t := time.Now()
					dst.Page(p)
					lat = append(lat, time.Since(t))
				}
			})
		}})
		if err != nil {
			b.Fatal(err)
		}
		sc, dc, err := transport.MintCredentials(false)
		if err != nil {
			b.Fatal(err)
		}
		start := make(chan struct{})
		var once sync.Once
		sopt := engine.Options{Credentials: sc, Bandwidth: 1 << 20, StartPostcopy: start, ReconnectTimeout: 20 * time.Second,
			Progress: func(p engine.Progress) {
				if p.Phase == engine.PhaseBulk && p.PagesSent > 64 {
					once.Do(func() { close(start) })
				}
			}}
		dopt := engine.Options{Credentials: dc, ReconnectTimeout: 20 * time.Second, IncomingTimeout: 30 * time.Second}
		cfg := map[string]any{"provider": prov, "listen": benchAddr(b), "cleartext_pages": true}
		srep, drep, serr, derr := side(b, cfg, src, dst, sopt, dopt)
		reader.Wait()
		if serr != nil || derr != nil || srep.Mode != engine.ModePostcopy {
			b.Fatalf("source %s %q (%v), destination %s (%v)", srep.Status, srep.Mode, serr, drep.Status, derr)
		}
		if err := dst.Verify(); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		r50 := float64(lat[len(lat)/2]) / float64(time.Microsecond)
		b.Logf("rdma/%s: fault p50 %d us p99 %d us max %d us (reader p50 %.0f us), %d requested, %d pushed, %d landed-local, post-copy %d ms",
			prov, drep.FaultP50US, drep.FaultP99US, drep.FaultMaxUS, r50, drep.PagesRequested, srep.PagesPushed, drep.PagesLandLocal, drep.PostcopyMS)
		p50 += float64(drep.FaultP50US)
		p99 += float64(drep.FaultP99US)
		maxUS = max(maxUS, float64(drep.FaultMaxUS))
		np50 += float64(drep.FaultNetP50US)
		np99 += float64(drep.FaultNetP99US)
		nmax = max(nmax, float64(drep.FaultNetMaxUS))
		rp50 += r50
		req += float64(drep.PagesRequested)
		local += float64(drep.PagesLandLocal + drep.PagesZeroLocal)
		src.Close()
		dst.Close()
	}
	n := float64(b.N)
	b.ReportMetric(p50/n, "p50-us")
	b.ReportMetric(p99/n, "p99-us")
	b.ReportMetric(maxUS, "max-us")
	b.ReportMetric(np50/n, "net-p50-us")
	b.ReportMetric(np99/n, "net-p99-us")
	b.ReportMetric(nmax, "net-max-us")
	b.ReportMetric(rp50/n, "reader-p50-us")
	b.ReportMetric(req/n, "requested/op")
	b.ReportMetric(local/n, "local/op")
}

// benchAddr is a free port on 127.0.0.1.
func benchAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
