package job

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// pluginPath decodes plugin_path: a list of directory names, none empty.
// A single string is refused with the list to write instead.
func (p *parser) pluginPath(a *hcl.Attribute) {
	v, diags := a.Expr.Value(nil)
	p.diags = append(p.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return
	}
	if v.Type() == cty.String {
		p.errorf(a.Expr.Range(), "Wrong type for plugin_path",
			"plugin_path is a list of directories, searched in order: write plugin_path = [%q].", v.AsString())
		return
	}
	lv, err := convert.Convert(v, cty.List(cty.String))
	if err != nil || !lv.IsWhollyKnown() {
		p.errorf(a.Expr.Range(), "Wrong type for plugin_path",
			"plugin_path must be a list of directories, like [\"/opt/ferry/plugins\"], not %s.", article(v.Type().FriendlyName()))
		return
	}
	var elems []hclsyntax.Expression
	if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		elems = t.Exprs
	}
	for i, e := range lv.AsValueSlice() {
		r := a.Expr.Range()
		if i < len(elems) {
			r = elems[i].Range()
		}
		if e.IsNull() || strings.TrimSpace(e.AsString()) == "" {
			p.errorf(r, "Empty plugin_path entry",
				"Entry %d of plugin_path is empty: give a directory that holds plugin binaries, or remove the entry.", i+1)
			continue
		}
		p.job.PluginPath = append(p.job.PluginPath, e.AsString())
		p.job.PluginPathRanges = append(p.job.PluginPathRanges, r)
	}
}

// SearchPath returns the directories to look for plugins in, in order:
// plugin_path's, then plugin_dir, or def when the job has no plugin_dir
// (migrate's default is plugins/ beside its binary). Relative
// directories are taken relative to the job file's directory; def is
// returned as given.
func (j *Job) SearchPath(def string) []string {
	rel := func(d string) string {
		if filepath.IsAbs(d) {
			return filepath.Clean(d)
		}
		return filepath.Join(filepath.Dir(j.File), d)
	}
	var dirs []string
	for _, d := range j.PluginPath {
		dirs = append(dirs, rel(d))
	}
	if j.PluginDir != "" {
		return append(dirs, rel(j.PluginDir))
	}
	return append(dirs, def)
}

// FindPlugins lists the plugin binaries named prefix+<name> in dirs and
// returns each name's path, from the first directory that holds it
// (like $PATH): a plugin in an earlier directory hides one of the same
// name in a later one. Directories that cannot be read and
// subdirectories are skipped.
func FindPlugins(dirs []string, prefix string) map[string]string {
	found := map[string]string{}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			n, ok := strings.CutPrefix(e.Name(), prefix)
			if !ok || n == "" || e.IsDir() {
				continue
			}
			if _, seen := found[n]; !seen {
				found[n] = filepath.Join(dir, e.Name())
			}
		}
	}
	return found
}
