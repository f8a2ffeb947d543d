package vmtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// TestEmbedAnotherMigration: two migrations between the same two hosts
// share their credentials (an operator's certificates), and one job's
// source connects to the other job's destination (its connect address
// is the other job's), over the real TCP plugin. The destination, given
// its migration's id, has its transport refuse that session in its own
// handshake (OpenRequest.Tag), before a page could be written: the
// source is told why, never pauses, and its guest runs on. The
// destination does not fail: it waits on, and its own source then
// migrates. Before engine protocol 7 the destination took the other
// migration's guest and ran it as its own; before transport API 8 it
// refused it only at the engine's HELLO, and failed its own migration.
func TestEmbedAnotherMigration(t *testing.T) {
	other := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
	src := newVM(t, vmtest.Options{WriteEvery: time.Millisecond})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, false)
	ospec := sspec
	ospec.Engine.MigrationID, sspec.Engine.MigrationID, dspec.Engine.MigrationID = "job-b", "job-a", "job-a"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var drep engine.Report
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		drep, derr = session.Receive(ctx, dst, dspec)
	}()
	orep, oerr := session.Send(ctx, other, other, ospec)
	t.Logf("the other migration's source: %v", oerr)
	if orep.Status != engine.StatusFailed || !errors.Is(oerr, transport.ErrWrongMigration) || !strings.Contains(oerr.Error(), "another migration") {
		t.Errorf("the other migration's source: %s, %v; want it refused as another migration's", orep.Status, oerr)
	}
	checkSourceRuns(t, other, dst)
	select {
	case <-done:
		t.Fatalf("the destination gave up after another migration's source: %v", derr)
	default:
	}
	srep, serr := session.Send(ctx, src, src, sspec)
	<-done
	if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		t.Fatalf("its own source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
	}
	if err := vmtest.Equal(src, dst); err != nil {
		t.Error(err)
	}
}
