package vmtest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// migrateAway is the source VMM's side of a migration (docs/EMBEDDING.md).
// vm is the VMM's framework.Source; host offers its capabilities to hint
// providers (nil: none).
func migrateAway(ctx context.Context, vm framework.Source, host hint.Host, spec session.Spec) (engine.Report, error) {
	rep, err := session.Send(ctx, vm, host, spec)
	switch rep.Status { // where the guest is; err says what went wrong
	case engine.StatusCompleted:
		// The guest runs on the destination; it stays paused here for
		// good. The VMM may now end this VM. (An error here is the page
		// check's, a test mode: engine.ErrPostcopyCheck.)
	case engine.StatusHandoverUnknown:
		// Paused, and the destination may run it: neither resume nor end
		// it until the destination was asked (docs/HANDOVER.md).
	case engine.StatusPostcopyBroken:
		// The guest ran on the destination and post-copy broke: this
		// paused copy is older than what it ran on. Never resume it.
	default:
		// Failed or cancelled: the engine resumed the guest if it had
		// paused it. It runs here, as before.
	}
	return rep, err
}

// migrateIn is the destination VMM's side: vm is a framework.Target with
// the source's RAM layout, empty, not running.
func migrateIn(ctx context.Context, vm framework.Target, spec session.Spec) (engine.Report, error) {
	rep, err := session.Receive(ctx, vm, spec)
	switch rep.Status {
	case engine.StatusCompleted:
		// The guest runs here (the engine called Resume), even with an
		// error (the page check's: engine.ErrPostcopyCheck).
	case engine.StatusHandoverUnknown:
		// Loaded and paused, and the source may run it: wait to be told.
	case engine.StatusPostcopyBroken:
		// The guest ran here and was halted for good: it lacks pages
		// only the source held. Keep it for inspection; never resume it.
	default:
		// This side will never run the guest: discard vm.
	}
	return rep, err
}

// Example migrates a running fake VM to another over the TCP transport
// plugin, with the balloon hint provider asking the source VM's balloon
// for free pages. In a real deployment the two sides are two VMM
// processes on two hosts, and whoever drives the migration mints the
// credentials and hands each side its own.
func Example() {
	dir, err := pluginDir() // where the VMM installed ferry-transport-tcp and ferry-hint-balloon
	if err != nil {
		fmt.Println(err)
		return
	}
	src, _ := vmtest.New(vmtest.Options{WriteEvery: time.Millisecond,
		Free: []hint.GPARange{{GPA: 1 << 20, Size: 1 << 20}}}) // the guest's balloon reports 1 MiB free
	defer src.Close()
	dst, _ := vmtest.New(vmtest.Options{Incoming: true})
	defer dst.Close()

	srcCreds, dstCreds, err := transport.MintCredentials(false) // one fresh pair per job
	if err != nil {
		fmt.Println(err)
		return
	}
	tcp := session.Plugin{Path: filepath.Join(dir, "ferry-transport-tcp"),
		Config: map[string]any{"listen": localAddr()}} // the job's transport block
	var last engine.Progress
	logger := slog.New(slog.DiscardHandler) // the VMM's logger: the session's and the plugins' lines
	srcSpec := session.Spec{
		Transport: tcp,
		Hints: []session.Hint{{Name: "balloon", Deadline: 2 * time.Second,
			Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-balloon")}}},
		// HintHold: a guest this small is sent before the balloon answers;
		// hold each pass for it (a large guest would start at once).
		Engine:   engine.Options{Credentials: srcCreds, MaxDowntime: 100 * time.Millisecond, HintHold: 2 * time.Second},
		Progress: func(p engine.Progress) { last = p }, // on Send's goroutine; keep it quick
		Log:      logger,
	}
	dstSpec := session.Spec{Transport: tcp, Engine: engine.Options{Credentials: dstCreds}, Log: logger}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // cancel: the source keeps running
	defer cancel()
	var dstRep engine.Report
	var wg sync.WaitGroup
	wg.Go(func() { dstRep, _ = migrateIn(ctx, dst, dstSpec) })
	srcRep, _ := migrateAway(ctx, src, src, srcSpec)
	wg.Wait()

	fmt.Println("source:", srcRep.Status, src.State(), "last phase:", last.Phase)
	fmt.Println("destination:", dstRep.Status, dst.State())
	fmt.Println("skipped on balloon hints:", srcRep.SkippedBy["balloon"], "pages")
	fmt.Println("pages equal:", vmtest.Equal(src, dst) == nil)
	// Output:
	// source: completed paused last phase: done
	// destination: completed running
	// skipped on balloon hints: 256 pages
	// pages equal: true
}

// localAddr is a free port on 127.0.0.1.
func localAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}
