package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// Plugin binaries are named <prefix><name> in the plugin directory.
const (
	transportPrefix = "ferry-transport-"
	hintPrefix      = "ferry-hint-"
)

// deadlineAttr is the attribute every hint block accepts; the engine, not
// the provider, enforces it.
var deadlineAttr = schema.Attribute{Name: "deadline", Type: schema.TypeDuration,
	Default: int64(300 * time.Millisecond), Doc: "how long the engine waits for the provider's hints in each pass"}

// loadJob reads and checks the job, prints every problem it finds, and
// returns the job with its plugins resolved, or nil and an exit status.
// Every check runs whatever the others found, so one run reports every
// mistake: each plugin block whose plugin exists is decoded against the
// schema that plugin reports, even when other blocks are wrong, and a
// plugin that cannot report its schema is one error at its block.
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
	transports, hints := discover(dir, transportPrefix), discover(dir, hintPrefix)
	diags = append(diags, j.CheckPlugins(transports, hints)...)
	diags = append(diags, sameSocketFile(j)...)
	ps := pluginSet{dir: dir}
	ps.transport, _ = filepath.Abs(filepath.Join(dir, transportPrefix+j.Transport.Name))
	for _, h := range j.Hints {
		p, _ := filepath.Abs(filepath.Join(dir, hintPrefix+h.Name))
		ps.hints = append(ps.hints, p)
	}
	diags = append(diags, decodeBlocks(j, dir, transports, hints)...)
	if diags.HasErrors() {
		job.FormatDiagnostics(stderr, sources, diags)
		fmt.Fprintf(stderr, "migrate: %s has %d error(s); nothing was started\n", path, countErrors(diags))
		return nil, ps, 2
	}
	return j, ps, 0
}

// schemaAnswer is one plugin binary's answer to "which arguments does
// your block take".
type schemaAnswer struct {
	schema []schema.Attribute
	err    error
}

// blockPlugin is the binary of block b in dir and how to ask it for its
// schema; ok is false if dir has no such plugin (CheckPlugins reported it).
func blockPlugin(b *job.Plugin, dir string, transports, hints []string) (path string, lookup func(string) ([]schema.Attribute, error), ok bool) {
	prefix, known, lookup := hintPrefix, hints, hintSchema
	if b.Kind == job.KindTransport {
		prefix, known, lookup = transportPrefix, transports, transportSchema
	}
	path, _ = filepath.Abs(filepath.Join(dir, prefix+b.Name))
	return path, lookup, slices.Contains(known, b.Name)
}

// askSchemas starts every plugin the blocks name, each binary once and
// all at the same time, and returns their answers by path.
func askSchemas(blocks []*job.Plugin, dir string, transports, hints []string) map[string]schemaAnswer {
	answers := map[string]schemaAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, b := range blocks {
		path, lookup, ok := blockPlugin(b, dir, transports, hints)
		if !ok || seen[path] {
			continue
		}
		seen[path] = true
		wg.Go(func() {
			var a schemaAnswer
			a.schema, a.err = lookup(path)
			mu.Lock()
			answers[path] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	return answers
}

// decodeBlocks decodes every plugin block (duplicates included) whose
// plugin is in dir, asking each plugin binary once for its schema, all
// of them at the same time.
func decodeBlocks(j *job.Job, dir string, transports, hints []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	answers := askSchemas(j.Blocks(), dir, transports, hints)
	reported := map[string]bool{}
	for _, b := range j.Blocks() {
		path, _, ok := blockPlugin(b, dir, transports, hints)
		if !ok { // CheckPlugins reported it
			continue
		}
		a := answers[path]
		if !reported[path] {
			reported[path] = true
			if a.err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Plugin did not describe its configuration",
					Detail: fmt.Sprintf("migrate started the %s plugin %s to ask which arguments its block takes, and got: %v. Check that it is a Ferry %s plugin built for this machine.",
						b.Kind, path, strings.Join(strings.Fields(a.err.Error()), " "), b.Kind),
					Subject: b.LabelRange.Ptr(),
				})
			}
		}
		if a.err != nil {
			continue
		}
		diags = append(diags, b.Decode(a.schema)...)
	}
	return diags
}

// sameSocketFile reports a destination control socket that is the
// source's by another name (a symbolic or hard link): Parse compares the
// paths only. Paths that do not exist yet are not compared.
func sameSocketFile(j *job.Job) hcl.Diagnostics {
	src, dst := j.Source.Control, j.Destination.Control
	if src == "" || dst == "" || filepath.Clean(src) == filepath.Clean(dst) {
		return nil // missing, or Parse reported it
	}
	a, errA := os.Stat(src)
	b, errB := os.Stat(dst)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		return nil
	}
	return hcl.Diagnostics{job.SameSocket(j.Destination, src)}
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
func transportSchema(path string) ([]schema.Attribute, error) {
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
func hintSchema(path string) ([]schema.Attribute, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	s, err := p.Schema(ctx)
	return append([]schema.Attribute(s), deadlineAttr), err
}

// hintArgs turns the job's decoded hint blocks into the VMM's arguments.
func hintArgs(j *job.Job, p pluginSet) []api.HintArgs {
	var out []api.HintArgs
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
		out = append(out, api.HintArgs{Name: h.Name, Plugin: p.hints[i], Config: cfg,
			DeadlineMS: time.Duration(deadline).Milliseconds()})
	}
	return out
}
