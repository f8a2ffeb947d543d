package vmm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// arrived ends s's incoming migration as a completed one ends it: the
// state loaded, COMMIT taken, the guest running here.
func (s *lineSide) arrived(t *testing.T) {
	t.Helper()
	s.v.setStateIf(StateIncoming, StatePaused)
	if err := (migrationVM{v: s.v, own: s.own}).Resume(); err != nil {
		t.Fatal(err)
	}
	s.v.endMigration(s.own, s.v.migration(), transport.RoleReceive,
		engine.Report{Status: engine.StatusCompleted, Handover: engine.HandoverRunning, Mode: engine.ModePrecopy, TagFingerprint: s.tag}, nil)
}

// TestMigrateResolveQuitsSourceSentOn: the source of a job took its
// guest by an earlier migration (j0: it reported role receive until
// now) and sends it on in j1, whose handover ends unknown while the
// new destination runs the guest. This VMM reports role send in j1
// from its migrate-send on (a VMM's record is the migration it began
// last), so migrate -resolve, the binary built from cmd/migrate,
// tells it migrated and quits it (cmd/migrate sourceSends lets only a
// sender be quit): the guest runs once, on the destination. Coverage
// for the review of sourceSends (review C): it passed when added; a VMM
// that kept reporting the role of the migration its guest arrived by
// would have left a paused source unquit, said "left alone".
func TestMigrateResolveQuitsSourceSentOn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/migrate")
	}
	bin := buildMigrate(t, t.TempDir())
	dir := t.TempDir()
	src := newLineSide(t, dir, "src.sock", transport.RoleReceive, "j0", tagA)
	src.arrived(t)
	own := claimAs(t, src.v, transport.RoleSend, "j1", nil)
	src.v.migration().progress(engine.Progress{Phase: engine.PhaseDirty, Handover: engine.HandoverLive, TagFingerprint: tagB})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res, err := src.v.resolve(ctx, src.v.migration(), api.ResolveQuery); err != nil ||
		res.Role != transport.RoleSend.String() || res.ID != "j1" {
		t.Fatalf("while it sends j1 the source reports %+v (%v): want role send in j1", res, err)
	}
	endAs(t, src.v, own, transport.RoleSend, engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown,
		Mode: engine.ModePrecopy, TagFingerprint: tagB})
	dst := newLineSide(t, dir, "dst.sock", transport.RoleReceive, "j1", tagB)
	dst.arrived(t)

	stdout, _, err := runMigrate(ctx, t, bin, "-resolve", "-config", lineJob(t, dir))
	if err != nil {
		t.Fatalf("migrate -resolve: %v, want exit 0", err)
	}
	if !strings.Contains(string(stdout), "the source was told and quit") {
		t.Errorf("migrate -resolve says %q: want the source told and quit", stdout)
	}
	if src.side() != api.SideMigrated || !src.stopped() || dst.side() != api.SideRunning || dst.stopped() {
		t.Errorf("source %s (stopped %v), destination %s (stopped %v): want the source migrated and quit, the destination running",
			src.side(), src.stopped(), dst.side(), dst.stopped())
	}
}
