package vmm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/control"
)

// TestMigrateStartPostcopyLineAccepted: the request `migrate
// -start-postcopy` prints for a source that sends a migration without an
// id (it asks nothing itself) is taken by this VMM's own control server
// exactly as printed, run with sh and socat: the migrate binary, built
// from cmd/migrate, looks at a real control socket, and its line names
// the tag fingerprint the VMM reports. Run while the VMM's migration
// reports another fingerprint (it moved on), the VMM refuses it and the
// switch stays unasked; run while it reports the one looked at, the
// switch is asked. cmd/migrate's own test runs the line against its
// fake VMM only (TestStartPostcopyByHandNamesTag), whose decoder is not
// this VMM's (decodeArgs refuses unknown fields, checkNamed a malformed
// fingerprint). Added by review C; it passed when added.
func TestMigrateStartPostcopyLineAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/migrate")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("no socat here to run the printed line with")
	}
	dir := t.TempDir()
	bin := buildMigrate(t, dir)
	v := fakeVM(StateRunning)
	serveAt(t, v, filepath.Join(dir, "src.sock")) // lineJob's source; no VMM at its destination
	claimAs(t, v, transport.RoleSend, "", nil)
	mg := v.migration()
	switched := mg.switchable() // what startMigration hands to the engine
	reports := func(tag string) {
		mg.progress(engine.Progress{Phase: engine.PhaseDirty, Handover: engine.HandoverLive, TagFingerprint: tag})
	}
	reports(tagA)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, stderr, err := runMigrate(ctx, t, bin, "-start-postcopy", "-config", lineJob(t, dir))
	var line string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "    echo ") {
			line = strings.TrimPrefix(l, "    ")
		}
	}
	if err == nil || len(out) != 0 || !strings.Contains(line, `"tag_fingerprint":"`+tagA+`"`) {
		t.Fatalf("migrate -start-postcopy: %v, stdout %q: want exit 1, nothing asked, and a line naming %s, got %q", err, out, tagA, line)
	}
	asked := func() bool {
		select {
		case <-switched:
			return true
		default:
			return false
		}
	}
	for _, run := range []struct {
		tag  string // the fingerprint the VMM's migration reports when the line runs
		want string // in the VMM's answer
		ask  bool   // the switch is asked after the line ran
	}{
		{tagB, `"ok":false`, false},
		{tagA, `"requested":true`, true},
	} {
		reports(run.tag)
		b, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
		t.Logf("the VMM's migration reports %s: %s: %v %s", run.tag, line, err, b)
		if err != nil || !strings.Contains(string(b), run.want) || asked() != run.ask {
			t.Errorf("the line run while the VMM reports %s: %v, answer %q, switch asked %v; want %s and asked %v",
				run.tag, err, b, asked(), run.want, run.ask)
		}
	}
}

// buildMigrate builds cmd/migrate into dir and returns the binary's path.
func buildMigrate(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "migrate")
	goBin, err := exec.LookPath("go")
	if err != nil {
		//lint:ignore SA1019 a test runs where it was built, so the GOROOT that built it is still there
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/ferryvm/ferry/cmd/migrate").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/migrate: %v\n%s", err, b)
	}
	return bin
}

// lineJob writes dir/job.hcl, a job whose source control socket is
// dir/src.sock and whose destination's dir/dst.sock, and returns its
// path.
func lineJob(t *testing.T, dir string) string {
	t.Helper()
	job := filepath.Join(dir, "job.hcl")
	text := "source { control = \"" + filepath.Join(dir, "src.sock") + "\" }\ndestination { control = \"" +
		filepath.Join(dir, "dst.sock") + "\" }\ntransport \"tcp\" {}\n"
	if err := os.WriteFile(job, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return job
}

// runMigrate runs the migrate binary bin with args until it exits or
// ctx ends (then it is killed), logs what it did, and returns its
// stdout, its stderr and its error (an *exec.ExitError for an exit
// other than 0).
func runMigrate(ctx context.Context, t *testing.T, bin string, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	var errb strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &errb
	stdout, err = cmd.Output()
	t.Logf("migrate %s: %v\n%s%s", strings.Join(args, " "), err, stdout, errb.String())
	return stdout, errb.String(), err
}

// serveAt serves v's control commands on sock until the test ends.
func serveAt(t *testing.T, v *VM, sock string) {
	t.Helper()
	s, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Serve(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
