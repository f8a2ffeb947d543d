package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/control"
)

// pair is a source VMM running the test guest and a destination VMM
// waiting with -incoming, plus a job file connecting them.
type pair struct {
	t        testing.TB
	src, dst *guestRun
	dir      string
	job      string
	mem      string
}

// freePort returns a loopback port nobody listens on right now, below
// the kernel's ephemeral range where there is room
// (transporttest.FreeAddr): a port the kernel picked may meanwhile
// become some connection's source port — the proxy of
// TestHandoverOverTCP, dialing it before the destination listens, once
// connected to itself there and the destination's listen failed with
// EADDRINUSE.
func freePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(transporttest.FreeAddr(t, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startPair boots a source running workload and an incoming destination;
// transportExtra goes into the transport block, jobExtra after it (e.g. a
// limits block).
func startPair(t testing.TB, mem, workload, transportExtra, jobExtra string) *pair {
	return startPairListen(t, mem, workload, "127.0.0.1:"+itoa(freePort(t)), transportExtra, jobExtra)
}

func itoa(i int) string { return strconv.Itoa(i) }

func startPairListen(t testing.TB, mem, workload, listen, transportExtra, jobExtra string) *pair {
	return startPairArgs(t, mem, workload, listen, transportExtra, jobExtra, nil)
}

// startPairArgs is startPairListen with extra ferry-vmm flags for the source.
func startPairArgs(t testing.TB, mem, workload, listen, transportExtra, jobExtra string, srcArgs []string) *pair {
	return startPairTransport(t, "tcp", mem, workload, listen, transportExtra, jobExtra, srcArgs)
}

// startPairTransport is startPairArgs with a transport block named
// transport (its listen, then transportExtra).
func startPairTransport(t testing.TB, transport, mem, workload, listen, transportExtra, jobExtra string, srcArgs []string) *pair {
	_, guest := binaries(t)
	p := &pair{t: t, dir: t.TempDir(), mem: mem}
	p.src = startVMM(t, append([]string{"-kernel", guest, "-mem", mem, "-control", filepath.Join(p.dir, "src.sock"),
		"-cmdline", "workload=" + workload}, srcArgs...)...)
	p.src.control = filepath.Join(p.dir, "src.sock")
	p.newDestination()
	p.job = filepath.Join(p.dir, "job.hcl")
	job := fmt.Sprintf(`source      { control = %q }
destination { control = %q }
transport %q {
  listen  = %q
%s
}
%s
`, p.src.control, filepath.Join(p.dir, "dst.sock"), transport, listen, transportExtra, jobExtra)
	if err := os.WriteFile(p.job, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	p.src.waitLine(regexp.MustCompile(`^ready`), 120*time.Second)
	p.src.waitTicks(2, 30*time.Second)
	return p
}

// newDestination (re)starts the incoming VMM.
func (p *pair) newDestination() {
	sock := filepath.Join(p.dir, "dst.sock")
	os.Remove(sock)
	p.dst = startVMM(p.t, "-incoming", "-mem", p.mem, "-control", sock)
	p.dst.control = sock
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) { // wait for the control socket
		var st vmm.Status
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Call(ctx, sock, "status", nil, &st)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatal("destination control socket never came up")
}

// migrateReport is the part of migrate -json the tests look at.
type migrateReport struct {
	Status       string            `json:"status"`
	Error        string            `json:"error"`
	TotalMS      int64             `json:"total_ms"`
	DowntimeMS   int64             `json:"downtime_ms"`
	BytesWire    uint64            `json:"bytes_wire"`
	PagesSent    uint64            `json:"pages_sent"`
	PagesZero    uint64            `json:"pages_zero"`
	PagesSkipped uint64            `json:"pages_skipped"`
	Passes       int               `json:"passes"`
	PagesChecked uint64            `json:"pages_checked"`
	TotalPages   uint64            `json:"total_pages"`
	SkippedBy    map[string]uint64 `json:"pages_skipped_by"`
	Hints        []struct {
		Name    string `json:"name"`
		Status  string `json:"status"`
		Skipped uint64 `json:"pages_skipped"`
	} `json:"hints"`
}

// migrate runs bin/migrate on the pair's job with the page-exact check and
// returns its report and exit error. during runs while it is in flight.
func (p *pair) migrate(act func(cmd *exec.Cmd)) (migrateReport, error) {
	return p.migrateOpts(true, act)
}

func (p *pair) migrateOpts(verify bool, act func(cmd *exec.Cmd)) (migrateReport, error) {
	root := repoRoot(p.t)
	ctx, cancel := context.WithTimeout(context.Background(), slow(5*time.Minute))
	defer cancel()
	args := []string{"-config", p.job, "-json"}
	if verify {
		args = append(args, "-verify-pages")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "migrate"), args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, streamed(&errb, "migrate")
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	during(cmd, act, p.src, p.dst)
	err := cmd.Wait()
	var rep migrateReport
	if jerr := json.Unmarshal([]byte(out.String()), &rep); jerr != nil {
		p.t.Fatalf("migrate printed no JSON report (%v): stdout %q stderr %q", jerr, out.String(), errb.String())
	}
	p.t.Logf("migrate: %+v (exit %v)\n%s", rep, err, errb.String())
	return rep, err
}

func (r *guestRun) state(t testing.TB) vmm.State {
	var st vmm.Status
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := control.Call(ctx, r.control, "status", nil, &st); err != nil {
		t.Fatalf("%s status: %v", r.control, err)
	}
	return st.State
}

// TestMigrate moves running guests between two ferry-vmm processes over
// the TCP plugin with the page-exact check on; the guest must go on
// verifying on the destination and the source must end.
func TestMigrate(t *testing.T) {
	needKVM(t, "TestMigrate (live migration between two ferry-vmm processes)")
	for _, tc := range []struct {
		name, mem, workload string
	}{
		{"idle", "1G", "idle"},
		{"after hog", "1G", "hog:768"},
		{"dirtying", "1G", "dirty:128@64"},
		{"kv churn", "1G", "kv:256"},
		{"above 4 GiB", "6G", "hog:5120,dirty:64@32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t, tc.mem, tc.workload, "", "")
			rep, err := p.migrate(nil)
			if err != nil || rep.Status != "completed" {
				t.Fatalf("migration %s: %v", rep.Status, err)
			}
			if rep.PagesChecked != rep.TotalPages || rep.TotalPages == 0 {
				t.Errorf("page-exact check covered %d of %d pages", rep.PagesChecked, rep.TotalPages)
			}
			p.dst.waitTicks(3, 30*time.Second)
			go p.src.drain()
			if code := p.src.exitCode(30 * time.Second); code != 0 {
				t.Errorf("source VMM exit code %d after handing over", code)
			}
		})
	}
}

// TestMigrateDestinationKilled kills the destination mid-migration: the
// source must keep running and verifying, and a retry must succeed.
func TestMigrateDestinationKilled(t *testing.T) {
	needKVM(t, "TestMigrateDestinationKilled")
	p := startPair(t, "1G", "dirty:256@16", "", `limits { bandwidth = "64MiB/s" }`)
	rep, err := p.migrate(func(*exec.Cmd) {
		time.Sleep(time.Second)
		p.dst.kill()
	})
	if err == nil || rep.Status == "completed" {
		t.Fatalf("migration to a killed destination reported %s", rep.Status)
	}
	if st := p.src.state(t); st != vmm.StateRunning {
		t.Fatalf("source is %s after a failed migration, want running", st)
	}
	p.src.waitTicks(2, 30*time.Second)
	p.newDestination()
	if rep, err := p.migrate(nil); err != nil || rep.Status != "completed" {
		t.Fatalf("retry: %s, %v", rep.Status, err)
	}
	p.dst.waitTicks(2, 30*time.Second)
}

// TestMigratePluginKilled kills the source's transport plugin process
// mid-migration: the source keeps running, and a retry succeeds.
func TestMigratePluginKilled(t *testing.T) {
	needKVM(t, "TestMigratePluginKilled")
	p := startPair(t, "1G", "dirty:256@16", "", `limits { bandwidth = "64MiB/s" }`)
	killed := 0
	rep, err := p.migrate(func(*exec.Cmd) {
		// The plugin starts when the source's session does, a while
		// after migrate (a few seconds under emulated KVM): look until
		// it is there, then let the bulk pass get going.
		var pids []int
		for deadline := time.Now().Add(time.Minute); len(pids) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			pids = childPids(t, p.src.cmd.Process.Pid, "ferry-transpor")
		}
		time.Sleep(time.Second)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
			killed++
		}
	})
	if killed == 0 {
		t.Fatal("no transport plugin process found under the source VMM")
	}
	if err == nil || rep.Status == "completed" {
		t.Fatalf("migration with a killed plugin reported %s", rep.Status)
	}
	if st := p.src.state(t); st != vmm.StateRunning {
		t.Fatalf("source is %s after a failed migration, want running", st)
	}
	p.src.waitTicks(2, 30*time.Second)
	go p.dst.drain()
	p.dst.exitCode(30 * time.Second) // the destination gave up with an error
	p.newDestination()
	if rep, err := p.migrate(nil); err != nil || rep.Status != "completed" {
		t.Fatalf("retry: %s, %v", rep.Status, err)
	}
	p.dst.waitTicks(2, 30*time.Second)
}

