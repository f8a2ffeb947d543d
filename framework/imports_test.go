package framework_test

import (
	"os/exec"
	"strings"
	"testing"
)

// module is this repository's module path.
const module = "github.com/ferryvm/ferry"

// forbidden are the trees framework/ must never import (docs/ARCHITECTURE.md#packages):
// the framework is what they build on, not the other way round.
var forbidden = []string{"vmm", "plugins", "transports", "cmd"}

// TestImportRule fails, naming the importing package, if any non-test
// package under framework/ depends, directly or through another package,
// on vmm/, plugins/, transports/ or cmd/. Test files are not checked: a
// framework test may build a real plugin binary to run against.
func TestImportRule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command(goTool(t), "list", "-deps", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}",
		module+"/framework/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, v := range violations(string(out)) {
		t.Error(v)
	}
}

// violations reads go list lines "pkg:imp imp ..." and returns one message
// per import of a forbidden tree by a package of this module. Every
// package listed is in the dependency graph of framework/..., so such an
// import is either in framework/ itself or reached from it.
func violations(list string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		pkg, imps, _ := strings.Cut(line, ":")
		if !strings.HasPrefix(pkg, module+"/") {
			continue
		}
		for _, imp := range strings.Fields(imps) {
			if tree := forbiddenTree(imp); tree != "" {
				out = append(out, pkg+" imports "+imp+": framework/ must not depend on "+tree+"/ (docs/ARCHITECTURE.md#packages)")
			}
		}
	}
	return out
}

// forbiddenTree is the forbidden top-level directory imp lies in, or "".
func forbiddenTree(imp string) string {
	rest, ok := strings.CutPrefix(imp, module+"/")
	if !ok {
		return ""
	}
	top, _, _ := strings.Cut(rest, "/")
	for _, f := range forbidden {
		if top == f {
			return f
		}
	}
	return ""
}

// goTool is the go command. go test puts its own GOROOT/bin first on the
// test's PATH, so this is the toolchain running the test.
func goTool(t *testing.T) string {
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	return p
}

func TestImportRuleViolations(t *testing.T) {
	list := module + "/framework:" + module + "/framework/bitmap fmt\n" +
		module + "/framework/engine:" + module + "/vmm/state " + module + "/vmmx\n" +
		module + "/framework/job:" + module + "/transports/tcp " + module + "/cmd\n" +
		"example.com/other:" + module + "/vmm\n"
	got := violations(list)
	want := []string{
		module + "/framework/engine imports " + module + "/vmm/state",
		module + "/framework/job imports " + module + "/transports/tcp",
		module + "/framework/job imports " + module + "/cmd",
	}
	if len(got) != len(want) {
		t.Fatalf("violations = %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]+":") {
			t.Errorf("violation %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}
