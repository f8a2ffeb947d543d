package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/virtio"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// statsGuest is a fake guest driver of v's balloon (attached as the VM
// attaches it, on guestRAM) that negotiated STATS_VQ and gave the device
// its statistics buffer.
type statsGuest struct {
	t   *testing.T
	v   *VM
	drv *virtiotest.Driver
}

const (
	statsRings = 0x10000  // the driver's rings
	statsBuf   = 0x100000 // its statistics buffer
)

func newStatsGuest(t *testing.T, v *VM) *statsGuest { return statsGuestWith(t, v, 0) }

// statsGuestWith is newStatsGuest whose driver negotiated features too
// (FFreePageHint: the free page hint queue, after the statistics one).
func statsGuestWith(t *testing.T, v *VM, features uint64) *statsGuest {
	v.ram = &guestRAM{Guest: v.mem}
	v.balloon = balloon.New(v.ram, v.log)
	tr := virtio.NewTransport("balloon", v.balloon, v.ram, nil, v.log)
	v.balloon.SetSignaller(tr)
	v.balloonTransport = tr
	mem := &virtiotest.Mem{B: v.mem.Host(), Dirty: map[uint64]bool{}, Discarded: map[uint64]bool{}}
	g := &statsGuest{t: t, v: v, drv: &virtiotest.Driver{T: t, Dev: tr, Mem: mem}}
	queues := 3 // inflate, deflate, stats
	if features&balloon.FFreePageHint != 0 {
		queues++
	}
	if !g.drv.Setup(balloon.FStatsVQ|virtio.FVersion1|features, queues, 64, statsRings) {
		t.Fatal("features refused")
	}
	g.give()
	return g
}

// give hands the device a statistics buffer, as the guest does at first
// and after each one the device returned.
func (g *statsGuest) give() {
	binary.LittleEndian.PutUint16(g.drv.Mem.B[statsBuf:], 4) // free-memory
	binary.LittleEndian.PutUint64(g.drv.Mem.B[statsBuf+2:], 100)
	g.drv.Add(2, virtiotest.Buf{Addr: statsBuf, Len: 10})
	g.drv.Kick(2)
}

// usedPage is the guest page that holds the statistics queue's used ring.
func (g *statsGuest) usedPage() []byte {
	p := g.drv.UsedRing(2) &^ (pageSize - 1)
	return g.v.mem.Host()[p : p+pageSize]
}

const pageSize = 4096

