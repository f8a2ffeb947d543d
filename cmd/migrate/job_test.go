package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/transports/tcp"
)

// The test binary doubles as plugin binaries (plugintest.Main): started
// under one of these names, it serves that plugin instead of running
// tests.
var testPlugins = map[string]func() int{
	"ferry-transport-tcp": func() int {
		transport.Serve(&transport.Mock{SchemaFunc: func(context.Context) (schema.Schema, error) {
			return schema.Schema{
				{Name: "listen", Type: schema.TypeString, Required: true},
				{Name: "streams", Type: schema.TypeNumber, Default: int64(2)},
			}, nil
		}})
		return 0
	},
	"ferry-hint-balloon": func() int {
		hint.Serve(&hint.Mock{InfoFunc: named("balloon"), SchemaFunc: func(context.Context) (hint.Schema, error) {
			return hint.Schema{{Name: "chunk", Type: schema.TypeSize, Default: "4MiB"}}, nil
		}})
		return 0
	},
	// zr calls itself zerorun: its binary and its block say zr.
	"ferry-hint-zr": func() int {
		hint.Serve(&hint.Mock{InfoFunc: named("zerorun"), SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil }})
		return 0
	},
	"ferry-hint-broken": func() int { return 1 }, // never completes the handshake
	// gpa checks a relation its schema cannot say (hint.Validator).
	"ferry-hint-gpa": func() int {
		hint.Serve(&hint.Mock{
			InfoFunc: named("gpa"),
			SchemaFunc: func(context.Context) (hint.Schema, error) {
				return hint.Schema{{Name: "min_gpa", Type: schema.TypeNumber, Default: int64(0)},
					{Name: "max_gpa", Type: schema.TypeNumber, Required: true}}, nil
			},
			ValidateFunc: func(_ context.Context, cfg hint.Config) error {
				if lo, hi := cfg["min_gpa"].(int64), cfg["max_gpa"].(int64); hi <= lo {
					return schema.Problemf("max_gpa", "must be above min_gpa (%#x), not %#x", lo, hi)
				}
				if _, ok := cfg["deadline"]; ok {
					return errors.New("the engine's deadline reached the provider")
				}
				return nil
			},
		})
		return 0
	},
	// a real transport, for TestOutOfTreeProvider's migration
	"ferry-transport-loopback": func() int { transport.Serve(loopback.New()); return 0 },
	"ferry-hint-slowa":         func() int { return slowSchema("slowa") },
	"ferry-hint-slowb":         func() int { return slowSchema("slowb") },

	// the TCP transport itself, whose Validate runs the checks of its
	// Open (the mock "tcp" above has none)
	"ferry-transport-realtcp": func() int { transport.Serve(tcp.New(nil)); return 0 },
}

// named is an Info that says name.
func named(name string) func(context.Context) (hint.Info, error) {
	return func(context.Context) (hint.Info, error) {
		return hint.Info{Name: name, Version: "test", Meaning: hint.MeaningFree}, nil
	}
}

// slowSchemaWait is how long a slow provider's Schema waits for the
// other one to be asked too: they note when they begin and end in the
// file named by $FERRY_TEST_SCHEMA_LOG, and each answers once both
// began (asked one after the other, the first answers after the wait).
// Asked together they meet at once; a loaded machine may start the
// second process seconds late.
const slowSchemaWait = 20 * time.Second

func slowSchema(name string) int {
	notes := os.Getenv("FERRY_TEST_SCHEMA_LOG")
	note := func(what string) {
		if f, err := os.OpenFile(notes, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(f, what, os.Getpid())
			f.Close()
		}
	}
	hint.Serve(&hint.Mock{InfoFunc: named(name), SchemaFunc: func(context.Context) (hint.Schema, error) {
		note("begin")
		for end := time.Now().Add(slowSchemaWait); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(notes); strings.Count(string(b), "begin") >= 2 {
				break
			}
		}
		note("end")
		return nil, nil
	}})
	return 0
}

func TestMain(m *testing.M) { plugintest.Main(m, testPlugins) }

