package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm"
)

// Plugin binaries are named <prefix><name> in the plugin directory.
const (
	transportPrefix = "ferry-transport-"
	hintPrefix      = "ferry-hint-"
)

// deadlineAttr is the attribute every hint block accepts; the engine, not
// the provider, enforces it.
var deadlineAttr = transport.Attribute{Name: "deadline", Type: transport.TypeDuration,
	Default: int64(300 * time.Millisecond), Doc: "how long the engine waits for the provider's hints in each pass"}

// loadJob reads and checks the job, prints every problem it finds, and
// returns the job with its plugins resolved, or nil and an exit status.
func loadJob(path, flagDir string, stderr io.Writer) (*job.Job, pluginSet, int) {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return nil, pluginSet{}, 2
	}
	sources := map[string][]byte{path: src}
	j, diags := job.Parse(path, src)
	if j == nil {
		job.FormatDiagnostics(stderr, sources, diags)
		return nil, pluginSet{}, 2
	}
	dir := resolvePluginDir(flagDir, j.PluginDir, path)
	transports := discover(dir, transportPrefix)
	diags = append(diags, j.CheckPlugins(transports, discover(dir, hintPrefix))...)
	ps := pluginSet{dir: dir}
	if !diags.HasErrors() {
		ps.transport, _ = filepath.Abs(filepath.Join(dir, transportPrefix+j.Transport.Name))
		schema, err := transportSchema(ps.transport)
		if err != nil {
			fmt.Fprintf(stderr, "migrate: transport plugin %s: %v\n", ps.transport, err)
			return nil, ps, 1
		}
		diags = append(diags, j.Transport.Decode(schema)...)
		for i := range j.Hints {
			h := &j.Hints[i]
			path, _ := filepath.Abs(filepath.Join(dir, hintPrefix+h.Name))
			schema, err := hintSchema(path)
			if err != nil {
				fmt.Fprintf(stderr, "migrate: hint plugin %s: %v\n", path, err)
				return nil, ps, 1
			}
			diags = append(diags, h.Decode(append(schema, deadlineAttr))...)
			ps.hints = append(ps.hints, path)
		}
	}
	if diags.HasErrors() {
		job.FormatDiagnostics(stderr, sources, diags)
		fmt.Fprintf(stderr, "migrate: %s has %d error(s); nothing was started\n", path, countErrors(diags))
		return nil, ps, 2
	}
	return j, ps, 0
}

func countErrors(d hcl.Diagnostics) int {
	n := 0
	for _, x := range d {
		if x.Severity == hcl.DiagError {
			n++
		}
	}
	return n
}

// discover lists plugin names (without prefix) found in dir.
func discover(dir, prefix string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), prefix); ok && !e.IsDir() && n != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// transportSchema starts the plugin just long enough to ask its schema.
func transportSchema(path string) (transport.Schema, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := transport.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	return tr.Schema(ctx)
}

// hintSchema starts a hint provider just long enough to ask its schema.
func hintSchema(path string) ([]transport.Attribute, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	s, err := p.Schema(ctx)
	return []transport.Attribute(s), err
}

// hintArgs turns the job's decoded hint blocks into the VMM's arguments.
func hintArgs(j *job.Job, p pluginSet) []vmm.HintArgs {
	var out []vmm.HintArgs
	for i, h := range j.Hints {
		cfg := map[string]any{}
		var deadline int64
		for k, v := range h.Config {
			if k == deadlineAttr.Name {
				deadline, _ = v.(int64)
				continue
			}
			cfg[k] = v
		}
		out = append(out, vmm.HintArgs{Name: h.Name, Plugin: p.hints[i], Config: cfg,
			DeadlineMS: time.Duration(deadline).Milliseconds()})
	}
	return out
}
