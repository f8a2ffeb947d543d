package job

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
)

func TestParse(t *testing.T) {
	const ends = `
source      { control = "/s.sock" }
destination { control = "/d.sock" }
`
	for _, c := range []struct {
		name, src string
		check     func(t *testing.T, j *Job)
	}{
		{"defaults", ends + `transport "tcp" {}`, func(t *testing.T, j *Job) {
			want := Limits{MaxDowntime: 300 * time.Millisecond, Bandwidth: 0, MaxPasses: 30,
				SwitchoverTimeout: 5 * time.Second, IncomingTimeout: 2 * time.Minute,
				Postcopy: engine.PostcopyOff, ReconnectTimeout: 10 * time.Minute, StallTimeout: 30 * time.Second}
			if j.Limits != want || j.PluginDir != "" || len(j.Hints) != 0 {
				t.Errorf("limits %+v, plugin_dir %q, hints %d; want %+v, \"\", 0", j.Limits, j.PluginDir, len(j.Hints), want)
			}
			if j.Source.Control != "/s.sock" || j.Destination.Control != "/d.sock" || j.File != "t.hcl" {
				t.Errorf("endpoints %+v %+v in %q", j.Source, j.Destination, j.File)
			}
			if j.Transport.Kind != KindTransport || j.Transport.Name != "tcp" || j.Transport.Body == nil || j.Transport.Config != nil {
				t.Errorf("transport %+v", j.Transport)
			}
			if r := j.Transport.LabelRange; r.Start.Line != 4 || r.Start.Column != 11 || r.End.Column != 16 {
				t.Errorf("transport label at %v, want t.hcl:4,11-16", r)
			}
		}},
		{"everything", `plugin_dir = "/opt/ferry"` + ends + `
transport "rdma" { device = "mlx5_0" }
hint "balloon" { deadline = "300ms" }
hint "pagemap" {}
limits {
  max_downtime = "1.5s"
  bandwidth    = "1GiB/s"
  max_passes   = 1000
  switchover_timeout = "2s"
  incoming_timeout   = "30s"
  postcopy           = "auto"
  reconnect_timeout  = "1m"
  stall_timeout      = "45s"
}`, func(t *testing.T, j *Job) {
			want := Limits{MaxDowntime: 1500 * time.Millisecond, Bandwidth: 1 << 30, MaxPasses: 1000,
				SwitchoverTimeout: 2 * time.Second, IncomingTimeout: 30 * time.Second,
				Postcopy: engine.PostcopyAuto, ReconnectTimeout: time.Minute, StallTimeout: 45 * time.Second}
			if j.Limits != want || j.PluginDir != "/opt/ferry" {
				t.Errorf("limits %+v, plugin_dir %q; want %+v, /opt/ferry", j.Limits, j.PluginDir, want)
			}
			if len(j.Hints) != 2 || j.Hints[0].Name != "balloon" || j.Hints[1].Name != "pagemap" || j.Hints[0].Kind != KindHint {
				t.Errorf("hints %+v", j.Hints)
			}
			if j.Transport.Name != "rdma" {
				t.Errorf("transport %q, want rdma", j.Transport.Name)
			}
		}},
		{"limits bounds", ends + `transport "tcp" {}
limits {
  max_downtime = "1ms"
  bandwidth    = 1000
  max_passes   = 1
}`, func(t *testing.T, j *Job) {
			if want := (Limits{MaxDowntime: time.Millisecond, Bandwidth: 1000, MaxPasses: 1, SwitchoverTimeout: 5 * time.Second, IncomingTimeout: 2 * time.Minute,
				Postcopy: engine.PostcopyOff, ReconnectTimeout: 10 * time.Minute, StallTimeout: 30 * time.Second}); j.Limits != want {
				t.Errorf("limits %+v, want %+v", j.Limits, want)
			}
		}},
		{"postcopy modes", ends + `transport "tcp" {}
limits {
  postcopy          = "always"
  reconnect_timeout = "23h59m"
}`, func(t *testing.T, j *Job) {
			if j.Limits.Postcopy != engine.PostcopyAlways || j.Limits.ReconnectTimeout != 23*time.Hour+59*time.Minute {
				t.Errorf("postcopy %q, reconnect_timeout %v; want always, 23h59m", j.Limits.Postcopy, j.Limits.ReconnectTimeout)
			}
		}},
		{"postcopy off written out", ends + `transport "tcp" {}
limits { postcopy = "off" }`, func(t *testing.T, j *Job) {
			if j.Limits.Postcopy != engine.PostcopyOff {
				t.Errorf("postcopy %q, want off", j.Limits.Postcopy)
			}
		}},
		{"stall_timeout bounds", ends + `transport "tcp" {}
limits { stall_timeout = "59m59.999s" }`, func(t *testing.T, j *Job) {
			if want := time.Hour - time.Millisecond; j.Limits.StallTimeout != want {
				t.Errorf("stall_timeout %v, want %v", j.Limits.StallTimeout, want)
			}
		}},
		{"stall_timeout short", ends + `transport "tcp" {}
limits { stall_timeout = "1s" }`, func(t *testing.T, j *Job) {
			if j.Limits.StallTimeout != time.Second {
				t.Errorf("stall_timeout %v, want 1s", j.Limits.StallTimeout)
			}
		}},
		{"limits just below 1h", ends + `transport "tcp" {}
limits { max_downtime = "59m59.999s" }`, func(t *testing.T, j *Job) {
			if want := time.Hour - time.Millisecond; j.Limits.MaxDowntime != want {
				t.Errorf("max_downtime %v, want %v", j.Limits.MaxDowntime, want)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, diags := Parse("t.hcl", []byte(c.src))
			if len(diags) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diags)
			}
			c.check(t, j)
		})
	}
}

