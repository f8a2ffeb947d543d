package job

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ferryvm/ferry/framework/schema"
)

// Problems turns a plugin's own objections to its decoded block (a hint
// provider's or a transport's Validate: relations between attributes,
// enumerations, ranges; framework/hint.Validator,
// framework/transport.Validator) into diagnostics like every other job
// error: each at the attribute it names, or at the block's label when it
// names none, or one the block does not set (then its default is what the
// plugin refused).
func (p *Plugin) Problems(problems []schema.Problem) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, pr := range problems {
		d := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("The %s plugin %q refuses its block", p.Kind, p.Name),
			Detail:   pr.Message + ".",
			Subject:  p.LabelRange.Ptr(),
		}
		if pr.Attribute != "" {
			d.Summary = fmt.Sprintf("Invalid %s", pr.Attribute)
			if r, ok := p.attrRange(pr.Attribute); ok {
				d.Subject = r.Ptr()
			} else {
				d.Detail = fmt.Sprintf("%s (%s is not set here: its default was refused).", pr.Message, pr.Attribute)
			}
		}
		diags = append(diags, d)
	}
	sortDiags(diags)
	return diags
}

// attrRange is where the block sets attribute name (its value).
func (p *Plugin) attrRange(name string) (hcl.Range, bool) {
	if sb, ok := p.Body.(*hclsyntax.Body); ok {
		if a := sb.Attributes[name]; a != nil {
			return a.Expr.Range(), true
		}
	}
	return hcl.Range{}, false
}

// ValidationFailed is the diagnostic of a plugin that could not check
// its block (it crashed, or did not answer in time): the job is not run.
func (p *Plugin) ValidationFailed(err error) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Plugin could not check its configuration",
		Detail: fmt.Sprintf("migrate asked the %s plugin %q to check this block and got: %v. Check that it is a working Ferry %s plugin.",
			p.Kind, p.Name, err, p.Kind),
		Subject: p.LabelRange.Ptr(),
	}
}
