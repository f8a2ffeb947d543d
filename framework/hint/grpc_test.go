package hint_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

var errClasses = []error{hint.ErrNotSupported, hint.ErrBadConfig, hint.ErrPluginGone, context.DeadlineExceeded, context.Canceled}

// classed is err of class (nil: an error of no class).
func classed(what string, class error) error {
	if class == nil {
		return errors.New(what + ": no class at all")
	}
	return fmt.Errorf("%s: the VMM said no: %w", what, class)
}

// sameClass checks that got has want's text and class, and no other.
func sameClass(t *testing.T, what string, got, want error, class error) {
	t.Helper()
	if got == nil || got.Error() != want.Error() || (class != nil && !errors.Is(got, class)) {
		t.Errorf("%s, class %v: got %v, want %v", what, class, got, want)
	}
	for _, other := range errClasses {
		if other != class && errors.Is(got, other) {
			t.Errorf("%s, class %v: the error also matches %v", what, class, other)
		}
	}
}

// TestErrorClassesOverGRPC: a provider's error reaches the host with its
// class and its text; so does a Host's error reach the provider, through
// the broker.
func TestErrorClassesOverGRPC(t *testing.T) {
	for _, class := range append(errClasses, nil) {
		want := classed("configure", class)
		p := overGRPC(t, &hint.Mock{ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return want }}, nil)
		sameClass(t, "provider → host", p.Configure(tctx(t), nil, hint.VM{}, nil), want, class)

		hostErr := classed("balloon done", class)
		var got error
		p = overGRPC(t, &hint.Mock{ConfigureFunc: func(ctx context.Context, _ hint.Config, _ hint.VM, h hint.Host) error {
			got = h.BalloonDone(ctx)
			return nil
		}}, nil)
		host := &hint.MockHost{BalloonDoneFunc: func(context.Context) error { return hostErr }}
		if err := p.Configure(tctx(t), nil, hint.VM{}, host); err != nil {
			t.Fatal(err)
		}
		sameClass(t, "host → provider", got, hostErr, class)
	}
}

// TestMockDefaults: a Mock without closures supports nothing, in process
// and over gRPC; so does a MockHost, in process and over the broker.
func TestMockDefaults(t *testing.T) {
	for name, p := range map[string]hint.Provider{"in process": &hint.Mock{}, "gRPC": overGRPC(t, &hint.Mock{}, nil)} {
		ctx := tctx(t)
		_, e1 := p.Info(ctx)
		_, e2 := p.Schema(ctx)
		e3 := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{})
		e4 := p.Hints(ctx, hint.Request{Generation: 1}, func([]hint.Range) error { return nil })
		e5 := p.Close(ctx, true)
		for i, err := range []error{e1, e2, e3, e4, e5} {
			if !errors.Is(err, hint.ErrNotSupported) {
				t.Errorf("%s: method %d = %v; want ErrNotSupported", name, i+1, err)
			}
		}
	}
	var errs []error
	p := overGRPC(t, &hint.Mock{ConfigureFunc: func(ctx context.Context, _ hint.Config, _ hint.VM, h hint.Host) error {
		_, e1 := h.BalloonHint(ctx)
		e2 := h.BalloonDone(ctx)
		_, _, e3 := h.CMMABits(ctx, 0, 1)
		errs = []error{e1, e2, e3}
		return nil
	}}, nil)
	for name, host := range map[string]hint.Host{"MockHost over the broker": &hint.MockHost{}, "nil host": nil} {
		errs = nil
		if err := p.Configure(tctx(t), nil, hint.VM{}, host); err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if !errors.Is(err, hint.ErrNotSupported) {
				t.Errorf("%s: Host method %d = %v; want ErrNotSupported", name, i+1, err)
			}
		}
	}
}

