package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
)

// fakeVM is a Source and a Target without KVM: two RAM regions with a
// gap between them, back to back in one memfd, a software dirty log
// (nothing writes during these tests, so it stays empty) and a state
// blob.
type fakeVM struct {
	fd     int
	mem    []byte
	layout framework.Layout

	mu      sync.Mutex
	paused  bool
	resumed int
	state   []byte
}

const page = framework.PageSize

func newFakeVM(t *testing.T) *fakeVM {
	t.Helper()
	sizes := []uint64{64 * page, 32 * page}
	fd, err := unix.MemfdCreate("fake-ram", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	total := sizes[0] + sizes[1]
	if err := unix.Ftruncate(fd, int64(total)); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, int(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem); unix.Close(fd) })
	return &fakeVM{fd: fd, mem: mem, layout: framework.Layout{
		{GPA: 0, Size: sizes[0], Fd: fd, Offset: 0},
		{GPA: 1 << 20, Size: sizes[1], Fd: fd, Offset: sizes[0]},
	}}
}

// fill writes a pattern into every page but the first of each region
// (left zero).
func (v *fakeVM) fill() {
	for p := 0; p < len(v.mem)/page; p++ {
		if p != 0 && p != 64 {
			v.mem[p*page] = byte(p) | 1
			v.mem[p*page+page-1] = 0xa5
		}
	}
}

func (v *fakeVM) RAM() framework.Layout { return v.layout }

func (v *fakeVM) Memory(i int) []byte {
	r := v.layout[i]
	return v.mem[r.Offset : r.Offset+r.Size]
}

func (v *fakeVM) StartDirtyLog() error                  { return nil }
func (v *fakeVM) SyncDirtyLog(dst *bitmap.Bitmap) error { return nil }
func (v *fakeVM) StopDirtyLog() error                   { return nil }

func (v *fakeVM) Pause(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = true
	return nil
}

func (v *fakeVM) Resume() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = false
	v.resumed++
	return nil
}

func (v *fakeVM) SaveState(context.Context) ([]byte, error) { return []byte("fake-state-v1"), nil }

func (v *fakeVM) LoadState(_ context.Context, b []byte) error {
	if string(b) != "fake-state-v1" {
		return errors.New("fake: not my state")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = append([]byte(nil), b...)
	return nil
}

// balloonHost is the embedder's hint.Host with a balloon: it hints the
// guest-physical ranges free, counts its calls, and has no CMMA.
type balloonHost struct {
	free  []hint.GPARange
	mu    sync.Mutex
	hints int
	done  int
}

func (h *balloonHost) BalloonHint(context.Context) ([]hint.GPARange, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hints++
	return h.free, nil
}

func (h *balloonHost) BalloonDone(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done++
	return nil
}

func (h *balloonHost) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, hint.ErrNotSupported
}

func (h *balloonHost) calls() (hints, done int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hints, h.done
}
