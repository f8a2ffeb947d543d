package engine

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// migrate runs Send and Receive against each other and returns both results.
func migrate(t *testing.T, src, dst *fakeVM, opt Options, tweak func(*pipe)) (Report, error, Report, error) {
	t.Helper()
	return migrateCtx(t, src, dst, nil, opt, tweak)
}

// migrateCtx is migrate with the receiver under rctx (nil: the sender's
// context, which ends after 30 s).
func migrateCtx(t *testing.T, src, dst *fakeVM, rctx context.Context, opt Options, tweak func(*pipe)) (Report, error, Report, error) {
	t.Helper()
	s, r := newPipe(src, dst)
	if tweak != nil {
		tweak(s.p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rctx == nil {
		rctx = ctx
	}
	var rrep Report
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() { rrep, rerr = Receive(rctx, dst, r, opt) })
	srep, serr := Send(ctx, src, s, opt)
	wg.Wait()
	return srep, serr, rrep, rerr
}

const mib = 1 << 20

func twoRegions(t *testing.T) (*fakeVM, *fakeVM) {
	layout := [][2]uint64{{0, 4 * mib}, {1 << 32, 2 * mib}}
	return newFakeVM(t, layout...), newFakeVM(t, layout...)
}

// everySeventh is twoRegions with every seventh page of the source
// written with b, the others holes.
func everySeventh(t *testing.T, b byte) (src, dst *fakeVM) {
	src, dst = twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p += 7 {
		src.write(p, b)
	}
	return src, dst
}

func TestMigrateCopiesEveryPage(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p += 3 {
		src.write(p, 0x11) // data pages; the others stay holes
	}
	copy(dst.mem, bytes.Repeat([]byte{0xee}, len(dst.mem))) // stale destination: zero runs must clear it
	srep, serr, rrep, rerr := migrate(t, src, dst, Options{}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if !bytes.Equal(src.mem, dst.mem) {
		t.Fatal("destination memory differs from the source")
	}
	if string(dst.loaded) != "fake-state-v1" || dst.resumed != 1 || src.resumed != 0 || !src.paused {
		t.Errorf("state %q dst resumed %d src resumed %d src paused %v", dst.loaded, dst.resumed, src.resumed, src.paused)
	}
	pages := src.layout.Pages()
	if srep.PagesSent != (pages+2)/3 || srep.PagesSent+srep.PagesZero < pages || srep.Status != "completed" || rrep.Status != "completed" {
		t.Errorf("report %+v", srep)
	}
}

// TestWritesDuringMigrationArrive writes pages at the worst moments: right
// after each dirty sync and continuously from a guest goroutine; every page
// must arrive with its final content.
func TestWritesDuringMigrationArrive(t *testing.T) {
	src, dst := twoRegions(t)
	pages := src.layout.Pages()
	stop := make(chan struct{})
	var guest sync.WaitGroup
	src.onSync = func(n int) {
		if n < 6 {
			src.write(uint64(n*7)%pages, byte(0x40+n)) // just after a sync
		}
	}
	guest.Go(func() {
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src.write((i*13)%pages, byte(i))
			if i%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
	srep, serr, _, rerr := migrate(t, src, dst, Options{MaxDowntime: time.Millisecond, MaxPasses: 5, VerifyPages: true}, nil)
	close(stop)
	guest.Wait()
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if srep.PagesChecked != pages {
		t.Errorf("page-exact check covered %d pages of %d", srep.PagesChecked, pages)
	}
	for p := uint64(0); p < pages; p++ {
		a, b := src.mem[p*4096:(p+1)*4096], dst.mem[p*4096:(p+1)*4096]
		if !bytes.Equal(a, b) {
			t.Fatalf("page %d: source %x.. destination %x..", p, a[:4], b[:4])
		}
	}
}

func TestFailuresResumeSource(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(src, dst *fakeVM, p *pipe)
		want  string
	}{
		{"transport fails mid-pass", func(_, _ *fakeVM, p *pipe) {
			p.failPages = func([]transport.PageRun) error { return errInjected }
		}, "injected"},
		{"save state fails", func(src, _ *fakeVM, _ *pipe) { src.failSave = errInjected }, "save state"},
		{"destination cannot load", func(_, dst *fakeVM, _ *pipe) { dst.failLoad = errInjected }, "load state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p++ {
				src.write(p, 0x22)
			}
			_, serr, _, rerr := migrate(t, src, dst, Options{}, func(p *pipe) { tc.setup(src, dst, p) })
			if serr == nil || !strings.Contains(serr.Error(), tc.want) || rerr == nil {
				t.Fatalf("send %v / receive %v, want both to fail with %q", serr, rerr, tc.want)
			}
			if src.paused {
				t.Error("source left paused after a failed migration")
			}
			if dst.resumed != 0 {
				t.Error("destination resumed after a failed migration")
			}
		})
	}
}

func TestLayoutMismatchRefused(t *testing.T) {
	src := newFakeVM(t, [2]uint64{0, 4 * mib})
	dst := newFakeVM(t, [2]uint64{0, 8 * mib})
	_, serr, _, rerr := migrate(t, src, dst, Options{}, nil)
	if rerr == nil || !strings.Contains(rerr.Error(), "same memory size") || serr == nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if src.paused || src.resumed != 0 {
		t.Error("source paused or resumed for a migration that never started")
	}
}

func TestMaxPassesBoundsNonConvergence(t *testing.T) {
	src, dst := twoRegions(t)
	src.onSync = func(int) { // every page dirty again after every sync
		for p := uint64(0); p < src.layout.Pages(); p++ {
			src.mu.Lock()
			src.dirty.Set(p)
			src.mu.Unlock()
		}
	}
	srep, serr, _, rerr := migrate(t, src, dst, Options{MaxDowntime: time.Nanosecond, MaxPasses: 3}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if srep.Passes != 4 { // 3 live passes + stop-and-copy
		t.Errorf("passes = %d, want 4", srep.Passes)
	}
}

func TestBandwidthCap(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x33)
	}
	start := time.Now()
	_, serr, _, rerr := migrate(t, src, dst, Options{Bandwidth: 24 * mib}, nil) // 6 MiB at 24 MiB/s
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("6 MiB at 24 MiB/s took %v", d)
	}
}