// TestConversions: info, schema, configuration, the VM and the request
// cross gRPC unchanged; the plugin sees its own files.
func TestConversions(t *testing.T) {
	info := hint.Info{Name: "pagemap", Version: "2.1", Meaning: hint.MeaningZero}
	want := plugintest.SampleSchema()
	files := []*os.File{plugintest.Memfd(t, "ram-0", 1<<21+4096), plugintest.Memfd(t, "ram-1", 1<<30)} // as large as the regions below need
	var gotCfg hint.Config
	var gotVM hint.VM
	var gotReq hint.Request
	p := overGRPC(t, &hint.Mock{
		InfoFunc:   func(context.Context) (hint.Info, error) { return info, nil },
		SchemaFunc: func(context.Context) (hint.Schema, error) { return want, nil },
		ConfigureFunc: func(_ context.Context, cfg hint.Config, vm hint.VM, _ hint.Host) error {
			gotCfg, gotVM = cfg, vm
			return nil
		},
		HintsFunc: func(_ context.Context, req hint.Request, _ func([]hint.Range) error) error {
			gotReq = req
			return nil
		},
	}, files)
	ctx := tctx(t)
	if got, err := p.Info(ctx); err != nil || got != info {
		t.Errorf("Info = %+v, %v", got, err)
	}
	if s, err := p.Schema(ctx); err != nil || !reflect.DeepEqual(s, want) {
		t.Errorf("Schema = %#v, %v\nwant %#v", s, err, want)
	}
	cfg := hint.Config{"path": "/proc", "chunk": int64(8), "scan": false, "every": int64(-1)}
	vm := hint.VM{ID: "vm-7", PID: 4242, RAM: []hint.Region{
		{GPA: 0, Size: 1 << 30, HostAddr: 0x7f00_0000_0000, File: 1, Offset: 0},
		{GPA: 1 << 32, Size: 1 << 21, HostAddr: 0x7f80_0000_0000, File: 0, Offset: 4096},
	}}
	if err := p.Configure(ctx, cfg, vm, nil); err != nil {
		t.Fatal(err)
	}
	vm.Files = files
	if !reflect.DeepEqual(gotCfg, cfg) || !reflect.DeepEqual(gotVM, vm) {
		t.Errorf("plugin got %#v, %#v\nwant %#v, %#v", gotCfg, gotVM, cfg, vm)
	}
	req := hint.Request{Generation: 1 << 40, Deadline: time.Now().Add(time.Hour).Round(0)}
	if err := p.Hints(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	if gotReq.Generation != req.Generation || !gotReq.Deadline.Equal(req.Deadline) {
		t.Errorf("plugin got request %+v, want %+v", gotReq, req)
	}
	if err := p.Configure(ctx, hint.Config{"x": 1.5}, hint.VM{}, nil); !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("Configure with a float attribute = %v; want ErrBadConfig", err)
	}
	if err := p.Configure(ctx, nil, hint.VM{RAM: []hint.Region{{Size: 4096, File: 2}}}, nil); !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("Configure with a file the plugin does not have = %v; want ErrBadConfig", err)
	}
}

