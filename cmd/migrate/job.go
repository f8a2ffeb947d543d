package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// exitInterrupted is loadJob's status for checks that ctx (a signal)
// cut; 2 is a job refused or unreadable, 0 one that passed.
const exitInterrupted = 1

// loadJob reads and checks the job, prints every problem it finds, and
// returns the job with its plugins resolved, or nil and an exit status.
// Every check runs whatever the others found, so one run reports every
// mistake: each plugin block whose plugin exists is decoded against the
// schema that plugin reports, even when other blocks are wrong, and a
// plugin that cannot report its schema is one error at its block.
//
// The plugins it starts to ask are stopped when ctx ends (an operator's
// Ctrl-C): it then prints nothing and returns nil and exitInterrupted,
// and the caller says it was interrupted. Its status is the answer: a
// ctx that ends after it returned (a signal just after the checks) does
// not make a refused job, or one that passed, an interrupted one; what
// the caller then does is its own (a run starts nothing, -check says
// what it found: checkJob).
func loadJob(ctx context.Context, path, flagDir string, stderr io.Writer) (*job.Job, pluginSet, int) {
	j, sources, diags := readJob(path, stderr)
	if j == nil {
		return nil, pluginSet{}, 2
	}
	dirs := searchPath(j, flagDir)
	diags = append(diags, missingDirs(j, dirs)...)
	ps := pluginSet{dirs: dirs,
		transports: job.FindPlugins(dirs, transportPrefix), hintPaths: job.FindPlugins(dirs, hintPrefix)}
	transports, hints := names(ps.transports), names(ps.hintPaths)
	diags = append(diags, j.CheckPlugins(transports, hints)...)
	diags = append(diags, sameSocketFile(j)...)
	diags = append(diags, unsafePlugins(j, &ps)...)
	ps.transport = ps.transports[j.Transport.Name]
	for _, h := range j.Hints {
		ps.hints = append(ps.hints, ps.hintPaths[h.Name])
	}
	diags = append(diags, decodeBlocks(ctx, j, ps)...)
	if ctx.Err() != nil {
		return nil, ps, exitInterrupted // its answers are the interruption's, not the job's
	}
	if diags.HasErrors() {
		refuseJob(stderr, path, sources, diags)
		return nil, ps, 2
	}
	return j, ps, 0
}

// readJob reads and parses the job at path: the job, its source text
// (for refuseJob) and what the parse found. It returns a nil job, having
// said why on stderr, when the file cannot be read or its HCL syntax is
// wrong (nothing further can be read); the caller exits 2. A job whose
// content is wrong comes back with its errors in diags, for the caller
// to add its own checks to before it refuses the job (refuseJob). Every
// mode that reads a job starts here: a run and -check (loadJob),
// -resolve and -start-postcopy (parseJobFile), so their refusals cannot
// drift apart (until TestLoadJobSyntaxError's -resolve and
// -start-postcopy cases, those two printed a syntax error's diagnostics
// without refuseJob's last line).
func readJob(path string, stderr io.Writer) (*job.Job, map[string][]byte, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return nil, nil, nil
	}
	sources := map[string][]byte{path: src}
	j, diags := job.Parse(path, src)
	if j == nil { // HCL syntax: nothing further can be read
		refuseJob(stderr, path, sources, diags)
		return nil, nil, nil
	}
	return j, sources, diags
}

// refuseJob prints the diagnostics of a job migrate refuses and the one
// line that ends every refusal, whether the file's HCL syntax or its
// content was wrong (until TestLoadJobSyntaxError, a syntax error had
// only HCL's diagnostics, without that line).
func refuseJob(stderr io.Writer, path string, sources map[string][]byte, diags hcl.Diagnostics) {
	job.FormatDiagnostics(stderr, sources, diags)
	fmt.Fprintf(stderr, "migrate: %s has %d error(s); nothing was started\n", path, countErrors(diags))
}

