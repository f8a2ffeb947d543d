package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoVMMDependency: migrate talks to a VMM over its control socket
// only; it must not link the reference VMM or its KVM code (the
// socket's types live in vmm/api).
func TestNoVMMDependency(t *testing.T) {
	out, err := exec.Command(goTool(), "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/ferryvm/ferry/vmm",
			strings.HasPrefix(dep, "github.com/ferryvm/ferry/vmm/kvm"):
			t.Errorf("cmd/migrate depends on %s", dep)
		}
	}
}

// goTool is the go command: on PATH, else the one that built this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	//lint:ignore SA1019 a test runs where it was built, so the GOROOT that built it is still there
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
