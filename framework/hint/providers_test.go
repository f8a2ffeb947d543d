package hint_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/hint"
)

// Providers the tests run in process and as plugin processes.

// zeroProvider reports the pages that read as zero in the RAM files.
type zeroProvider struct {
	mu sync.Mutex
	vm *hint.VM
}

func newZeroProvider() *zeroProvider { return &zeroProvider{} }

func (p *zeroProvider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: "zero", Version: "test", Meaning: hint.MeaningZero}, nil
}

func (p *zeroProvider) Schema(context.Context) (hint.Schema, error) { return nil, nil }

func (p *zeroProvider) Configure(_ context.Context, _ hint.Config, vm hint.VM, _ hint.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vm = &vm
	return nil
}

func (p *zeroProvider) Hints(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	vm := p.vm
	p.mu.Unlock()
	if vm == nil {
		return errors.New("zero: Hints before Configure")
	}
	const page = framework.PageSize
	var base uint64
	zero := make([]byte, page)
	buf := make([]byte, 64*page)
	for _, r := range vm.RAM {
		var batch []hint.Range
		for off := uint64(0); off < r.Size; off += uint64(len(buf)) {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(uint64(len(buf)), r.Size-off)]
			if _, err := vm.Files[r.File].ReadAt(b, int64(r.Offset+off)); err != nil {
				return fmt.Errorf("zero: read RAM: %w", err)
			}
			for i := 0; i < len(b); i += page {
				if bytes.Equal(b[i:i+page], zero) {
					batch = appendPage(batch, base+(off+uint64(i))/page)
				}
			}
		}
		if len(batch) > 0 {
			if err := emit(batch); err != nil {
				return err
			}
		}
		base += r.Size / page
	}
	return nil
}

// appendPage adds page p, extending the last range when it ends at p.
func appendPage(rs []hint.Range, p uint64) []hint.Range {
	if n := len(rs); n > 0 && rs[n-1].First+rs[n-1].Count == p {
		rs[n-1].Count++
		return rs
	}
	return append(rs, hint.Range{First: p, Count: 1})
}

func (p *zeroProvider) Close(context.Context, bool) error { return nil }

// balloonProvider asks the host for a balloon hint session per request
// and reports the blocks as free; a VMM without a balloon costs its hints
// only (said once), and the window's end sends DONE.
type balloonProvider struct {
	log         hclog.Logger
	mu          sync.Mutex
	vm          hint.VM
	host        hint.Host
	unsupported bool
}

func newBalloonProvider(log hclog.Logger) *balloonProvider { return &balloonProvider{log: log} }

func (p *balloonProvider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: "balloon", Version: "test", Meaning: hint.MeaningFree}, nil
}

func (p *balloonProvider) Schema(context.Context) (hint.Schema, error) { return nil, nil }

func (p *balloonProvider) Configure(_ context.Context, _ hint.Config, vm hint.VM, host hint.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vm, p.host, p.unsupported = vm, host, false
	return nil
}

func (p *balloonProvider) Hints(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	vm, host, unsupported := p.vm, p.host, p.unsupported
	p.mu.Unlock()
	if host == nil || unsupported {
		return nil
	}
	gpas, err := host.BalloonHint(ctx)
	if errors.Is(err, hint.ErrNotSupported) {
		p.log.Warn("no balloon free page hinting in this VM; no hints from it", "error", err)
		p.mu.Lock()
		p.unsupported = true
		p.mu.Unlock()
		return nil
	}
	if rs := vm.PageRanges(gpas); len(rs) > 0 {
		if eerr := emit(rs); eerr != nil {
			return eerr
		}
	}
	return err
}

func (p *balloonProvider) Close(ctx context.Context, final bool) error {
	p.mu.Lock()
	host, unsupported := p.host, p.unsupported
	p.mu.Unlock()
	if !final || host == nil || unsupported {
		return nil
	}
	if err := host.BalloonDone(ctx); err != nil && !errors.Is(err, hint.ErrNotSupported) {
		return err
	}
	return nil
}

// filesProvider reports what it finds in its VM: per region, the
// descriptor of its file and the region's first 8 bytes; then the first
// region's host address and the VMM's pid.
func filesProvider() hint.Provider {
	var mu sync.Mutex
	var vm hint.VM
	return &hint.Mock{
		ConfigureFunc: func(_ context.Context, _ hint.Config, v hint.VM, _ hint.Host) error {
			mu.Lock()
			defer mu.Unlock()
			vm = v
			return nil
		},
		HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			mu.Lock()
			defer mu.Unlock()
			var out []hint.Range
			for _, r := range vm.RAM {
				f := vm.Files[r.File]
				b := make([]byte, 8)
				if _, err := f.ReadAt(b, int64(r.Offset)); err != nil {
					return err
				}
				out = append(out, hint.Range{First: uint64(f.Fd()), Count: binary.LittleEndian.Uint64(b)})
			}
			out = append(out, hint.Range{First: vm.RAM[0].HostAddr, Count: uint64(vm.PID)})
			return emit(out)
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// crashAckEnv names the file the host creates once the crash provider's
// range reached it (TestPluginGone): the range rides on a gRPC stream
// whose writes are asynchronous, so an exit right after emit could lose
// it.
const crashAckEnv = "FERRY_TEST_CRASH_ACK"

// crashProvider emits one range, then its process exits in the middle
// of Hints, once the host has the range (at most 10 s later).
func crashProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "crash", Meaning: hint.MeaningFree}, nil
		},
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return nil },
		HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			emit([]hint.Range{{First: 0, Count: 1}})
			ack := os.Getenv(crashAckEnv) // unset: exit at once
			for deadline := time.Now().Add(10 * time.Second); ack != "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(ack); err == nil {
					break
				}
			}
			os.Exit(3)
			return nil
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// hangNoteEnv names a file the hang provider creates once a Hints call
// is in it (TestKill waits for that).
const hangNoteEnv = "FERRY_TEST_HANG_NOTE"

// hangProvider never answers Hints, whatever its context says.
func hangProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "hang", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc:    func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return nil },
		HintsFunc: func(context.Context, hint.Request, func([]hint.Range) error) error {
			if path := os.Getenv(hangNoteEnv); path != "" {
				os.WriteFile(path, nil, 0o600)
			}
			<-make(chan struct{})
			return nil
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}
