package job

import (
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// CheckPlugins reports every plugin block that names a plugin the caller
// did not find: transports and hints are the names of the transport and
// hint plugins available (those on the job's SearchPath, as FindPlugins
// lists them). A block whose name Parse already refused is not reported
// again.
func (j *Job) CheckPlugins(transports, hints []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	check := func(p *Plugin, known []string) {
		if p.Name == "" || slices.Contains(known, p.Name) {
			return
		}
		avail := "none were found: put the plugin binaries in plugin_dir"
		if len(known) > 0 {
			known = slices.Sorted(slices.Values(known))
			avail = "available: " + list(known)
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unknown " + p.Kind + " plugin",
			Detail:   fmt.Sprintf("There is no %s plugin %q; %s.%s", p.Kind, p.Name, avail, didYouMean(p.Name, known)),
			Subject:  p.LabelRange.Ptr(),
		})
	}
	check(&j.Transport, transports)
	for i := range j.Hints {
		check(&j.Hints[i], hints)
	}
	return diags
}