// unsafePlugins reports, at each block's label, a plugin binary that
// someone else could replace (job.CheckPluginFile), and drops it from ps
// so that it is never started, not even to ask for its schema.
func unsafePlugins(j *job.Job, ps *pluginSet) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range j.Blocks() {
		path, _, ok := blockPlugin(b, *ps)
		if !ok {
			continue
		}
		err := job.CheckPluginFile(path)
		if err == nil {
			continue
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin binary not safe to run",
			Detail: fmt.Sprintf("migrate will not start the %s plugin %s: %v. A plugin runs as the VMM's user with the guest's RAM "+
				"and the session's keys: plugin binaries and the directories above them must belong to you or root and be "+
				"writable by nobody else (docs/JOBS.md, \"Where plugins are found\").", b.Kind, path, err),
			Subject: b.LabelRange.Ptr(),
		})
		if b.Kind == job.KindTransport {
			delete(ps.transports, b.Name)
		} else {
			delete(ps.hintPaths, b.Name)
		}
	}
	return diags
}

// schemaAnswer is one plugin binary's answer to "which arguments does
// your block take".
type schemaAnswer struct {
	schema []schema.Attribute
	err    error
	// tr is the transport plugin that answered, left running to check
	// the blocks decoded against its schema (validateTransport);
	// decodeBlocks closes it. nil for a hint provider (validateHint
	// starts its own) and when err is set.
	tr transport.Transport
}

// blockPlugin is the binary of block b and how to ask it for its schema;
// ok is false if no such plugin was found (CheckPlugins reported it).
func blockPlugin(b *job.Plugin, ps pluginSet) (path string, lookup func(context.Context, string) schemaAnswer, ok bool) {
	found, lookup := ps.hintPaths, hintAnswer
	if b.Kind == job.KindTransport {
		found, lookup = ps.transports, transportSchema
	}
	path, ok = found[b.Name]
	return path, lookup, ok
}

