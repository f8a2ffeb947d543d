package vmtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// Compile-time: the fake is what an embedder implements.
var (
	_ framework.Source = (*vmtest.VM)(nil)
	_ framework.Target = (*vmtest.VM)(nil)
	_ hint.Host        = (*vmtest.VM)(nil)
)

func newVM(t testing.TB, opt vmtest.Options) *vmtest.VM {
	t.Helper()
	v, err := vmtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// free is two balloon blocks: one in each region of DefaultRegions.
var free = []hint.GPARange{{GPA: 1 << 20, Size: 1 << 20}, {GPA: 70 << 20, Size: 2 << 20}}

func TestLayout(t *testing.T) {
	v := newVM(t, vmtest.Options{})
	l := v.RAM()
	if len(l) != 2 || l[0].Fd == l[1].Fd || l[1].GPA != 64<<20 || l.Pages() != 4096 {
		t.Fatalf("layout %+v", l)
	}
	for i := range l {
		if uint64(len(v.Memory(i))) != l[i].Size {
			t.Fatalf("region %d: memory %d bytes", i, len(v.Memory(i)))
		}
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestDirtyLog: the vCPU's writes and the VMM's own writes (Write) both
// reach SyncDirtyLog; a sync starts a new epoch.
func TestDirtyLog(t *testing.T) {
	v := newVM(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	if err := v.StartDirtyLog(); err != nil {
		t.Fatal(err)
	}
	if err := v.Write(64<<20 + 5*framework.PageSize); err != nil {
		t.Fatal(err)
	}
	// Syncs add up (Or): sync until the writer's pages are in, however
	// late a loaded machine runs it.
	b := bitmap.New(v.Pages())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := v.SyncDirtyLog(b); err != nil {
			t.Fatal(err)
		}
		if b.Count() >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if !b.Test(1024+5) || b.Count() < 3 {
		t.Fatalf("dirty after Write and the writer: %d pages, Write's page %v", b.Count(), b.Test(1029))
	}
	v.Pause(context.Background())
	b.ClearAll()
	time.Sleep(10 * time.Millisecond)
	v.SyncDirtyLog(b)
	if n := b.Count(); n != 0 {
		t.Fatalf("%d pages dirtied while paused", n)
	}
	if err := v.Write(0); !errors.Is(err, vmtest.ErrPaused) {
		t.Fatalf("Write while paused: %v", err)
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestMarkDirty: every page the range touches, across the gap.
func TestMarkDirty(t *testing.T) {
	v := newVM(t, vmtest.Options{})
	v.MarkDirty(0, 1) // logging off: nothing
	v.StartDirtyLog()
	v.Pause(context.Background())
	v.MarkDirty(4<<20-1, 64<<20-(4<<20-1)+framework.PageSize+1) // last page of region 0 .. page 1 of region 1
	b := bitmap.New(v.Pages())
	v.SyncDirtyLog(b)
	if b.Count() != 3 || !b.Test(1023) || !b.Test(1024) || !b.Test(1025) {
		t.Fatalf("dirty: %d pages", b.Count())
	}
}

// TestForgetOwnWrites: the broken VMM's log misses Write.
func TestForgetOwnWrites(t *testing.T) {
	v := newVM(t, vmtest.Options{ForgetOwnWrites: true})
	v.StartDirtyLog()
	v.Write(0)
	b := bitmap.New(v.Pages())
	v.SyncDirtyLog(b)
	if b.Count() != 0 {
		t.Fatal("a VMM that forgets its own writes logged one")
	}
}

// TestBalloonWindow: the free pages are reported; while the window is
// open they cannot be written; after DONE a write takes one back.
func TestBalloonWindow(t *testing.T) {
	ctx := context.Background()
	v := newVM(t, vmtest.Options{Free: free})
	got, err := v.BalloonHint(ctx)
	if err != nil || len(got) != 2 || got[0] != free[0] || got[1] != free[1] || v.Reported() != 768 {
		t.Fatalf("hint %v (%d pages), %v", got, v.Reported(), err)
	}
	if err := v.Write(1 << 20); !errors.Is(err, vmtest.ErrHinted) {
		t.Fatalf("write to a hinted page in the window: %v", err)
	}
	if err := v.Write(0); err != nil {
		t.Fatal(err)
	}
	v.BalloonDone(ctx)
	if err := v.Write(1 << 20); err != nil {
		t.Fatalf("write after DONE: %v", err)
	}
	if got, _ := v.BalloonHint(ctx); v.Reported() != 767 || len(got) != 2 || got[0].GPA != 1<<20+framework.PageSize {
		t.Fatalf("after taking a page back: %v (%d pages)", got, v.Reported())
	}
	if _, _, err := v.CMMABits(ctx, 0, 1); !errors.Is(err, hint.ErrNotSupported) {
		t.Fatalf("CMMA: %v", err)
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCatchesOverwrite: a page this VM wrote that then holds an
// older record of itself (valid, but not the VM's last write: a late
// copy landed on it) fails Verify.
func TestVerifyCatchesOverwrite(t *testing.T) {
	v := newVM(t, vmtest.Options{})
	pg := v.Memory(0)[5*framework.PageSize : 6*framework.PageSize]
	if err := v.Write(5 * framework.PageSize); err != nil {
		t.Fatal(err)
	}
	older := append([]byte(nil), pg...)
	if err := v.Write(5 * framework.PageSize); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
	copy(pg, older)
	if err := v.Verify(); err == nil {
		t.Fatal("Verify passed a page that went back to an older write")
	}
}
