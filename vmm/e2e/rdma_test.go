package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The RDMA transport on a live guest (issue 12): the test guest after a
// 768 MiB hog with a 64 MiB key-value store, balloon hints on, moved by
// transport "rdma" over libfabric's tcp provider (the software provider
// that runs the same RMA code paths as verbs without a device), with the
// page-exact check; then the same in post-copy, whose requested pages
// take the rdma transport's urgent path.

// The balloon's deadline is 3 s, not the 500 ms of the tcp tests: under
// an emulated KVM (vmm/e2e/tcg) the first hint generation missed 500 ms,
// and the guest reports its free pages once, in that generation, then
// holds them: later generations had nothing new to say. A deadline
// bounds the wait; it does not add one.

// rdmaJob is the rdma block's settings besides listen: the tcp provider,
// pages in the clear (RDMA writes are not encrypted; the control
// channel still is), and connect_timeout, the default 10 s stretched by
// FERRY_E2E_TIME_SCALE (slow): under an emulated KVM every step of the
// setup (TLS, the fabric connections, the registration the peer waits
// for) takes tens of times as long. On 2026-12-07 TestMigrateRDMA failed
// there every time with "connect_timeout (10s) passed while connecting
// the fabric endpoint" and passed with 90 s; part of that was
// libfabric's first initialisation, no longer counted since
// (transports/rdma/README.md, "libfabric's first use"). It is a hang
// guard: no test asserts it.
func rdmaJob() string {
	return fmt.Sprintf("  provider        = \"tcp\"\n  cleartext_pages = true\n  connect_timeout = %q", slow(10*time.Second).String())
}

// needRDMAPlugin skips, loudly, when the rdma plugin was not built (no
// cgo or no libfabric headers: make says so).
func needRDMAPlugin(t *testing.T, what string) {
	if _, err := os.Stat(filepath.Join(repoRoot(t), "bin", "plugins", "ferry-transport-rdma")); err != nil {
		t.Skipf("SKIPPED (no bin/plugins/ferry-transport-rdma: make builds it with cgo and libfabric-dev): %s did not run", what)
	}
}

// TestMigrateRDMA: pre-copy over the rdma transport, page-exact, with the
// balloon's hints; the guest verifies its store on the destination.
func TestMigrateRDMA(t *testing.T) {
	needKVM(t, "TestMigrateRDMA")
	needRDMAPlugin(t, "TestMigrateRDMA")
	p := startPairTransport(t, "rdma", "1G", "hog:768,kv:64", "127.0.0.1:"+itoa(freePort(t)), rdmaJob(),
		`hint "balloon" { deadline = "3s" }`, []string{"-no-page-reporting"})
	rep, err := p.migrate(nil)
	if err != nil || rep.Status != "completed" {
		t.Fatalf("migration %s (%s): %v", rep.Status, rep.Error, err)
	}
	if rep.PagesChecked != rep.TotalPages {
		t.Errorf("page-exact check covered %d of %d pages", rep.PagesChecked, rep.TotalPages)
	}
	if rep.SkippedBy["balloon"] < 512<<8 {
		t.Errorf("the balloon skipped %d pages, want most of the hog's 768 MiB", rep.SkippedBy["balloon"])
	}
	p.dst.waitTicks(3, 60*time.Second)
}

// TestPostcopyRDMA: the same guest in post-copy ("always") over the rdma
// transport: the state goes after the bulk pass, the guest runs on the
// destination and its faults are served over rdma's urgent path, every
// page checked as it lands.
func TestPostcopyRDMA(t *testing.T) {
	needKVM(t, "TestPostcopyRDMA")
	needRDMAPlugin(t, "TestPostcopyRDMA")
	p := startPairTransport(t, "rdma", "1G", "hog:768,kv:64", "127.0.0.1:"+itoa(freePort(t)), rdmaJob(),
		`hint "balloon" { deadline = "3s" }
limits { postcopy = "always" }`, []string{"-no-page-reporting"})
	rep, err := p.migratePostcopy(nil)
	p.checkPostcopy(rep, err)
	d := rep.Destination
	t.Logf("destination: %d requested, %d zero locally, %d landed locally; faults p50 %d us p99 %d us",
		d.PagesRequested, d.PagesZeroLocal, d.PagesLandLocal, d.FaultP50US, d.FaultP99US)
}