// deviceCall makes one of a balloon device's host calls (the
// ...Context forms) under its own deadline of 10 s, and fails the test
// on its error: a device lock that is never freed fails the test rather
// than hanging it.
func deviceCall[T any](t testing.TB, call func(context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBalloonStatsNotAfterFinalSync: balloon-stats hands the guest its
// statistics buffer back, which writes the queue's used ring in guest
// RAM. While a migration holds the source paused (its switch-over, from
// its pause through the final dirty-log sync and the state) it is
// refused and writes nothing, and so it is on a destination while its
// migration owns the VM (loaded, or running after COMMIT); during a
// source's live pass it goes through and the write is marked dirty, so
// the next sync sends it; once the migration ended it works again.
// Before, it was never refused: asked after the source's final sync, its
// write reached no destination while the state sent after it said the
// buffer had been returned, so the destination's guest found its used
// ring behind the device's (its statistics queue broken) and the page
// differed between the two sides (docs/ARCHITECTURE.md, invariant 4).
func TestBalloonStatsNotAfterFinalSync(t *testing.T) {
	ask := func(call func(string, any, any) error) error {
		return call("balloon-stats", map[string]int{"timeout_ms": 20}, nil) // the fake guest answers later
	}
	t.Run("source", func(t *testing.T) {
		v := fakeWithRAM(t, StateRunning)
		g := newStatsGuest(t, v)
		call := serveCalls(t, v)
		own := claimFake(t, v, v.migration(), engine.PhaseDirty)

		// A live pass: handed back, and marked for the next sync.
		if err := ask(call); err == nil || strings.Contains(err.Error(), "refused") {
			t.Fatalf("balloon-stats in a live pass: %v, want it asked (and timed out)", err)
		}
		if len(g.drv.Used(2)) != 1 || !v.mem.IsDirty(g.drv.UsedRing(2)) {
			t.Fatal("balloon-stats in a live pass: the buffer was not handed back, or its used ring not marked dirty")
		}
		g.give()

		// The switch-over: the engine's pause, then its final sync.
		if err := (migrationVM{v: v, own: own}).Pause(context.Background()); err != nil {
			t.Fatal(err)
		}
		v.mem.TakeDirty(make([]uint64, v.mem.DirtyWords()))
		before := bytes.Clone(g.usedPage())
		err := ask(call)
		if err == nil || !strings.Contains(err.Error(), "balloon-stats is refused") {
			t.Errorf("balloon-stats after the final sync: %v, want refused", err)
		}
		if !bytes.Equal(before, g.usedPage()) || len(g.drv.Used(2)) != 0 {
			t.Fatal("balloon-stats wrote the used ring after the final sync: no destination gets that write")
		}

		// The migration failed: the engine resumed the VM, and it is the
		// control socket's again.
		if err := (migrationVM{v: v, own: own}).Resume(); err != nil {
			t.Fatal(err)
		}
		v.endMigration(own, v.migration(), transport.RoleSend, engine.Report{Status: engine.StatusFailed}, nil)
		if err := ask(call); err == nil || strings.Contains(err.Error(), "refused") {
			t.Fatalf("balloon-stats after the migration: %v, want it asked", err)
		}
		if len(g.drv.Used(2)) != 1 {
			t.Fatal("balloon-stats after the migration: the buffer was not handed back")
		}
	})
	t.Run("destination", func(t *testing.T) {
		v := fakeWithRAM(t, StateIncoming)
		g := newStatsGuest(t, v) // as the state loaded a device the guest had set up
		call := serveCalls(t, v)
		own, err := v.claim(context.Background(), v.migration(), transport.RoleReceive.String(), "a", takes(func() {}),
			func(st State) error { return v.canMigrate(transport.RoleReceive, st) })
		if err != nil {
			t.Fatal(err)
		}
		v.migration().progress(engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverLoaded})
		if err := loadFake(migrationVM{v: v, own: own}); err != nil {
			t.Fatal(err)
		}
		before := bytes.Clone(g.usedPage())
		if err := ask(call); err == nil || !strings.Contains(err.Error(), "balloon-stats is refused") {
			t.Errorf("balloon-stats on a loaded destination: %v, want refused", err)
		}
		if !bytes.Equal(before, g.usedPage()) {
			t.Fatal("balloon-stats wrote the used ring of a destination that does not run the guest yet")
		}
		// COMMIT: the guest runs here; the migration still owns the VM
		// (in post-copy the write could wait for a page the source owes).
		if err := (migrationVM{v: v, own: own}).Resume(); err != nil {
			t.Fatal(err)
		}
		if err := ask(call); err == nil || !strings.Contains(err.Error(), "balloon-stats is refused") {
			t.Errorf("balloon-stats while the migration owns the running destination: %v, want refused", err)
		}
		v.endMigration(own, v.migration(), transport.RoleReceive, engine.Report{Status: engine.StatusCompleted}, nil)
		if err := ask(call); err == nil || strings.Contains(err.Error(), "refused") {
			t.Fatalf("balloon-stats once the migration ended: %v, want it asked", err)
		}
		if len(g.drv.Used(2)) != 1 {
			t.Fatal("balloon-stats once the migration ended: the buffer was not handed back")
		}
	})
}

// TestBalloonStatsRacesPause: balloon-stats asked while the engine
// pauses the source for its switch-over and makes its final sync. In
// every round the statistics buffer is either handed back before the
// pause, its used ring then marked and taken by that sync, or the
// request is refused and the used ring stays as the sync found it:
// never a write after the final sync (requestStats runs under the run
// lock, which the engine's pause takes; the sync follows the pause).
func TestBalloonStatsRacesPause(t *testing.T) {
	v := fakeWithRAM(t, StateRunning)
	g := newStatsGuest(t, v)
	own := claimFake(t, v, &migration{}, engine.PhaseDirty)
	m := migrationVM{v: v, own: own}
	usedPage := (g.drv.UsedRing(2) &^ (pageSize - 1)) / pageSize // a memfd page: RAM starts at GPA 0
	sync := make([]uint64, v.mem.DirtyWords())
	handed, refused := 0, 0
	for round := range 60 {
		if round > 0 {
			g.give() // a device that still holds the last one hands it back first
		}
		g.drv.Used(2)
		v.mem.TakeDirty(sync) // a live pass's sync took what came before
		start, asked, paused := make(chan struct{}), make(chan error, 1), make(chan error, 1)
		go func() {
			<-start
			_, err := v.requestStats(context.Background(), v.balloon)
			asked <- err
		}()
		go func() {
			<-start
			paused <- m.Pause(context.Background())
		}()
		close(start) // both at once: either may take the run lock first
		if err := <-paused; err != nil {
			t.Fatal(err)
		}
		clear(sync)
		v.mem.TakeDirty(sync) // the final sync
		synced := bytes.Clone(g.usedPage())
		err := <-asked
		back := len(g.drv.Used(2))
		switch {
		case err == nil && back == 1:
			handed++
			if sync[usedPage/64]&(1<<(usedPage%64)) == 0 {
				t.Fatalf("round %d: the buffer was handed back, but the final sync did not see its used ring", round)
			}
		case err != nil && strings.Contains(err.Error(), "balloon-stats is refused") && back == 0:
			refused++
		default:
			t.Fatalf("round %d: balloon-stats: %v, %d buffers handed back", round, err, back)
		}
		if !bytes.Equal(synced, g.usedPage()) || v.mem.IsDirty(g.drv.UsedRing(2)) {
			t.Fatalf("round %d: the used ring was written after the final sync: no destination gets that write", round)
		}
		if err := m.Resume(); err != nil { // the switch-over failed: a live pass again
			t.Fatal(err)
		}
	}
	t.Logf("handed back before the pause: %d rounds; refused after it: %d", handed, refused)
}
