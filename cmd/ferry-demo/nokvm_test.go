package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// TestNoKVMSaysSkipped: on a host without /dev/kvm, `make demo` says
// first that nothing ran and why, and fails, rather than starting a
// guest that cannot boot.
func TestNoKVMSaysSkipped(t *testing.T) {
	if os.Getenv("FERRY_DEMO_MAIN") == "1" {
		os.Args = []string{"ferry-demo", "-bin", t.TempDir()}
		main()
		return
	}
	if kvm.Available() == nil {
		t.Skip("this host has /dev/kvm: the no-KVM message cannot be seen here")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNoKVMSaysSkipped$")
	cmd.Env = append(os.Environ(), "FERRY_DEMO_MAIN=1")
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(out), "SKIPPED, nothing ran") || !strings.Contains(string(out), "/dev/kvm") {
		t.Fatalf("ferry-demo without KVM: %v, output:\n%s", err, out)
	}
}