// TestLoadJobReportsEverything: whatever is wrong in one block, every
// other block is still checked, and the run reports each mistake.
func TestLoadJobReportsEverything(t *testing.T) {
	const ends = "source { control = \"/run/ferry/src.sock\" }\ndestination { control = \"/run/ferry/dst.sock\" }\n"
	for _, tc := range []struct {
		name string
		job  string
		want []string // one line each, in order
	}{
		{"unknown hint hides nothing", ends + `transport "tcp" { streams = "many" }
hint "ballon" {}
hint "balloon" { chunk = "lots" }
`, []string{
			`job.hcl:3:1: Missing required argument: The transport "tcp" block needs listen`,
			`job.hcl:3:29: Wrong type for streams`,
			`job.hcl:4:6: Unknown hint plugin: There is no hint plugin "ballon"`,
			`job.hcl:5:26: Invalid chunk`,
			`migrate: job.hcl has 4 error(s); nothing was started`,
		}},
		{"a plugin without a schema hides nothing", ends + `transport "tcp" {
  listen = "127.0.0.1:7070"
  port   = 1
}
hint "broken" {}
hint "balloon" { chunk = "lots" }
`, []string{
			`job.hcl:5:3: Unsupported argument: An argument named "port"`,
			`job.hcl:7:6: Plugin did not describe its configuration: migrate started the hint plugin`,
			`job.hcl:8:26: Invalid chunk`,
			`migrate: job.hcl has 3 error(s); nothing was started`,
		}},
		{"duplicates are checked inside", ends + `transport "tcp" { listen = "127.0.0.1:7070" }
transport "tcp" { streams = "many" }
hint "balloon" {}
hint "balloon" { chunk = "lots" }
`, []string{
			`job.hcl:4:1: Duplicate transport block`,
			`job.hcl:4:1: Missing required argument`,
			`job.hcl:4:29: Wrong type for streams`,
			`job.hcl:6:6: Duplicate hint block`,
			`job.hcl:6:26: Invalid chunk`,
			`migrate: job.hcl has 5 error(s); nothing was started`,
		}},
		{"a provider's own checks, with every other error", ends + `transport "tcp" { streams = "many" }
hint "gpa" {
  min_gpa  = 8192
  max_gpa  = 4096
  deadline = "1s"
}
hint "gpa" { max_gpa = 0 }
`, []string{
			`job.hcl:3:1: Missing required argument`,
			`job.hcl:3:29: Wrong type for streams`,
			`job.hcl:6:14: Invalid max_gpa: must be above min_gpa (0x2000), not 0x1000.`,
			`job.hcl:9:6: Duplicate hint block`,
			`job.hcl:9:24: Invalid max_gpa: must be above min_gpa (0x0), not 0x0.`,
			`migrate: job.hcl has 5 error(s); nothing was started`,
		}},
		{"a provider that calls itself otherwise", ends + `transport "tcp" { listen = "127.0.0.1:7070" }
hint "zr" {}
`, []string{
			`job.hcl:4:6: Hint provider's name is not its block's: migrate started ` + plugintest.Path(t, "ferry-hint-zr") +
				` for the block hint "zr", and the provider calls itself "zerorun" (its Info.Name).`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
		{"same socket, cleaned", `source { control = "/run/ferry/vm.sock" }
destination { control = "/run/ferry/../ferry/vm.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
`, []string{
			`job.hcl:2:25: Source and destination are the same VMM`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, code := loadJobText(t, tc.job)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !matchLines(got, tc.want) {
				t.Errorf("output:\n%s\nwant lines starting with:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestLoadJobSameSocketFile: a destination that reaches the source's
// socket through a symbolic link is refused at its control attribute.
func TestLoadJobSameSocketFile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "src.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	link := filepath.Join(dir, "dst.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	got, code := loadJobText(t, fmt.Sprintf("source { control = %q }\ndestination { control = %q }\ntransport \"tcp\" { listen = \"127.0.0.1:7070\" }\n", sock, link))
	want := []string{`job.hcl:2:25: Source and destination are the same VMM`, `migrate: job.hcl has 1 error(s)`}
	if code != 2 || !matchLines(got, want) {
		t.Errorf("status %d, output:\n%s\nwant lines starting with:\n%s", code, got, strings.Join(want, "\n"))
	}
}

// TestLoadJobGood: a correct job loads, with its plugins resolved; a
// provider without checks of its own (balloon here) has nothing to add,
// and one with them (gpa) is asked without the engine's deadline.
func TestLoadJobGood(t *testing.T) {
	got, code := loadJobText(t, `source { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" {}
hint "gpa" {
  min_gpa  = 4096
  max_gpa  = 8192
  deadline = "1s"
}
`)
	if code != 0 || got != "" {
		t.Errorf("status %d, output %q; want 0 and nothing", code, got)
	}
}

// TestLoadJobAsksAtOnce: migrate asks every plugin for its schema at
// the same time: of two providers, the second is asked before the first
// answered (each answers only once both were asked, or after
// slowSchemaWait).
func TestLoadJobAsksAtOnce(t *testing.T) {
	notes := filepath.Join(t.TempDir(), "notes")
	t.Setenv("FERRY_TEST_SCHEMA_LOG", notes)
	start := time.Now()
	got, code := loadJobText(t, `source { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "slowa" {}
hint "slowb" {}
`)
	took := time.Since(start)
	if code != 0 || got != "" {
		t.Fatalf("status %d, output %q; want 0 and nothing", code, got)
	}
	b, err := os.ReadFile(notes)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	t.Logf("loadJob took %v; the providers' notes: %q", took, lines)
	if len(lines) != 8 || lines[0] != "begin" || lines[2] != "begin" {
		t.Errorf("the slow providers' schema calls, in order: %q; want both to begin before either ends", lines)
	}
}

// loadJobText runs loadJob on src as job.hcl in the current directory's
// terms (diagnostics name "job.hcl").
func loadJobText(t *testing.T, src string) (string, int) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("job.hcl", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_, _, code := loadJob(t.Context(), "job.hcl", plugintest.Dir(), &out)
	return out.String(), code
}

// matchLines reports whether the unindented lines of out start with
// want, in order and with nothing else.
func matchLines(out string, want []string) bool {
	var heads []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") {
			heads = append(heads, l)
		}
	}
	if len(heads) != len(want) {
		return false
	}
	for i := range want {
		if !strings.HasPrefix(heads[i], want[i]) {
			return false
		}
	}
	return true
}

// TestCheckOnly: migrate -check reports a good job and the plugins it
// would run, exit 0, and a bad one as a run would, exit 2, without
// touching either VMM (their sockets do not exist).
func TestCheckOnly(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	const endpoints = `source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
`
	os.WriteFile(good, []byte(endpoints+`transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" {}
`), 0o600)
	os.WriteFile(bad, []byte(endpoints+`transport "tcp" {
  listen = "127.0.0.1:7070"
  strems = 4
}
`), 0o600)
	var out, errb strings.Builder
	if code := realMain([]string{"-check", "-config", good, "-plugin-dir", plugintest.Dir()}, &out, &errb); code != 0 {
		t.Fatalf("good job: exit %d, stderr %q", code, errb.String())
	}
	for _, want := range []string{good + ": ok", "/nonexistent/src.sock", "transport     tcp (", "hint          balloon ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("good job: output %q lacks %q", out.String(), want)
		}
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"-check", "-config", bad, "-plugin-dir", plugintest.Dir()}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `Did you mean "streams"?`) || out.Len() != 0 {
		t.Errorf("bad job: exit %d, stdout %q, stderr %q; want 2 and the mistake", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := realMain([]string{"-check", "-resolve", "-config", good}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "separate commands") {
		t.Errorf("-check -resolve: exit %d, stderr %q; want 2", code, errb.String())
	}
}

// TestLoadJobRefusesReplaceablePlugin: a plugin binary in a directory
// every user may write (another local user could have put it there, or
// replace it before the VMM starts it) is refused at the block's label,
// and migrate starts nothing: a plugin runs with the guest's RAM and the
// session's keys. Until an audit found it, migrate ran whatever binary
// the search path held, wherever it lived.
func TestLoadJobRefusesReplaceablePlugin(t *testing.T) {
	dir := filepath.Join(openTempDir(t), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(plugintest.Dir(), "ferry-transport-tcp"), filepath.Join(dir, "ferry-transport-tcp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(t.TempDir(), "job.hcl")
	os.WriteFile(jobFile, []byte(`source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
`), 0o600)
	var out, errb strings.Builder
	code := realMain([]string{"-check", "-config", jobFile, "-plugin-dir", dir}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "Plugin binary not safe to run") ||
		!strings.Contains(errb.String(), "writable by every user") || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and the refusal", code, out.String(), errb.String())
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := realMain([]string{"-check", "-config", jobFile, "-plugin-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("once only its user may write it: exit %d, stderr %q", code, errb.String())
	}
}

// openTempDir is a t.TempDir() that every user may search, as are the
// directories above it: below the 0700 directory the go command makes,
// nobody else could reach a file, and job.CheckTrustedFile passes it
// whatever its mode.
func openTempDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCheckTransportValidates: migrate -check asks the transport plugin
// it started for the schema to check the decoded block too
// (transport.Validator), and reports each value the transport's Open
// would refuse at its file:line, as a hint provider's problems: the four
// a docs audit found passing -check before (bd695fc), all in one run. A
// transport without checks of its own passes as before.
func TestCheckTransportValidates(t *testing.T) {
	const endpoints = `source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
`
	for _, tc := range []struct {
		name, block string
		code        int
		want        []string
	}{
		{"tcp refuses", `transport "realtcp" {
  listen   = "not an address"
  streams  = 17
  compress = "zstd"
}
`, 2, []string{
			`job.hcl:4:14: Invalid listen: "not an address" is not host:port: address not an address: missing port in address.`,
			`job.hcl:5:14: Invalid streams: must be a number from 1 to 16, not 17.`,
			`job.hcl:6:14: Invalid compress: must be "lz4" or "none", not zstd.`,
			`migrate: job.hcl has 3 error(s); nothing was started`,
		}},
		{"compress true", `transport "realtcp" {
  listen   = "10.0.0.2:7070"
  compress = true
}
`, 2, []string{
			`job.hcl:5:14: Invalid compress: must be "lz4" or "none", not true.`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
		{"tcp takes a good block", `transport "realtcp" {
  listen   = "10.0.0.2:7070"
  connect  = "192.0.2.1:7070"
  streams  = 16
  compress = "none"
}
`, 0, nil},
		{"a transport without checks", `transport "tcp" {
  listen  = "not an address"
  streams = 17
}
`, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if err := os.WriteFile("job.hcl", []byte(endpoints+tc.block), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb strings.Builder
			code := realMain([]string{"-check", "-config", "job.hcl", "-plugin-dir", plugintest.Dir()}, &out, &errb)
			if code != tc.code || (tc.want != nil && !matchLines(errb.String(), tc.want)) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and lines starting with:\n%s",
					code, out.String(), errb.String(), tc.code, strings.Join(tc.want, "\n"))
			}
			if tc.code == 0 && !strings.Contains(out.String(), "job.hcl: ok") {
				t.Errorf("stdout %q, want ok", out.String())
			}
		})
	}
}

// TestLoadJobSyntaxError: a job whose HCL syntax is wrong (a block left
// open, a stray brace) ends as every other refused job does: HCL's
// diagnostics, then the line that counts them and says nothing was
// started, exit 2, from a run, migrate -check, -resolve and
// -start-postcopy alike (readJob and refuseJob, shared by loadJob and
// parseJobFile), and so does one whose content is wrong. Before, a run
// and -check had the diagnostics alone, and until this test -resolve
// and -start-postcopy had them alone still.
func TestLoadJobSyntaxError(t *testing.T) {
	const ends = "source { control = \"/nonexistent/src.sock\" }\ndestination { control = \"/nonexistent/dst.sock\" }\n"
	for _, tc := range []struct {
		name, job string
		want      []string
	}{
		{"unclosed block", ends + "transport \"tcp\" { listen = \"127.0.0.1:7070\" }\nlimits {\n", []string{
			`job.hcl:4:8: Unclosed configuration block`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
		{"stray brace", ends + "}\ntransport \"tcp\" { listen = \"127.0.0.1:7070\" }\n", []string{
			`job.hcl:3:1: Argument or block definition required`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
		{"same socket", "source { control = \"/nonexistent/a.sock\" }\ndestination { control = \"/nonexistent/a.sock\" }\n" +
			"transport \"tcp\" { listen = \"127.0.0.1:7070\" }\n", []string{
			`job.hcl:2:25: Source and destination are the same VMM`,
			`migrate: job.hcl has 1 error(s); nothing was started`,
		}},
	} {
		for _, mode := range [][]string{nil, {"-check"}, {"-resolve"}, {"-start-postcopy"}} {
			t.Run(strings.Join(append([]string{tc.name}, mode...), " "), func(t *testing.T) {
				t.Chdir(t.TempDir())
				if err := os.WriteFile("job.hcl", []byte(tc.job), 0o600); err != nil {
					t.Fatal(err)
				}
				var out, errb strings.Builder
				args := append(mode, "-config", "job.hcl", "-plugin-dir", plugintest.Dir())
				code := realMain(args, &out, &errb)
				if code != 2 || out.Len() != 0 || !matchLines(errb.String(), tc.want) {
					t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, no stdout and lines starting with:\n%s",
						code, out.String(), errb.String(), strings.Join(tc.want, "\n"))
				}
			})
		}
	}
}
