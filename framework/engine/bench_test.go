package engine

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// sink is a sending transport that moves nothing: it counts page runs and
// answers the engine protocol as a destination that accepts everything
// would (READY, LOADED, RUNNING), so a benchmark measures the source alone.
type sink struct {
	replies chan transport.Message
	runs    uint64
}

func newSink() *sink { return &sink{replies: make(chan transport.Message, 8)} }

func (k *sink) Info(context.Context) (transport.Info, error) {
	return transport.Info{Name: "sink"}, nil
}
func (k *sink) Schema(context.Context) (schema.Schema, error) { return nil, nil }
func (k *sink) Open(context.Context, transport.OpenRequest) error {
	return nil
}
func (k *sink) SendPages(_ context.Context, runs []transport.PageRun) error {
	k.runs += uint64(len(runs))
	return nil
}
func (k *sink) Flush(context.Context) error { return nil }
func (k *sink) SendMessage(_ context.Context, m transport.Message) error {
	switch m.Kind {
	case msgHello:
		k.replies <- transport.Message{Kind: msgReady, Payload: encodeReady(0, "")}
	case msgState:
		k.replies <- transport.Message{Kind: msgLoaded}
	case msgCommit:
		k.replies <- transport.Message{Kind: msgRunning}
	}
	return nil
}
func (k *sink) RecvMessage(ctx context.Context) (transport.Message, error) {
	select {
	case m := <-k.replies:
		return m, nil
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	}
}
func (k *sink) Stats(context.Context) (transport.Stats, error) { return transport.Stats{}, nil }
func (k *sink) Close() error                                   { return nil }

// The urgent path (post-copy) is not part of this benchmark.
func (k *sink) SendUrgent(context.Context, transport.Message) error {
	return transport.ErrNotSupported
}
func (k *sink) RecvUrgent(context.Context) (transport.Message, error) {
	return transport.Message{}, transport.ErrNotSupported
}
func (k *sink) SendPagesUrgent(context.Context, []transport.PageRun) error {
	return transport.ErrNotSupported
}
func (k *sink) Landed(context.Context) ([]transport.PageRun, error) {
	return nil, transport.ErrNotSupported
}

// cpuNow is the process's user+system CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBulkPass8GiB sends an 8 GiB guest whose RAM is a sparse memfd
// through a sink and reports the bulk pass's wall time and the process's
// CPU time during it (bulk-ms, bulk-cpu-ms), per migration:
//   - hinted: every page hinted free by a provider (2048 ranges of 4 MiB,
//     as a balloon reports them), answered before the pass starts;
//   - hinted-late50ms: the same provider answers after 50 ms;
//   - holes: no provider, nothing populated;
//   - data1pct: no provider, every 100th page populated with data.
//
// Run: go test ./framework/engine/ -run '^$' -bench BulkPass8GiB -benchtime 5x
func BenchmarkBulkPass8GiB(b *testing.B) {
	const size = 8 << 30
	for _, tc := range []struct {
		name  string
		data  uint64        // every data-th page holds data; 0: none
		hints bool          // a provider hints every page
		late  time.Duration // it answers this late (and the pass is not held for it)
	}{{"hinted", 0, true, 0}, {"hinted-late50ms", 0, true, 50 * time.Millisecond},
		{"holes", 0, false, 0}, {"data1pct", 100, false, 0}} {
		b.Run(tc.name, func(b *testing.B) {
			src := newFakeVM(b, [2]uint64{0, size})
			pages := src.layout.Pages()
			if tc.data > 0 {
				for p := uint64(0); p < pages; p += tc.data {
					src.write(p, 0x5a)
				}
			}
			var bulkWall, bulkCPU time.Duration
			for i := 0; i < b.N; i++ {
				emitted := make(chan struct{})
				var opt Options
				if tc.hints {
					prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
						if req.Generation != 1 {
							return nil
						}
						select {
						case <-time.After(tc.late):
						case <-ctx.Done():
							return ctx.Err()
						}
						var rs []hint.Range
						for p := uint64(0); p < pages; p += 1024 {
							rs = append(rs, hint.Range{First: p, Count: 1024})
						}
						err := emit(rs)
						if tc.late == 0 {
							close(emitted)
						}
						return err
					}}
					opt.Hints = []HintSource{source("balloon", prov, time.Second)}
				}
				if !tc.hints || tc.late > 0 {
					close(emitted) // the pass starts without waiting for it
				}
				var wallAt time.Time
				var cpuAt time.Duration
				inBulk, counted := false, false
				opt.Progress = func(p Progress) {
					switch {
					case p.Phase == PhaseBulk && !inBulk && !counted:
						// Providers answer before the pass (where the engine
						// asks before this event); a bounded wait otherwise.
						select {
						case <-emitted:
						case <-time.After(2 * time.Second):
						}
						inBulk, wallAt, cpuAt = true, time.Now(), cpuNow()
					case inBulk && (p.Phase == PhaseDirty || p.Phase == PhaseStop):
						bulkWall += time.Since(wallAt)
						bulkCPU += cpuNow() - cpuAt
						inBulk, counted = false, true
					}
				}
				src.paused = false
				rep, err := Send(context.Background(), src, newSink(), opt)
				if err != nil {
					b.Fatalf("send: %v (%+v)", err, rep)
				}
				if tc.hints && tc.late == 0 && rep.PagesSkipped != pages {
					b.Fatalf("skipped %d pages of %d", rep.PagesSkipped, pages)
				}
			}
			b.ReportMetric(float64(bulkWall.Microseconds())/1000/float64(b.N), "bulk-ms")
			b.ReportMetric(float64(bulkCPU.Microseconds())/1000/float64(b.N), "bulk-cpu-ms")
		})
	}
}