// childPids lists the children of ppid whose command name starts with comm
// (/proc/PID/stat truncates names to 15 characters).
func childPids(t testing.TB, ppid int, comm string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, close := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(string(b[close+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) && strings.HasPrefix(string(b[open+1:close]), comm) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestMigrateCancelled interrupts migrate (Ctrl-C): the migration is
// cancelled, the source keeps running, and the job can run again.
func TestMigrateCancelled(t *testing.T) {
	needKVM(t, "TestMigrateCancelled")
	p := startPair(t, "1G", "dirty:256@16", "", `limits { bandwidth = "32MiB/s" }`)
	rep, err := p.migrate(func(cmd *exec.Cmd) {
		// Once pages move: an interrupt before migrate told the VMMs
		// anything (under emulated KVM its plugins take seconds to
		// start) is cancelled too, but leaves no destination to end.
		p.src.waitPhase(t, 2*time.Minute, engine.PhaseBulk, engine.PhaseDirty)
		cmd.Process.Signal(os.Interrupt)
	})
	if err == nil || rep.Status != "cancelled" {
		t.Fatalf("interrupted migration reported %q (%v), want cancelled", rep.Status, err)
	}
	if st := p.src.state(t); st != vmm.StateRunning {
		t.Fatalf("source is %s after a cancelled migration, want running", st)
	}
	p.src.waitTicks(2, 30*time.Second)
	go p.dst.drain()
	p.dst.exitCode(30 * time.Second)
	p.newDestination()
	if rep, err := p.migrateOpts(false, nil); err != nil || rep.Status != "completed" {
		t.Fatalf("retry: %s, %v", rep.Status, err)
	}
	p.dst.waitTicks(2, 30*time.Second)
}
