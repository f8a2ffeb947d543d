package job

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
)

// The fixed parts of a job file, described like a plugin's schema so
// that they decode the same way.
var (
	topSchema = []schema.Attribute{
		{Name: "plugin_dir", Type: schema.TypeString, Doc: "directory holding the plugin binaries"},
		// plugin_path is a list, which no attribute type is: top decodes
		// it itself (pluginPath); it is here to be named as allowed.
		{Name: "plugin_path", Type: schema.TypeString, Doc: "directories searched for plugins, in order, before plugin_dir"},
	}
	endpointSchema = []schema.Attribute{
		{Name: "control", Type: schema.TypeString, Required: true, Doc: "path of the VMM's control socket"},
	}
	limitsSchema = []schema.Attribute{
		{Name: "max_downtime", Type: schema.TypeDuration, Default: DefaultMaxDowntime},
		{Name: "bandwidth", Type: schema.TypeString, Default: "0"},
		{Name: "max_passes", Type: schema.TypeNumber, Default: int64(DefaultMaxPasses)},
		{Name: "switchover_timeout", Type: schema.TypeDuration, Default: int64(DefaultSwitchoverTimeout),
			Doc: "longest switch-over (pause, final pass, state, LOADED) before the source aborts and runs again"},
		{Name: "incoming_timeout", Type: schema.TypeDuration, Default: int64(DefaultIncomingTimeout),
			Doc: "how long the destination waits for its source to connect"},
		{Name: "postcopy", Type: schema.TypeString, Default: string(engine.PostcopyOff),
			Doc: `when the source switches to post-copy: "off", "auto" or "always"`},
		{Name: "reconnect_timeout", Type: schema.TypeDuration, Default: int64(DefaultReconnectTimeout),
			Doc: "how long a post-copy whose connection broke tries to reconnect"},
		{Name: "stall_timeout", Type: schema.TypeDuration, Default: int64(DefaultStallTimeout),
			Doc: "how long a session may move nothing: before COMMIT the migration then fails (the guest runs on at the source), in post-copy the session is reconnected"},
	}
	blockTypes    = []string{"source", "destination", "transport", "limits", "hint", "security"}
	exampleSocket = map[string]string{"source": "/run/ferry/src.sock", "destination": "/run/ferry/dst.sock"}
)

// Parse reads a job file: its structure, the source, destination and
// limits blocks, and the transport and hint blocks' names, whose bodies
// are kept for Plugin.Decode. filename is only used in diagnostics.
//
// The Job is nil only if src is not valid HCL. Otherwise it is returned
// even when diags has errors, filled as far as the file allowed, so the
// caller can go on to CheckPlugins and Decode and report every mistake at
// once; it must not run a job that came with errors.
func Parse(filename string, src []byte) (*Job, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unreadable job file", Detail: "The HCL parser returned no native-syntax body."})
	}
	p := &parser{
		job:   &Job{File: filename, Limits: defaultLimits(), Security: defaultSecurity()},
		diags: diags,
		first: map[string]hcl.Range{},
		typos: map[string]bool{},
	}
	p.top(body)
	for _, b := range body.Blocks {
		p.block(b)
	}
	p.require(body)
	p.distinctEndpoints()
	sortDiags(p.diags)
	return p.job, p.diags
}

type parser struct {
	job   *Job
	diags hcl.Diagnostics
	first map[string]hcl.Range // block type, or hint name, → where it was first given
	typos map[string]bool      // block types suggested for a misspelt block
}

