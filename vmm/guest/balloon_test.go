//go:build linux

package guest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/qmp"
)

// QEMU's virtio-balloon is the outside peer of the guest's driver: if the
// guest negotiates, answers hint sessions and inflates against QEMU, it
// speaks the standard, independently of Ferry's own device.

const (
	balloonQOM = "/machine/peripheral/balloon0"
	guestRAM   = 1 << 30
	hogMiB     = 512
)

var (
	probeRE  = regexp.MustCompile(`^virtio: balloon at 0x[0-9a-f]+ irq \d+ offered=0x[0-9a-f]+ features=0x([0-9a-f]+) queues=(\S+)$`)
	hintRE   = regexp.MustCompile(`^balloon: hint cmd=0x([0-9a-f]+) blocks=(\d+) MiB=(\d+) `)
	doneRE   = regexp.MustCompile(`^balloon: done released=(\d+)$`)
	actualRE = regexp.MustCompile(`^balloon: actual=(\d+) pages`)
	oomRE    = regexp.MustCompile(`^balloon: oom: deflated \d+ pages`)
	reportRE = regexp.MustCompile(`^balloon: report MiB=(\d+)$`)
)

// tscArgs is qmp.TSCArgs, saying so when KVM does not tell.
func tscArgs(t *testing.T) []string {
	a := qmp.TSCArgs()
	if a == nil {
		t.Log("KVM_GET_TSC_KHZ failed: the guest will calibrate its TSC on the PIT")
	}
	return a
}

// bootBalloon starts a guest with a balloon, connects QMP and waits for
// the probe line, "ready" and ticks verify=ok ticks; it returns the
// negotiated features.
func bootBalloon(t *testing.T, ctx context.Context, cmdline, props string, ticks int, extra ...string) (*qemuRun, *qmp.Client, uint64) {
	t.Helper()
	elf, qemu := needQEMU(t, t.Name()+" (the guest balloon driver against QEMU's virtio-balloon)")
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	args := append(append(tscArgs(t), qmp.BalloonArgs(qmpPath, props)...), extra...)
	r := startQEMU(t, ctx, elf, qemu, cmdline, args...)
	c, err := qmp.Dial(ctx, qmpPath, r.done)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var features uint64
	if ticks > 0 {
		features = waitReady(t, ctx, r, ticks)
	}
	return r, c, features
}

// waitReady reads serial lines until the balloon probe line, "ready" and
// n verify=ok ticks; any failure report fails the test.
func waitReady(t *testing.T, ctx context.Context, r *qemuRun, n int) uint64 {
	t.Helper()
	var features uint64
	ready := false
	for ticks := 0; ticks < n; {
		line := r.next(t, ctx, fmt.Sprintf("the balloon probe, ready and %d ticks", n))
		switch {
		case failRE.MatchString(line):
			t.Fatalf("guest reported a failure: %s", line)
		case strings.HasPrefix(line, "ferry-guest: "):
			t.Logf("guest: %s", line)
		case probeRE.MatchString(line):
			m := probeRE.FindStringSubmatch(line)
			features, _ = strconv.ParseUint(m[1], 16, 64)
			t.Logf("guest: %s", line)
		case readyRE.MatchString(line):
			ready = true
		case tickRE.MatchString(line) && ready:
			ticks++
		}
	}
	if features == 0 {
		t.Fatal("no 'virtio: balloon at ...' line before ready: the guest did not drive QEMU's balloon")
	}
	return features
}

// waitLine reads serial lines until one matches re and returns it; lines
// matching failRE fail the test.
func waitLine(t *testing.T, ctx context.Context, r *qemuRun, re *regexp.Regexp) []string {
	t.Helper()
	for {
		line := r.next(t, ctx, fmt.Sprintf("a line matching %q", re))
		if failRE.MatchString(line) {
			t.Fatalf("guest reported a failure: %s", line)
		}
		if m := re.FindStringSubmatch(line); m != nil {
			return m
		}
	}
}

func waitTicks(t *testing.T, ctx context.Context, r *qemuRun, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		waitLine(t, ctx, r, tickRE)
	}
}