// TestParseKeepsGoing checks that a job with errors still comes back,
// filled as far as possible, so later steps can report their mistakes.
func TestParseKeepsGoing(t *testing.T) {
	j, diags := Parse("t.hcl", []byte(`
bogus {}
source { control = "/s.sock" }
transport "tcp" { listen = 1 }
hint "balloon" { deadline = "soon" }`))
	if !diags.HasErrors() || j == nil {
		t.Fatalf("want errors and a job, got %v, %v", j, diags)
	}
	if j.Source.Control != "/s.sock" || j.Transport.Name != "tcp" || len(j.Hints) != 1 {
		t.Errorf("partial job %+v", j)
	}
	if d := j.Hints[0].Decode(hintSchema); len(d) != 1 || d[0].Summary != "Invalid deadline" {
		t.Errorf("decode of the hint gave %v, want one Invalid deadline", d)
	}
}

func TestParseNotHCL(t *testing.T) {
	j, diags := Parse("t.hcl", []byte("source {"))
	if j != nil || !diags.HasErrors() {
		t.Fatalf("Parse of broken HCL = %v, %v; want nil and errors", j, diags)
	}
}

func TestCheckPlugins(t *testing.T) {
	j, _ := Parse("t.hcl", []byte(`
transport "tcp" {}
hint "balloon" {}
hint "cmma" {}`))
	if d := j.CheckPlugins([]string{"tcp"}, []string{"balloon", "cmma"}); len(d) != 0 {
		t.Errorf("all known: %v", d)
	}
	d := j.CheckPlugins(nil, []string{"pagemap", "balloon"})
	if got := summaries(d); len(got) != 2 || got[0] != "Unknown transport plugin" || got[1] != "Unknown hint plugin" {
		t.Fatalf("diagnostics %q", got)
	}
	if want := `There is no transport plugin "tcp"; none were found: put the plugin binaries in plugin_dir.`; d[0].Detail != want {
		t.Errorf("detail %q, want %q", d[0].Detail, want)
	}
	if want := `There is no hint plugin "cmma"; available: balloon, pagemap.`; d[1].Detail != want {
		t.Errorf("detail %q, want %q", d[1].Detail, want)
	}
	var empty Job
	if d := empty.CheckPlugins(nil, nil); len(d) != 0 {
		t.Errorf("a job without plugin blocks: %v", d)
	}
}

// TestSameSocket: a destination whose control socket is the source's,
// written another way, is refused at destination.control.
func TestSameSocket(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		same     bool
	}{
		{"/run/ferry/vm.sock", "/run/ferry/vm.sock", true},
		{"/run/ferry/vm.sock", "/run/ferry/./vm.sock", true},
		{"/run/ferry/vm.sock", "/run//ferry/../ferry/vm.sock", true},
		{"vm.sock", "./vm.sock", true},
		{"/run/ferry/src.sock", "/run/ferry/dst.sock", false},
		{"/run/ferry/vm.sock", "run/ferry/vm.sock", false}, // relative: another file unless cwd is /
	} {
		src := fmt.Sprintf("source { control = %q }\ndestination { control = %q }\ntransport \"tcp\" {}\n", tc.src, tc.dst)
		_, diags := Parse("job.hcl", []byte(src))
		var got []string
		for _, d := range diags {
			got = append(got, d.Summary)
		}
		if same := slices.Contains(got, "Source and destination are the same VMM"); same != tc.same {
			t.Errorf("%q and %q: diagnostics %q; want same=%v", tc.src, tc.dst, got, tc.same)
			continue
		}
		if tc.same {
			if d := diags[0]; d.Subject == nil || d.Subject.Start.Line != 2 || d.Subject.Start.Column != 25 {
				t.Errorf("%q and %q: reported at %v, want destination.control (2:25)", tc.src, tc.dst, d.Subject)
			}
		}
	}
}
