package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMigrateWithBalloonHints is invariant 1 (docs/ARCHITECTURE.md#invariant-1) on the real guest: a guest
// that freed a large hog and keeps churning its key-value store is
// migrated with balloon hints and the page-exact check; the hinted pages
// stay home, every page that matters arrives, and the guest goes on
// verifying on the destination. Free page reporting is off, as in 2016,
// so the freed memory is populated and only the hints can save it.
func TestMigrateWithBalloonHints(t *testing.T) {
	needKVM(t, "TestMigrateWithBalloonHints")
	p := startPairArgs(t, "2G", "hog:1536,kv:64", "127.0.0.1:"+itoa(freePort(t)), "",
		balloonHint(), []string{"-no-page-reporting"})
	rep, err := p.migrate(nil)
	if err != nil || rep.Status != "completed" {
		t.Fatalf("migration %s: %v", rep.Status, err)
	}
	if rep.PagesChecked != rep.TotalPages {
		t.Errorf("page-exact check covered %d of %d pages", rep.PagesChecked, rep.TotalPages)
	}
	// The hog's 1536 MiB are free: most of it must have stayed home.
	if rep.SkippedBy["balloon"] < 1200<<8 || rep.BytesWire > 600<<20 {
		t.Errorf("balloon skipped %d pages, %d MiB on the wire", rep.SkippedBy["balloon"], rep.BytesWire>>20)
	}
	p.dst.waitTicks(3, 30*time.Second)
}

// TestMigrateAllHintBlocks runs a job with every provider: cmma is s390
// only and must say so without failing the migration.
func TestMigrateAllHintBlocks(t *testing.T) {
	needKVM(t, "TestMigrateAllHintBlocks")
	p := startPairArgs(t, "1G", "hog:512,dirty:32@16", "127.0.0.1:"+itoa(freePort(t)), "",
		balloonHint()+"hint \"pagemap\" {}\nhint \"cmma\" {}\n", []string{"-no-page-reporting"})
	rep, err := p.migrate(nil)
	if err != nil || rep.Status != "completed" {
		t.Fatalf("migration %s: %v", rep.Status, err)
	}
	statuses := map[string]string{}
	for _, h := range rep.Hints {
		statuses[h.Name] = h.Status
	}
	if statuses["balloon"] != "ok" || statuses["pagemap"] != "ok" || !strings.HasPrefix(statuses["cmma"], "not-supported") {
		t.Errorf("provider statuses %v", statuses)
	}
	p.dst.waitTicks(3, 30*time.Second)
}

// TestMigrate8GiBHints: an idle 8 GiB guest with the pagemap provider sends
// almost nothing, and an 8 GiB guest after hog:6144 with the balloon
// provider sends within 10% of its live memory (what the guest itself
// reports as not free).
func TestMigrate8GiBHints(t *testing.T) {
	needKVM(t, "TestMigrate8GiBHints")
	for _, tc := range []struct {
		name, workload, hints string
	}{
		{"idle with pagemap", "idle", `hint "pagemap" {}`},
		{"after hog with balloon", "hog:6144", balloonHint()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPairArgs(t, "8G", tc.workload, "127.0.0.1:"+itoa(freePort(t)), "", tc.hints, []string{"-no-page-reporting"})
			m := p.src.waitLine(tickRE, 30*time.Second)
			free, _ := strconv.ParseUint(m[3], 10, 64)
			live := (8<<30)/4096 - free // pages the guest does not count as free
			rep, err := p.migrateOpts(false, nil)
			if err != nil || rep.Status != "completed" {
				t.Fatalf("migration %s: %v", rep.Status, err)
			}
			t.Logf("guest live memory %d KiB; on the wire %d KiB; %d pages sent, %d skipped, %d zero",
				live*4, rep.BytesWire>>10, rep.PagesSent, rep.PagesSkipped, rep.PagesZero)
			if limit := live * 4096 * 11 / 10; rep.BytesWire > limit {
				t.Errorf("%d bytes on the wire, more than 110%% of the guest's %d bytes of live memory", rep.BytesWire, live*4096)
			}
			p.dst.waitTicks(2, 60*time.Second)
		})
	}
}

// TestMigrateMisbehavingProviders is invariant 2 (docs/ARCHITECTURE.md#invariant-2) with real plugin
// processes: a liar, a provider that hangs ignoring its context, and one
// that crashes, beside the balloon. The migration completes within its
// deadline budget, the page-exact check passes, and the report names
// what each provider did.
func TestMigrateMisbehavingProviders(t *testing.T) {
	needKVM(t, "TestMigrateMisbehavingProviders")
	hints := balloonHint() + `hint "example-liar" { lie = "all" }
hint "example-hang" {
  mode     = "ignore"
  deadline = "200ms"
}
hint "example-crash" { when = "hints" }
`
	p := startPairArgs(t, "1G", "hog:512,kv:32", "127.0.0.1:"+itoa(freePort(t)), "", hints, []string{"-no-page-reporting"})
	start := time.Now()
	rep, err := p.migrate(nil)
	if err != nil || rep.Status != "completed" {
		t.Fatalf("migration %s: %v", rep.Status, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("migration took %v with misbehaving providers", d)
	}
	statuses := map[string]string{}
	for _, h := range rep.Hints {
		statuses[h.Name] = h.Status
	}
	if statuses["balloon"] != "ok" || statuses["example-crash"] != "crashed" || statuses["example-hang"] != "hung" {
		t.Errorf("provider statuses %v", statuses)
	}
	if rep.SkippedBy["balloon"] == 0 {
		t.Error("the balloon's hints were lost to the misbehaving providers")
	}
	p.dst.waitTicks(3, 30*time.Second)
}