func (p *parser) errorf(subject hcl.Range, summary, format string, args ...any) {
	p.diags = append(p.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// top decodes the top-level attributes.
func (p *parser) top(body *hclsyntax.Body) {
	attrs := hcl.Attributes{}
	for name, a := range body.Attributes {
		if slices.Contains(blockTypes, name) {
			p.errorf(a.NameRange, "Unsupported argument", "%s is a block, not an argument: write %s { ... } without \"=\".", name, name)
			continue
		}
		attrs[name] = a.AsHCLAttribute()
	}
	if a := attrs["plugin_path"]; a != nil {
		delete(attrs, "plugin_path")
		p.pluginPath(a)
	}
	cfg, diags := decodeAttrs(attrs, topSchema, "job file", body.MissingItemRange())
	p.diags = append(p.diags, diags...)
	if dir, ok := cfg["plugin_dir"].(string); ok {
		if strings.TrimSpace(dir) == "" {
			p.errorf(attrs["plugin_dir"].Expr.Range(), "Empty plugin_dir",
				"plugin_dir is empty: remove it to use the default, plugins/ beside the migrate binary.")
		}
		p.job.PluginDir = dir
	}
}

// block decodes one top-level block. A block that is a duplicate is
// still decoded, into nothing, so that its own mistakes are reported in
// the same run.
func (p *parser) block(b *hclsyntax.Block) {
	switch b.Type {
	case "source", "destination", "limits":
		first := p.once(b)
		p.noLabels(b)
		var scratch Job
		j := p.job
		if !first {
			j = &scratch
		}
		switch {
		case b.Type == "source":
			j.Source = p.endpoint(b)
		case b.Type == "destination":
			j.Destination = p.endpoint(b)
		case first:
			p.limits(b)
		default: // checked, then forgotten
			kept := p.job.Limits
			p.limits(b)
			p.job.Limits = kept
		}
	case "security":
		first := p.once(b)
		p.noLabels(b)
		kept := p.job.Security
		if !first { // checked on its own (its files are not the first's), then forgotten
			p.job.Security = defaultSecurity()
		}
		p.security(b)
		if !first {
			p.job.Security = kept
		}
	case "transport":
		first := p.once(b)
		pl, ok := p.plugin(b, KindTransport)
		switch {
		case ok && first:
			p.job.Transport = pl
		case ok:
			p.job.duplicates = append(p.job.duplicates, pl)
		}
	case "hint":
		pl, ok := p.plugin(b, KindHint)
		if !ok {
			return
		}
		if r, dup := p.first["hint "+pl.Name]; dup {
			p.errorf(pl.LabelRange, "Duplicate hint block",
				"The hint provider %q is already configured on %s; give each provider one block.", pl.Name, line(r))
			p.job.duplicates = append(p.job.duplicates, pl)
			return
		}
		p.first["hint "+pl.Name] = pl.Range
		p.job.Hints = append(p.job.Hints, pl)
	default:
		hint := didYouMean(b.Type, blockTypes)
		if slices.Contains(names(topSchema), b.Type) {
			hint = fmt.Sprintf(" %s is an argument: write %s = \"...\".", b.Type, b.Type)
		}
		if t := closest(b.Type, blockTypes); t != "" {
			p.typos[t] = true
		}
		p.errorf(b.DefRange(), "Unsupported block type", "Blocks of type %q are not expected in a job file.%s Allowed: %s.",
			b.Type, hint, list(blockTypes))
	}
}

// once reports a second block of b's type and returns false for it.
func (p *parser) once(b *hclsyntax.Block) bool {
	if r, dup := p.first[b.Type]; dup {
		what := map[string]string{"transport": "a job uses one transport"}[b.Type]
		if what == "" {
			what = "a job has one " + b.Type + " block"
		}
		p.errorf(b.DefRange(), "Duplicate "+b.Type+" block", "A %s block is already given on %s; %s.", b.Type, line(r), what)
		return false
	}
	p.first[b.Type] = b.DefRange()
	return true
}

func (p *parser) noLabels(b *hclsyntax.Block) {
	if len(b.Labels) > 0 {
		p.errorf(hcl.RangeBetween(b.LabelRanges[0], b.LabelRanges[len(b.LabelRanges)-1]),
			"Extraneous label for "+b.Type, "A %s block takes no label: write %s { ... }.", b.Type, b.Type)
	}
}

// plugin reads the header of a transport or hint block.
func (p *parser) plugin(b *hclsyntax.Block, kind string) (Plugin, bool) {
	example := map[string]string{KindTransport: "tcp", KindHint: "balloon"}[kind]
	switch {
	case len(b.Labels) == 0:
		p.errorf(b.DefRange(), "Missing name for "+kind, "Name the %s plugin: write %s %q { ... }.", kind, kind, example)
		return Plugin{}, false
	case !validName(b.Labels[0]):
		p.errorf(b.LabelRanges[0], "Invalid "+kind+" name",
			"%q is not a plugin name: names are up to 64 letters, digits, \"_\" and \"-\", starting with a letter, like %q.", b.Labels[0], example)
		return Plugin{}, false
	}
	if len(b.Labels) > 1 { // reported, and the block is still decoded for the plugin it names
		p.errorf(hcl.RangeBetween(b.LabelRanges[1], b.LabelRanges[len(b.LabelRanges)-1]),
			"Extraneous label for "+kind, "A %s block takes one label, the plugin's name: write %s %q { ... }.", kind, kind, example)
	}
	return Plugin{Kind: kind, Name: b.Labels[0], Body: b.Body, Range: b.DefRange(), LabelRange: b.LabelRanges[0]}, true
}

func (p *parser) endpoint(b *hclsyntax.Block) Endpoint {
	attrs, diags := attributes(b.Body, b.Type+" block", endpointSchema)
	cfg, more := decodeAttrs(attrs, endpointSchema, b.Type+" block", b.DefRange())
	p.diags = append(p.diags, append(diags, more...)...)
	control, ok := cfg["control"].(string)
	if ok && strings.TrimSpace(control) == "" {
		p.errorf(attrs["control"].Expr.Range(), "Empty control socket path",
			"%s.control is empty: give the path of the %s VMM's control socket, like %q.", b.Type, b.Type, exampleSocket[b.Type])
	}
	e := Endpoint{Control: control}
	if a := attrs["control"]; a != nil {
		e.ControlRange = a.Expr.Range()
	}
	return e
}

// distinctEndpoints reports a destination whose control socket is the
// source's: the same path once cleaned (a/./b, a//b and a/b are one).
// It cannot see links: the caller, which can look at the files, checks
// that too.
func (p *parser) distinctEndpoints() {
	src, dst := p.job.Source, p.job.Destination
	if src.Control == "" || dst.Control == "" || filepath.Clean(src.Control) != filepath.Clean(dst.Control) {
		return
	}
	p.diags = append(p.diags, SameSocket(dst, src.Control))
}

// SameSocket is the diagnostic for a destination whose control socket is
// the source's (srcPath, as the source block gives it), at the
// destination's control attribute.
func SameSocket(dst Endpoint, srcPath string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Source and destination are the same VMM",
		Detail: fmt.Sprintf("destination.control %q is the source's control socket %q: a migration needs two VMMs. Give the control socket of the VMM the guest moves to.",
			dst.Control, srcPath),
		Subject: dst.ControlRange.Ptr(),
	}
}

func (p *parser) limits(b *hclsyntax.Block) {
	attrs, diags := attributes(b.Body, "limits block", limitsSchema)
	cfg, more := decodeAttrs(attrs, limitsSchema, "limits block", b.DefRange())
	p.diags = append(p.diags, append(diags, more...)...)
	l := &p.job.Limits
	if v, ok := cfg["max_downtime"].(int64); ok {
		if d := time.Duration(v); d >= time.Millisecond && d < MaxMaxDowntime {
			l.MaxDowntime = d
		} else {
			p.errorf(attrs["max_downtime"].Expr.Range(), "Invalid max_downtime",
				"max_downtime is %v; it must be at least 1ms and less than 1h (QEMU's default is 300ms).", d)
		}
	}
	if v, ok := cfg["bandwidth"].(string); ok {
		if n, err := ParseBandwidth(v); err == nil {
			l.Bandwidth = n
		} else {
			p.errorf(attrs["bandwidth"].Expr.Range(), "Invalid bandwidth", "%v", err)
		}
	}
	if v, ok := cfg["max_passes"].(int64); ok {
		if v >= 1 && v <= MaxMaxPasses {
			l.MaxPasses = int(v)
		} else {
			p.errorf(attrs["max_passes"].Expr.Range(), "Invalid max_passes",
				"max_passes is %d; it must be between 1 and %d.", v, MaxMaxPasses)
		}
	}
	p.timeout(cfg, attrs, "switchover_timeout", time.Millisecond, MaxSwitchoverTimeout, &l.SwitchoverTimeout,
		"the source aborts and runs again when the switch-over takes longer")
	p.timeout(cfg, attrs, "incoming_timeout", time.Millisecond, MaxIncomingTimeout, &l.IncomingTimeout,
		"the destination stops listening when no source connected by then")
	p.postcopy(cfg, attrs, l)
	p.timeout(cfg, attrs, "reconnect_timeout", time.Millisecond, MaxReconnectTimeout, &l.ReconnectTimeout,
		"after that a post-copy whose connection broke stops for good")
	p.timeout(cfg, attrs, "stall_timeout", MinStallTimeout, MaxStallTimeout, &l.StallTimeout,
		"a session in which nothing moved that long fails before COMMIT, and is reconnected in post-copy")
}

// postcopy checks the post-copy mode: one of engine's modes.
func (p *parser) postcopy(cfg map[string]any, attrs hcl.Attributes, l *Limits) {
	v, ok := cfg["postcopy"].(string)
	if !ok {
		return
	}
	var m engine.PostcopyMode
	if err := m.UnmarshalText([]byte(v)); err != nil || m == "" {
		p.errorf(attrs["postcopy"].Expr.Range(), "Invalid postcopy",
			"postcopy is %q; it must be \"off\" (pre-copy only, the default), \"auto\" (switch to post-copy when pre-copy will not converge) or \"always\" (switch after the first pass).", v)
		return
	}
	l.Postcopy = m
}

// timeout checks a duration that must be at least min and less than
// max. Durations reach the VMMs in whole milliseconds (vmm/api), so no
// min is under a millisecond: a shorter one would arrive as 0, which
// the engine takes for its default.
func (p *parser) timeout(cfg map[string]any, attrs hcl.Attributes, name string, min, max time.Duration, dst *time.Duration, what string) {
	v, ok := cfg[name].(int64)
	if !ok {
		return
	}
	if d := time.Duration(v); d >= min && d < max {
		*dst = d
		return
	}
	p.errorf(attrs[name].Expr.Range(), "Invalid "+name,
		"%s is %v; it must be at least %v and less than %v (%s).", name, time.Duration(v), min, max, what)
}

// require reports the blocks every job needs and this one lacks, unless
// a misspelt block already drew a "did you mean" for it.
func (p *parser) require(body *hclsyntax.Body) {
	for _, need := range []struct{ typ, example string }{
		{"source", `source { control = "/run/ferry/src.sock" }, the control socket of the VMM the guest leaves`},
		{"destination", `destination { control = "/run/ferry/dst.sock" }, the control socket of the VMM the guest moves to`},
		{"transport", `a transport block naming the plugin that moves the pages, like transport "tcp" { listen = "127.0.0.1:7070" }`},
	} {
		if _, ok := p.first[need.typ]; !ok && !p.typos[need.typ] {
			p.errorf(body.MissingItemRange(), "Missing "+need.typ+" block", "A job needs %s.", need.example)
		}
	}
}

func validName(s string) bool {
	if s == "" || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// line names where r starts, for a diagnostic about the same file.
func line(r hcl.Range) string {
	return fmt.Sprintf("line %d", r.Start.Line)
}