func TestIsZero(t *testing.T) {
	p := make([]byte, framework.PageSize)
	if !isZero(p) {
		t.Fatal("zero page not zero")
	}
	for _, i := range []int{0, 7, 8, 63, 64, 4095} {
		p[i] = 1
		if isZero(p) {
			t.Errorf("byte %d set, isZero true", i)
		}
		p[i] = 0
	}
}

// FuzzDecodeHello: a HELLO that decodes has at most maxRegions regions
// and is exactly what a source would write for its layout, flags and
// tag (its pages are its regions' pages); anything else is refused.
func FuzzDecodeHello(f *testing.F) {
	f.Add(encodeHello(framework.Layout{{GPA: 0, Size: 4096}}, 0, migrationTag{}))
	f.Add(encodeHello(framework.Layout{{GPA: 0, Size: 2 << 20}, {GPA: 1 << 32, Size: 1 << 20}}, helloMaySwitch|helloCheck, migrationTag{7: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHello(b)
		if err != nil {
			return
		}
		if len(h.Layout) > maxRegions {
			t.Fatalf("HELLO with %d regions accepted", len(h.Layout))
		}
		if again := encodeHello(h.layout(), h.Flags, h.Tag); !bytes.Equal(again, b) {
			t.Fatalf("HELLO %x decodes to %+v, which a source writes as %x", b, h, again)
		}
	})
}

// FuzzDecodeStateChunk: a chunk that decodes lies inside a blob of at
// most maxStateBytes and encodes back to the same bytes.
func FuzzDecodeStateChunk(f *testing.F) {
	f.Add(encodeStateChunk(10, 0, []byte("abc")))
	f.Add(encodeStateChunk(6, 3, []byte("def")))
	f.Fuzz(func(t *testing.T, b []byte) {
		total, off, data, err := decodeStateChunk(b)
		if err != nil {
			return
		}
		if total > maxStateBytes || off > total || uint64(len(data)) > total-off {
			t.Fatalf("chunk %d+%d of a %d-byte blob accepted", off, len(data), total)
		}
		if again := encodeStateChunk(total, off, data); !bytes.Equal(again, b) {
			t.Fatalf("chunk %x re-encodes as %x", b, again)
		}
	})
}

// TestPageCheckCatchesALostPage drops one page on the way: the page-exact
// check must fail the migration and the source must resume.
func TestPageCheckCatchesALostPage(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x44)
	}
	_, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true}, func(p *pipe) {
		p.failPages = func(runs []transport.PageRun) error {
			if runs[0].Count > 1 {
				runs[0].First++ // lose the first page of the first run
				runs[0].Count--
			}
			return nil
		}
	})
	if serr == nil || !strings.Contains(serr.Error(), "page-exact check failed: 1 pages differ") || rerr == nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if src.paused || dst.resumed != 0 {
		t.Errorf("source paused %v, destination resumed %d", src.paused, dst.resumed)
	}
}