// TestQEMUBalloonMigration migrates a 1 GiB guest that ran a 512 MiB hog
// (freed, but populated on the host) between two QEMUs over loopback TCP.
// With free-page-hint=on the guest must answer QEMU's hint session and
// QEMU must skip the hinted memory; with free-page-hint=off (the baseline)
// the hog's pages travel. Both destinations must keep verifying.
func TestQEMUBalloonMigration(t *testing.T) {
	for _, hint := range []bool{true, false} {
		// No '=' in the name: it ends up in the QMP socket path, which
		// QEMU's -qmp option would parse as key=value.
		name := "hint-" + map[bool]string{true: "on", false: "off"}[hint]
		t.Run(name, func(t *testing.T) {
			if !hint && testing.Short() {
				t.Skip("SKIPPED: the free-page-hint=off baseline (-short)")
			}
			info := migrateOnce(t, hint)
			t.Logf("%s: %d ms total, %d ms downtime, %d dirty syncs, ram transferred %.1f MiB "+
				"(%d normal pages, %d zero pages) of %d MiB RAM",
				name, info.TotalTime, info.Downtime, info.RAM.DirtySyncs, float64(info.RAM.Transferred)/(1<<20),
				info.RAM.Normal, info.RAM.Duplicate, guestRAM>>20)
			if hint && info.RAM.Transferred > guestRAM/8 {
				t.Errorf("ram transferred %d bytes with hints: more than 1/8 of the %d MiB guest; "+
					"the hog's %d MiB were not skipped", info.RAM.Transferred, guestRAM>>20, hogMiB)
			}
			if !hint && info.RAM.Transferred < hogMiB<<20 {
				t.Errorf("ram transferred %d bytes without hints: less than the hog's %d MiB, "+
					"so the comparison proves nothing", info.RAM.Transferred, hogMiB)
			}
		})
	}
}

func migrateOnce(t *testing.T, hint bool) qmp.MigrateInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	props := "free-page-hint=" + map[bool]string{true: "on", false: "off"}[hint]
	cmdline := fmt.Sprintf("workload=hog:%d,kv:16", hogMiB)
	src, srcQMP, features := bootBalloon(t, ctx, cmdline, props, 2)
	dst, dstQMP, _ := bootBalloon(t, ctx, cmdline, props, 0, "-incoming", "defer")
	if got := features>>3&1 == 1; got != hint {
		t.Fatalf("guest negotiated FREE_PAGE_HINT=%v with free-page-hint=%v (features 0x%x)", got, hint, features)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	uri := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	if err := dstQMP.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srcQMP.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithTimeout(ctx, 120*time.Second)
	info, err := qmp.WaitMigration(mctx, srcQMP)
	mcancel()
	if err != nil {
		t.Fatal(err)
	}

	// On the destination: the guest takes its hinted blocks back on DONE
	// and keeps verifying.
	if hint {
		m := waitLine(t, ctx, dst, doneRE)
		t.Logf("destination: balloon: done released=%s MiB", m[1])
	}
	waitTicks(t, ctx, dst, 3)

	// A round's line comes at its end, which is on the destination when
	// QEMU stopped the source in the middle of the round.
	rounds, blocks := 0, 0
	for i, out := range [][]string{src.output(), dst.output()} {
		for _, line := range out {
			if m := hintRE.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[2])
				rounds++
				blocks += n
				t.Logf("%s: %s", []string{"source", "destination"}[i], line)
			}
		}
	}
	if hint && blocks == 0 {
		t.Errorf("serial output shows %d hint rounds with %d blocks; want at least one round with blocks > 0", rounds, blocks)
	}
	if !hint && rounds > 0 {
		t.Errorf("guest hinted %d rounds without FREE_PAGE_HINT", rounds)
	}
	return info
}

// queryBalloon returns QEMU's idea of the guest's size (RAM minus balloon).
func queryBalloon(t *testing.T, ctx context.Context, c *qmp.Client) int64 {
	t.Helper()
	var info struct {
		Actual int64 `json:"actual"`
	}
	if err := c.Execute(ctx, "query-balloon", nil, &info); err != nil {
		t.Fatal(err)
	}
	return info.Actual
}

