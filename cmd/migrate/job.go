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

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
)

// Plugin binaries are named <prefix><name> in the plugin directory.
const transportPrefix = "ferry-transport-"

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
	diags = append(diags, j.CheckPlugins(transports, nil)...)
	ps := pluginSet{dir: dir}
	if !diags.HasErrors() {
		ps.transport, _ = filepath.Abs(filepath.Join(dir, transportPrefix+j.Transport.Name))
		schema, err := transportSchema(ps.transport)
		if err != nil {
			fmt.Fprintf(stderr, "migrate: transport plugin %s: %v\n", ps.transport, err)
			return nil, ps, 1
		}
		diags = append(diags, j.Transport.Decode(schema)...)
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