// askSchemas starts every plugin the blocks name, each binary once and
// all at the same time, and returns their answers by path.
func askSchemas(ctx context.Context, blocks []*job.Plugin, ps pluginSet) map[string]schemaAnswer {
	answers := map[string]schemaAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, b := range blocks {
		path, lookup, ok := blockPlugin(b, ps)
		if !ok || seen[path] {
			continue
		}
		seen[path] = true
		wg.Go(func() {
			a := lookup(ctx, path)
			mu.Lock()
			answers[path] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	return answers
}

// decodeBlocks decodes every plugin block (duplicates included) whose
// plugin was found, asking each plugin binary once for its schema, all
// of them at the same time, and has each plugin check each of its blocks
// that decoded: a transport the plugin that answered (validateTransport),
// a hint provider one started anew (validateHint).
func decodeBlocks(ctx context.Context, j *job.Job, ps pluginSet) hcl.Diagnostics {
	var diags hcl.Diagnostics
	answers := askSchemas(ctx, j.Blocks(), ps)
	defer func() {
		for _, a := range answers {
			if a.tr != nil {
				a.tr.Close()
			}
		}
	}()
	reported := map[string]bool{}
	for _, b := range j.Blocks() {
		path, _, ok := blockPlugin(b, ps)
		if !ok { // CheckPlugins reported it
			continue
		}
		a := answers[path]
		if !reported[path] {
			reported[path] = true
			if a.err != nil {
				diags = append(diags, schemaProblem(b, path, a.err))
			}
		}
		if a.err != nil {
			continue
		}
		more := b.Decode(a.schema)
		diags = append(diags, more...)
		switch {
		case more.HasErrors():
		case b.Kind == job.KindHint:
			diags = append(diags, validateHint(ctx, b, path)...) // the provider's own checks (hint.Validator)
		case a.tr != nil:
			diags = append(diags, validateTransport(ctx, b, a.tr)...) // the transport's own checks (transport.Validator)
		}
	}
	return diags
}

// schemaProblem reports, at block b's label, why the plugin at path
// gave no schema for it.
func schemaProblem(b *job.Plugin, path string, err error) *hcl.Diagnostic {
	var ne *nameError
	if errors.As(err, &ne) {
		return ne.diagnostic(b)
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Plugin did not describe its configuration",
		Detail: fmt.Sprintf("migrate started the %s plugin %s to ask which arguments its block takes, and got: %v. Check that it is a Ferry %s plugin built for this machine.",
			b.Kind, path, strings.Join(strings.Fields(err.Error()), " "), b.Kind),
		Subject: b.LabelRange.Ptr(),
	}
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

// searchPath is where migrate looks for plugins: the job's plugin_path,
// then -plugin-dir if given, else the job's plugin_dir, else plugins/
// beside the migrate binary. Every directory is absolute.
func searchPath(j *job.Job, flagDir string) []string {
	var dirs []string
	if flagDir != "" {
		jj := *j
		jj.PluginDir = ""
		dirs = jj.SearchPath(flagDir)
	} else {
		dirs = j.SearchPath(defaultPluginDir())
	}
	for i, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			dirs[i] = abs
		}
	}
	return dirs
}

// defaultPluginDir is plugins/ beside the migrate binary.
func defaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "plugins"
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

// missingDirs reports each plugin_path entry that is not a directory, at
// the entry (dirs starts with plugin_path's, resolved).
func missingDirs(j *job.Job, dirs []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i, d := range j.PluginPath {
		st, err := os.Stat(dirs[i])
		if err == nil && st.IsDir() {
			continue
		}
		why := "it is not a directory"
		if err != nil {
			why = strings.TrimPrefix(err.Error(), "stat "+dirs[i]+": ")
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin directory not found",
			Detail: fmt.Sprintf("plugin_path names %q (%s): %s. Give a directory that holds plugin binaries (relative paths are the job file's), or remove the entry.",
				d, dirs[i], why),
			Subject: j.PluginPathRanges[i].Ptr(),
		})
	}
	return diags
}

// names returns the sorted keys of found.
func names(found map[string]string) []string {
	return slices.Sorted(maps.Keys(found))
}

// transportSchema starts the plugin and asks its schema. The plugin is
// left running in the answer, for its Validate, unless it failed; the
// caller closes it.
func transportSchema(ctx context.Context, path string) schemaAnswer {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tr, err := transport.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return schemaAnswer{err: err}
	}
	s, err := tr.Schema(ctx)
	if err != nil {
		tr.Close()
		return schemaAnswer{err: err}
	}
	return schemaAnswer{schema: s, tr: tr}
}

// hintAnswer is hintSchema's answer.
func hintAnswer(ctx context.Context, path string) schemaAnswer {
	s, err := hintSchema(ctx, path)
	return schemaAnswer{schema: s, err: err}
}

// hintSchema starts a hint provider just long enough to ask its name and
// its schema. A provider whose Info.Name is not its binary's suffix (the
// block's label) is a *nameError.
func hintSchema(ctx context.Context, path string) ([]schema.Attribute, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	info, err := p.Info(ctx)
	if err != nil {
		return nil, err
	}
	if err := info.CheckName(strings.TrimPrefix(filepath.Base(path), hintPrefix)); err != nil {
		return nil, &nameError{path: path, name: info.Name, err: err}
	}
	s, err := p.Schema(ctx)
	return append([]schema.Attribute(s), deadlineAttr), err
}

// nameError is a hint provider that calls itself other than its binary.
type nameError struct {
	path, name string // the binary, and what its Info.Name says
	err        error
}

func (e *nameError) Error() string { return e.path + ": " + e.err.Error() }

// diagnostic reports e at block b's label.
func (e *nameError) diagnostic(b *job.Plugin) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Hint provider's name is not its block's",
		Detail: fmt.Sprintf("migrate started %s for the block hint %q, and the provider calls itself %q (its Info.Name). A provider's name must be its block's label and its binary's suffix: rename the binary ferry-hint-%s and the block hint %q, or correct the provider's Info.",
			e.path, b.Name, e.name, e.name, e.name),
		Subject: b.LabelRange.Ptr(),
	}
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