// setBalloon asks for a guest size and waits until QEMU reports it.
func setBalloon(t *testing.T, ctx context.Context, c *qmp.Client, size int64) time.Duration {
	t.Helper()
	start := time.Now()
	if err := c.Execute(ctx, "balloon", map[string]any{"value": size}, nil); err != nil {
		t.Fatal(err)
	}
	for {
		got := queryBalloon(t, ctx, c)
		if got == size {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("query-balloon says %d MiB, want %d MiB: %v", got>>20, size>>20, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type guestStats struct {
	LastUpdate int64             `json:"last-update"`
	Stats      map[string]uint64 `json:"stats"`
}

// TestQEMUBalloonInflate inflates the balloon to leave the guest 512 MiB,
// checks QEMU's stats from the guest, and deflates it again; the guest
// keeps verifying throughout.
func TestQEMUBalloonInflate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, c, _ := bootBalloon(t, ctx, "workload=kv:16,dirty:32@16", "free-page-hint=on", 1)
	if err := c.Execute(ctx, "qom-set", map[string]any{
		"path": balloonQOM, "property": "guest-stats-polling-interval", "value": 1}, nil); err != nil {
		t.Fatal(err)
	}

	const half = guestRAM / 2
	took := setBalloon(t, ctx, c, half)
	m := waitLine(t, ctx, r, actualRE)
	if m[1] != strconv.Itoa(half>>12) {
		t.Errorf("guest says actual=%s pages, want %d", m[1], half>>12)
	}
	t.Logf("inflated to leave %d MiB in %v", half>>20, took.Round(time.Millisecond))
	waitTicks(t, ctx, r, 2)

	// QEMU hands the stats buffer back every second; the guest refills it.
	var st guestStats
	for {
		if err := c.Execute(ctx, "qom-get", map[string]any{"path": balloonQOM, "property": "guest-stats"}, &st); err != nil {
			t.Fatal(err)
		}
		if st.LastUpdate > 0 && st.Stats["stat-total-memory"] > 0 && st.Stats["stat-total-memory"] <= half {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("guest-stats never showed the inflated balloon: %+v", st)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("guest-stats: total %d MiB, free %d MiB, available %d MiB", st.Stats["stat-total-memory"]>>20,
		st.Stats["stat-free-memory"]>>20, st.Stats["stat-available-memory"]>>20)
	if free := st.Stats["stat-free-memory"]; free <= 0 || free >= half {
		t.Errorf("stat-free-memory %d, want between 0 and %d", free, half)
	}

	took = setBalloon(t, ctx, c, guestRAM)
	if m := waitLine(t, ctx, r, actualRE); m[1] != "0" {
		t.Errorf("guest says actual=%s pages after deflating, want 0", m[1])
	}
	t.Logf("deflated back to %d MiB in %v", guestRAM>>20, took.Round(time.Millisecond))
	waitTicks(t, ctx, r, 2)
	if ev := strings.Join(c.Events(), " "); !strings.Contains(ev, "BALLOON_CHANGE") {
		t.Errorf("no BALLOON_CHANGE event from QEMU (events: %s)", ev)
	}
}

// TestQEMUBalloonDeflateOnOOM shrinks the guest far below its working set
// with deflate-on-oom=on: the balloon takes every free page, the kv
// workload's allocations fail, and the driver must give pages back so the
// workload keeps running and verifying.
func TestQEMUBalloonDeflateOnOOM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, c, features := bootBalloon(t, ctx, "workload=kv:64", "deflate-on-oom=on", 1)
	if features>>2&1 != 1 {
		t.Fatalf("guest did not negotiate DEFLATE_ON_OOM (features 0x%x)", features)
	}
	if err := c.Execute(ctx, "balloon", map[string]any{"value": 16 << 20}, nil); err != nil {
		t.Fatal(err)
	}
	waitLine(t, ctx, r, oomRE)
	waitTicks(t, ctx, r, 2)
	setBalloon(t, ctx, c, guestRAM)
	waitTicks(t, ctx, r, 2)
}

// TestQEMUBalloonReporting runs QEMU with free-page-reporting=on: the
// guest reports its free blocks, QEMU discards them, so QEMU's resident
// memory ends well below the 256 MiB the hog populated. (No "before"
// figure: the first report may come right after ready when the hog is
// slow, and the guest does not poll the balloon before ready.)
func TestQEMUBalloonReporting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, _, features := bootBalloon(t, ctx, "workload=hog:256,kv:16", "free-page-reporting=on", 1)
	if features>>5&1 != 1 {
		t.Fatalf("guest did not negotiate REPORTING (features 0x%x)", features)
	}
	m := waitLine(t, ctx, r, reportRE)
	mib, _ := strconv.Atoi(m[1])
	waitTicks(t, ctx, r, 1)
	rss := rssMiB(t, r)
	t.Logf("reported %d MiB; QEMU resident %d MiB after the hog populated 256 MiB", mib, rss)
	if mib < 256 {
		t.Errorf("reported %d MiB, want at least the hog's 256 MiB", mib)
	}
	if rss > 160 {
		t.Errorf("QEMU resident %d MiB after reporting, want well below the hog's 256 MiB (pages discarded)", rss)
	}
}

// rssMiB reads QEMU's VmRSS.
func rssMiB(t *testing.T, r *qemuRun) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb >> 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}
