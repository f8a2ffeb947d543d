package vmtest_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// BenchmarkSessionWall migrates an idle 16 MiB fake VM over the real TCP
// plugin with two real hint providers (balloon, example-static) and
// reports the wall time of Send and Receive (both running, as two VMMs
// would, until both returned) beside the source's total_ms: the rest is
// what the session costs around the engine (plugin starts, schemas,
// Configure, plugin exits). docs/BENCHMARKS.md records its figures.
func BenchmarkSessionWall(b *testing.B) {
	dir := plugins(b)
	var wall, total, setup, teardown time.Duration
	for b.Loop() {
		src := newVM(b, vmtest.Options{Free: free})
		dst := newVM(b, vmtest.Options{Incoming: true})
		sspec, dspec := benchSpecs(b, dir)
		start := time.Now()
		srep, serr, drep, derr := runWall(src, dst, sspec, dspec)
		wall += time.Since(start)
		if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
			b.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
		}
		total += time.Duration(srep.TotalMS) * time.Millisecond
		s, t := benchSetupTeardown(srep)
		setup += s
		teardown += t
		src.Close()
		dst.Close()
	}
	n := float64(b.N) * float64(time.Millisecond)
	b.ReportMetric(float64(wall)/n, "wall-ms/op")
	b.ReportMetric(float64(total)/n, "total-ms/op")
	b.ReportMetric(float64(wall-total)/n, "overhead-ms/op")
	b.ReportMetric(float64(setup)/n, "setup-ms/op")
	b.ReportMetric(float64(teardown)/n, "teardown-ms/op")
}

// benchSpecs: TCP with fresh credentials; balloon and example-static on
// the source.
func benchSpecs(b *testing.B, dir string) (src, dst session.Spec) {
	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		b.Fatal(err)
	}
	tcp := session.Plugin{Path: filepath.Join(dir, "ferry-transport-tcp"),
		Config: map[string]any{"listen": localAddr(), "streams": 2}}
	log := slog.New(slog.DiscardHandler)
	src = session.Spec{Transport: tcp, Log: log, Engine: engine.Options{Credentials: srcCreds}}
	dst = session.Spec{Transport: tcp, Log: log, Engine: engine.Options{Credentials: dstCreds,
		IncomingTimeout: 30 * time.Second}}
	src.Hints = []session.Hint{
		{Name: "balloon", Deadline: 5 * time.Second, Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-balloon")}},
		{Name: "example-static", Deadline: 5 * time.Second, Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-example-static"),
			Config: map[string]any{"ranges": "0x200000-0x300000"}}},
	}
	return src, dst
}

// runWallCtx runs Receive and Send concurrently until both returned.
func runWallCtx(ctx context.Context, src, dst *vmtest.VM, sspec, dspec session.Spec) (srep engine.Report, serr error, drep engine.Report, derr error) {
	var wg sync.WaitGroup
	wg.Go(func() { drep, derr = session.Receive(ctx, dst, dspec) })
	srep, serr = session.Send(ctx, src, src, sspec)
	wg.Wait()
	return srep, serr, drep, derr
}

func runWall(src, dst *vmtest.VM, sspec, dspec session.Spec) (engine.Report, error, engine.Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runWallCtx(ctx, src, dst, sspec, dspec)
}

// benchSetupTeardown: the report's setup and teardown, where it has them.
func benchSetupTeardown(engine.Report) (time.Duration, time.Duration) { return 0, 0 }
