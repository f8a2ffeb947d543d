package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/postcopy"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// TestMigratePostcopy is TestMigrate in post-copy: the operator switches
// in the middle of a capped bulk pass, so most pages are still owed; the
// destination's guest runs and a device reads every page, its faults are
// served over the rdma transport's urgent path (requests on the urgent
// control connection, pages by fi_write on the urgent endpoint) and the
// rest is pushed in the background; the page check compares every page
// as it lands. Over the tcp provider (the one the job issue names).
func TestMigratePostcopy(t *testing.T) {
	const prov = "tcp"
	if err := fabric.Providers("127.0.0.1", prov)[prov]; err != nil {
		t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
	}
	if err := postcopy.Available(); err != nil {
		t.Skipf("POST-COPY NOT TESTED: userfaultfd is not available here: %v", err)
	}
	src, err := vmtest.New(vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var dst *vmtest.VM
	var reader sync.WaitGroup
	dst, err = vmtest.New(vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: func() {
		reader.Go(func() {
			for p := range dst.Pages() {
				dst.Page(p)
			}
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	plugin := session.Plugin{Path: plugintest.Path(t, pluginName), Config: map[string]any{
		"provider": prov, "listen": localAddr(t), "cleartext_pages": true}}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := make(chan struct{})
	var once sync.Once
	sspec := session.Spec{Role: transport.RoleSend, Transport: plugin, Log: log, Engine: engine.Options{Credentials: srcCreds, VerifyPages: true,
		Bandwidth: 8 << 20, StartPostcopy: start},
		Progress: func(p engine.Progress) {
			if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
				once.Do(func() { close(start) })
			}
		}}
	var dstRep engine.Report
	var dstErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		dstRep, dstErr = session.Receive(ctx, dst, session.Spec{Transport: plugin, Log: log,
			Engine: engine.Options{Credentials: dstCreds, VerifyPages: true}})
	})
	srcRep, srcErr := session.Send(ctx, src, src, sspec)
	wg.Wait()
	reader.Wait()
	t.Logf("source: %s, %d ms, downtime %d ms, post-copy %d ms, %d requested, %d pushed", srcRep.Status, srcRep.TotalMS,
		srcRep.DowntimeMS, srcRep.PostcopyMS, srcRep.PagesRequested, srcRep.PagesPushed)
	t.Logf("destination: %s, %d requested, %d zero-local, %d landed-local, fault p50 %d us p99 %d us max %d us",
		dstRep.Status, dstRep.PagesRequested, dstRep.PagesZeroLocal, dstRep.PagesLandLocal, dstRep.FaultP50US, dstRep.FaultP99US, dstRep.FaultMaxUS)
	if srcErr != nil || dstErr != nil {
		t.Fatalf("migration: source %v, destination %v", srcErr, dstErr)
	}
	if srcRep.Mode != engine.ModePostcopy || dstRep.Mode != engine.ModePostcopy || dstRep.PagesRequested == 0 {
		t.Fatalf("mode %q/%q, %d pages requested: post-copy did not serve faults over the network", srcRep.Mode, dstRep.Mode, dstRep.PagesRequested)
	}
	if src.State() != vmtest.StatePaused || src.Counters().Resumes != 0 || dst.State() != vmtest.StateRunning {
		t.Fatalf("source %s (%+v), destination %s", src.State(), src.Counters(), dst.State())
	}
	if err := dst.Verify(); err != nil {
		t.Fatalf("the destination's own check: %v", err)
	}
}
