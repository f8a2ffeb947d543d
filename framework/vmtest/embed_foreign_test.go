package vmtest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// TestEmbedAnotherMigration: two migrations between the same two hosts
// share their credentials (an operator's certificates), and one job's
// source connects to the other job's destination (its connect address
// is the other job's), over the real TCP plugin. The destination, given
// its migration's id, refuses the HELLO before any page is written; the
// source is told, never pauses, and its guest runs on. Before engine
// protocol 7 the destination took the other migration's guest and ran
// it as its own.
func TestEmbedAnotherMigration(t *testing.T) {
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, false)
	sspec.Engine.MigrationID, dspec.Engine.MigrationID = "job-b", "job-a"
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	t.Logf("source: %v; destination: %v", serr, derr)
	if srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
		t.Fatalf("source %s, destination %s", srep.Status, drep.Status)
	}
	if !strings.Contains(derr.Error(), "another migration") || !strings.Contains(serr.Error(), "another migration") {
		t.Errorf("the errors do not say why: source %v; destination %v", serr, derr)
	}
	if drep.PagesSent+drep.PagesZero != 0 {
		t.Errorf("the destination took %d pages of the other migration", drep.PagesSent+drep.PagesZero)
	}
	checkSourceRuns(t, src, dst)
}
