package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// TestMigrateIntruder: a third VMM, told to send its own guest to the
// destination with credentials of its own, connects first and fails; the
// destination keeps waiting, takes the real source, and runs the real
// guest (kv churn, live pages) rather than the intruder's (idle, none).
func TestMigrateIntruder(t *testing.T) {
	needKVM(t, "TestMigrateIntruder (a third VMM sends to the destination)")
	listen := "127.0.0.1:" + itoa(freePort(t))
	p := startPairListen(t, "1G", "kv:64", listen, "", "")
	_, guest := binaries(t)
	in := startVMM(t, "-kernel", guest, "-mem", "1G", "-control", filepath.Join(p.dir, "in.sock"), "-cmdline", "workload=idle")
	in.control = filepath.Join(p.dir, "in.sock")
	in.waitLine(regexp.MustCompile(`^ready`), 120*time.Second)

	src, dst, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, _ := transport.MintCredentials(false)
	plugin := filepath.Join(repoRoot(t), "bin", "plugins", "ferry-transport-tcp")
	args := func(c transport.Credentials) api.MigrateArgs {
		return api.MigrateArgs{Plugin: plugin, Transport: map[string]any{"listen": listen, "connect_timeout": int64(30 * time.Second)},
			VerifyPages: true, Credentials: &c}
	}
	ctlCallAuth(t, p.dst.control, "migrate-incoming", args(dst))
	ctlCallAuth(t, in.control, "migrate-send", args(stranger))
	if rep := waitMigrationAuth(t, in.control); rep.Status == "completed" {
		t.Fatalf("the intruder's migration completed: %+v", rep)
	}
	if st := in.state(t); st != vmm.StateRunning {
		t.Fatalf("the intruder is %s after its refused migration, want running", st)
	}
	ctlCallAuth(t, p.src.control, "migrate-send", args(src))
	if rep := waitMigrationAuth(t, p.src.control); rep.Status != "completed" || rep.Encryption != "tls1.3" {
		t.Fatalf("the real source: %+v", rep)
	}
	if rep := waitMigrationAuth(t, p.dst.control); rep.Status != "completed" {
		t.Fatalf("the destination: %+v", rep)
	}
	for range 3 {
		m := p.dst.waitLine(tickRE, 30*time.Second)
		if live, _ := strconv.Atoi(m[2]); live == 0 || m[4] != "ok" {
			t.Fatalf("the destination runs a guest with %s live pages (verify=%s): not the real one", m[2], m[4])
		}
	}
}

func ctlCallAuth(t *testing.T, sock, cmd string, args any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), slow(30*time.Second))
	defer cancel()
	if err := control.Call(ctx, sock, cmd, args, nil); err != nil {
		t.Fatalf("%s %s: %v", sock, cmd, err)
	}
}

// waitMigrationAuth polls migrate-status until the migration on sock ended.
func waitMigrationAuth(t *testing.T, sock string) authReport {
	t.Helper()
	deadline := time.Now().Add(slow(2 * time.Minute))
	for time.Now().Before(deadline) {
		var st struct {
			Done   bool        `json:"done"`
			Report *authReport `json:"report"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), slow(10*time.Second))
		err := control.Call(ctx, sock, "migrate-status", nil, &st)
		cancel()
		if err != nil {
			t.Fatalf("%s migrate-status: %v", sock, err)
		}
		if st.Done && st.Report != nil {
			t.Logf("%s: %+v", sock, *st.Report)
			return *st.Report
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the migration on %s did not end within %v", sock, slow(2*time.Minute))
	return authReport{}
}

type authReport struct {
	Status     string `json:"status"`
	Error      string `json:"error"`
	Encryption string `json:"encryption"`
}