// TestHintsSplit: one large emit reaches the host whole, in order, in
// messages of bounded size; empty emits send nothing.
func TestHintsSplit(t *testing.T) {
	var sent []hint.Range
	for i := range uint64(70000) {
		sent = append(sent, hint.Range{First: 2 * i, Count: 1 + i%3})
	}
	p := overGRPC(t, &hint.Mock{HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		if err := emit(nil); err != nil {
			return err
		}
		return emit(sent)
	}}, nil)
	var batches [][]hint.Range
	err := p.Hints(tctx(t), hint.Request{Generation: 1}, func(rs []hint.Range) error {
		batches = append(batches, rs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 3 {
		t.Errorf("%d batches for 70000 ranges, want 3", len(batches))
	}
	if all := slices.Concat(batches...); !slices.Equal(all, sent) {
		t.Errorf("the host got %d ranges, not the %d sent in order", len(all), len(sent))
	}
}

// TestEmitError: when the host's emit fails, Hints returns that error at
// once and the provider's next emit fails.
func TestEmitError(t *testing.T) {
	providerSaw := make(chan error, 1)
	p := overGRPC(t, &hint.Mock{HintsFunc: func(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		for {
			if err := emit([]hint.Range{{First: 0, Count: 1}}); err != nil {
				providerSaw <- err
				return err
			}
			time.Sleep(time.Millisecond)
		}
	}}, nil)
	stop := errors.New("the engine stopped listening")
	start := time.Now()
	err := p.Hints(tctx(t), hint.Request{Generation: 1, Deadline: time.Now().Add(10 * time.Second)},
		func([]hint.Range) error { return stop })
	if !errors.Is(err, stop) || time.Since(start) > 2*time.Second {
		t.Errorf("Hints = %v after %v; want emit's error at once", err, time.Since(start))
	}
	select {
	case err := <-providerSaw:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the provider's emit failed with %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the provider's emit did not fail after the host stopped listening")
	}
}

// TestEmitAfterReturn: a provider goroutine that emits after Hints
// returned gets an error; nothing reaches the host.
func TestEmitAfterReturn(t *testing.T) {
	kept := make(chan func([]hint.Range) error, 1)
	p := overGRPC(t, &hint.Mock{HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		kept <- emit
		return nil
	}}, nil)
	got := 0
	if err := p.Hints(tctx(t), hint.Request{Generation: 1}, func(rs []hint.Range) error { got += len(rs); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := (<-kept)([]hint.Range{{First: 0, Count: 1}}); err == nil {
		t.Error("emit after Hints returned succeeded")
	}
	if got != 0 {
		t.Errorf("the host got %d ranges", got)
	}
}

// TestHintsIgnoringContext: a provider that ignores its context cannot
// hold the host past the deadline; the next request waits for it (the
// provider sees one call at a time) only until its own deadline, and
// once the late call ran 250 ms past its deadline (overrunGrace) the
// next one is refused at once, as hung, saying why; Close is not held
// up; once the provider returns, requests work again.
func TestHintsIgnoringContext(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	p := overGRPC(t, &hint.Mock{
		HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				<-release
			}
			return nil
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}, nil)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	for i, want := range []error{context.DeadlineExceeded, context.DeadlineExceeded} {
		start := time.Now()
		dl := start.Add(200 * time.Millisecond)
		err := p.Hints(context.Background(), hint.Request{Generation: uint64(i + 1), Deadline: dl}, nil)
		// Request 1 never returns before release, and request 2 would
		// wait for it: the bound has room for a loaded machine.
		if !errors.Is(err, want) || time.Since(start) > 200*time.Millisecond+3*time.Second {
			t.Errorf("request %d = %v after %v; want %v at the deadline", i+1, err, time.Since(start), want)
		}
	}
	time.Sleep(100 * time.Millisecond) // request 1 is now 300 ms past its deadline
	start := time.Now()
	err := p.Hints(context.Background(), hint.Request{Generation: 3, Deadline: start.Add(10 * time.Second)}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Hints for generation 1 is still running") ||
		time.Since(start) > 3*time.Second {
		t.Errorf("request 3 = %v after %v; want it refused at once, as hung, naming generation 1", err, time.Since(start))
	}
	if err := p.Close(tctx(t), false); err != nil {
		t.Errorf("Close while the provider hangs: %v", err)
	}
	close(release)
	if err := p.Hints(tctx(t), hint.Request{Generation: 4}, nil); err != nil {
		t.Errorf("request after the provider returned: %v", err)
	}
}

// TestHintsSlowAfterCancel: a provider that honours a cancel, but slowly
// (its goroutine returns 400 ms after the host cancelled the call, well
// before the call's deadline: a loaded machine), is not taken for one
// that ignores its context. The next request waits for it and gets its
// answer, as before the plugin side refused overrunning calls: a
// cancelled request is no verdict on the provider (requests_cancelled),
// and refusing the next one would cost its hints and call it hung.
func TestHintsSlowAfterCancel(t *testing.T) {
	p := overGRPC(t, &hint.Mock{
		HintsFunc: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			if req.Generation == 1 {
				<-ctx.Done()
				time.Sleep(400 * time.Millisecond) // slow to notice: a loaded machine
				return ctx.Err()
			}
			return emit([]hint.Range{{First: 1, Count: 1}})
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel) // the engine's next dirty sync
	err := p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(2 * time.Second)}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("request 1 = %v; want it cancelled", err)
	}
	start := time.Now()
	var got []hint.Range
	err = p.Hints(context.Background(), hint.Request{Generation: 2, Deadline: start.Add(2 * time.Second)},
		func(rs []hint.Range) error { got = append(got, rs...); return nil })
	if err != nil || len(got) != 1 {
		t.Errorf("request 2 = %v, %v after %v; want its range once the cancelled call returned", got, err, time.Since(start))
	}
}

// TestHostCallbacks: the Host's capabilities reach the host process
// through the broker: long balloon sessions arrive whole, CMMA reads are
// bounded, and the window's end ends them.
func TestHostCallbacks(t *testing.T) {
	var gpas []hint.GPARange
	for i := range uint64(70000) {
		gpas = append(gpas, hint.GPARange{GPA: i << 21, Size: 1 << 21})
	}
	var asked []int
	done := 0
	host := &hint.MockHost{
		BalloonHintFunc: func(context.Context) ([]hint.GPARange, error) { return gpas, nil },
		BalloonDoneFunc: func(context.Context) error { done++; return nil },
		CMMABitsFunc: func(_ context.Context, start uint64, count int) (uint64, []byte, error) {
			asked = append(asked, count)
			return start + 1, make([]byte, count+10), nil // more than asked: cut
		},
	}
	var h hint.Host
	p := overGRPC(t, &hint.Mock{
		ConfigureFunc: func(_ context.Context, _ hint.Config, _ hint.VM, hh hint.Host) error { h = hh; return nil },
		CloseFunc: func(ctx context.Context, final bool) error {
			if final {
				return h.BalloonDone(ctx) // the window's Host still works here
			}
			return nil
		},
	}, []*os.File{plugintest.Memfd(t, "ram", 1<<30)})
	ctx := tctx(t)
	vm := hint.VM{RAM: []hint.Region{{Size: 1 << 30}}} // 262144 pages: room for 70000 ranges
	if err := p.Configure(ctx, nil, vm, host); err != nil {
		t.Fatal(err)
	}
	if got, err := h.BalloonHint(ctx); err != nil || !slices.Equal(got, gpas) {
		t.Errorf("BalloonHint: %d ranges (%v), want the %d the VMM hinted", len(got), err, len(gpas))
	}
	for _, c := range []struct{ ask, want int }{{100, 100}, {1 << 22, hint.MaxCMMABits}, {0, 0}, {-5, 0}} {
		asked = nil
		first, values, err := h.CMMABits(ctx, 77, c.ask)
		if err != nil || first != 78 || len(values) != c.want || !slices.Equal(asked, []int{c.want}) {
			t.Errorf("CMMABits(77, %d) = %d, %d values, %v (the VMM was asked %v); want 78, %d values",
				c.ask, first, len(values), err, asked, c.want)
		}
	}
	if err := p.Close(ctx, true); err != nil || done != 1 {
		t.Errorf("Close(final) = %v; BalloonDone reached the VMM %d times, want 1", err, done)
	}
	if _, err := h.BalloonHint(ctx); !errors.Is(err, hint.ErrNotSupported) {
		t.Errorf("BalloonHint after the window closed = %v; want ErrNotSupported", err)
	}
	// A new window gets a working Host again; the old one stays closed.
	old := h
	if err := p.Configure(ctx, nil, vm, host); err != nil {
		t.Fatal(err)
	}
	if err := h.BalloonDone(ctx); err != nil || done != 2 {
		t.Errorf("BalloonDone in the second window = %v (%d calls)", err, done)
	}
	if err := old.BalloonDone(ctx); !errors.Is(err, hint.ErrNotSupported) || done != 2 {
		t.Errorf("BalloonDone through the first window's Host = %v; want ErrNotSupported", err)
	}
}

// TestBalloonHintBounded: the plugin side keeps no more of a balloon
// hint session than one range per page of guest RAM (or one stream
// message, for a guest smaller than that): a VMM that sends more gets
// the provider an error and no ranges at all.
func TestBalloonHintBounded(t *testing.T) {
	const mib = 1 << 20
	pageRanges := func(n int) []hint.GPARange {
		out := make([]hint.GPARange, n)
		for i := range out {
			out[i] = hint.GPARange{GPA: uint64(i) * hint.PageSize, Size: hint.PageSize}
		}
		return out
	}
	big := hint.VM{RAM: []hint.Region{{Size: 256 * mib}}} // 65536 pages, more than a message's ranges
	for _, c := range []struct {
		name    string
		vm      hint.VM
		session int // ranges the VMM sends
		ok      bool
	}{
		{"every page", big, 65536, true},
		{"one range too many", big, 65537, false},
		{"twice the guest", big, 2 * 65536, false},
		{"no RAM, one message", hint.VM{}, hint.MaxRangesPerMessage, true},
		{"no RAM, more than a message", hint.VM{}, hint.MaxRangesPerMessage + 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := pageRanges(c.session)
			host := &hint.MockHost{BalloonHintFunc: func(context.Context) ([]hint.GPARange, error) { return sent, nil }}
			var h hint.Host
			p := overGRPC(t, &hint.Mock{
				ConfigureFunc: func(_ context.Context, _ hint.Config, _ hint.VM, hh hint.Host) error { h = hh; return nil },
			}, []*os.File{plugintest.Memfd(t, "ram", 256*mib)})
			ctx := tctx(t)
			if err := p.Configure(ctx, nil, c.vm, host); err != nil {
				t.Fatal(err)
			}
			got, err := h.BalloonHint(ctx)
			switch {
			case c.ok && (err != nil || !slices.Equal(got, sent)):
				t.Errorf("a session of %d ranges: %d ranges, %v; want them all", c.session, len(got), err)
			case !c.ok && (!errors.Is(err, hint.ErrBalloonTooMuch) || got != nil):
				t.Errorf("a session of %d ranges for a guest of %d pages: %d ranges, %v; want none, and ErrBalloonTooMuch",
					c.session, c.vm.Pages(), len(got), err)
			}
		})
	}
}
