package vmtest_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// BenchmarkSessionWall migrates an idle 16 MiB fake VM over the real TCP
// plugin with two real hint providers (balloon, example-static) and
// reports the wall time of Send and Receive (both running, as two VMMs
// would, until both returned their reports) beside the source's
// total_ms: the rest is what the session costs around the engine
// (plugin starts, schemas, Configure; plugin exits where the report
// waits for them). closed-ms is the wall time until every plugin
// process is gone. docs/BENCHMARKS.md records its figures.
func BenchmarkSessionWall(b *testing.B) {
	dir := plugins(b)
	var wall, closed, total, setup, teardown time.Duration
	for b.Loop() {
		src := newVM(b, vmtest.Options{Free: free})
		dst := newVM(b, vmtest.Options{Incoming: true})
		sspec, dspec := benchSpecs(b, dir)
		start := time.Now()
		stop, srep, drep, serr, derr := runWall(src, dst, sspec, dspec)
		wall += time.Since(start)
		stop()
		closed += time.Since(start)
		if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
			b.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
		}
		total += time.Duration(srep.TotalMS) * time.Millisecond
		b.Logf("source: setup %d, total %d = connect %d + bulk %d + dirty %d (%d passes) + switch-over %d + teardown %d ms",
			srep.SetupMS, srep.TotalMS, srep.ConnectMS, srep.BulkMS, srep.DirtyMS, srep.Passes, srep.SwitchoverMS, srep.TeardownMS)
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
	b.ReportMetric(float64(closed)/n, "closed-ms/op")
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
	src = session.Spec{Role: transport.RoleSend, Transport: tcp, Log: log, Engine: engine.Options{Credentials: srcCreds}}
	dst = session.Spec{Role: transport.RoleReceive, Transport: tcp, Log: log, Engine: engine.Options{Credentials: dstCreds,
		IncomingTimeout: 30 * time.Second}}
	src.Hints = []session.Hint{
		{Name: "balloon", Deadline: 5 * time.Second, Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-balloon")}},
		{Name: "example-static", Deadline: 5 * time.Second, Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-example-static"),
			Config: map[string]any{"ranges": "0x200000-0x300000"}}},
	}
	return src, dst
}

// runWall runs Receive and Send concurrently, as two VMMs would, and
// returns once both returned their reports, and stop, which stops
// their plugins (Session.Close) and waits for that.
func runWall(src, dst *vmtest.VM, sspec, dspec session.Spec) (stop func(), srep, drep engine.Report, serr, derr error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sessions []*session.Session
	side := func(ram framework.Layout, spec session.Spec, run func(*session.Session) (engine.Report, error)) (engine.Report, error) {
		s, err := session.Open(ctx, ram, spec)
		if err != nil {
			return engine.Report{}, err
		}
		mu.Lock()
		sessions = append(sessions, s)
		mu.Unlock()
		return run(s)
	}
	wg.Go(func() {
		drep, derr = side(dst.RAM(), dspec, func(s *session.Session) (engine.Report, error) { return s.Receive(ctx, dst) })
	})
	srep, serr = side(src.RAM(), sspec, func(s *session.Session) (engine.Report, error) { return s.Send(ctx, src, src) })
	wg.Wait()
	return func() {
		for _, s := range sessions {
			s.Close()
		}
		cancel()
	}, srep, drep, serr, derr
}

// benchSetupTeardown: the report's setup and teardown.
func benchSetupTeardown(r engine.Report) (time.Duration, time.Duration) {
	return time.Duration(r.SetupMS) * time.Millisecond, time.Duration(r.TeardownMS) * time.Millisecond
}
