package job

import (
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/ferryvm/ferry/framework/schema"
)

// Decode checks the plugin's block against sch, the configuration
// block its plugin reports, and on success sets p.Config: attributes the
// schema does not name, required attributes that are missing, values of
// the wrong type and bad durations or sizes each give a diagnostic at the
// attribute; absent attributes with a default get it. A schema the
// plugin got wrong (bad names, duplicate names, defaults of the wrong
// type) is one diagnostic on the block's label.
//
// sch is []schema.Attribute, so a schema.Schema (which both plugin
// kinds report) goes as it is, and so does any other type defined as a
// slice of schema.Attribute. A Plugin without a Body (Parse found no such
// block) decodes to nothing.
func (p *Plugin) Decode(sch []schema.Attribute) hcl.Diagnostics {
	if p.Body == nil {
		return nil
	}
	where := fmt.Sprintf("%s %q block", p.Kind, p.Name)
	if err := checkSchema(sch); err != nil {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Plugin reports a bad schema",
			Detail: fmt.Sprintf("The %s plugin %q describes its configuration wrongly: %v. This is a bug in the plugin: report it to its authors.",
				p.Kind, p.Name, err),
			Subject: p.LabelRange.Ptr(),
		}}
	}
	attrs, diags := attributes(p.Body, where, sch)
	cfg, more := decodeAttrs(attrs, sch, where, p.Range)
	diags = append(diags, more...)
	sortDiags(diags)
	if !diags.HasErrors() {
		p.Config = cfg
	}
	return diags
}

// attributes returns the attributes of body and a diagnostic for each
// nested block, which no attribute schema allows.
func attributes(body hcl.Body, where string, sch []schema.Attribute) (hcl.Attributes, hcl.Diagnostics) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return body.JustAttributes()
	}
	var diags hcl.Diagnostics
	for _, b := range sb.Blocks {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unsupported block type",
			Detail: fmt.Sprintf("Blocks of type %q are not expected in the %s, which takes only arguments (name = value): %s.",
				b.Type, where, list(names(sch))),
			Subject: b.DefRange().Ptr(),
		})
	}
	attrs := make(hcl.Attributes, len(sb.Attributes))
	for name, a := range sb.Attributes {
		attrs[name] = a.AsHCLAttribute()
	}
	return attrs, diags
}

// decodeAttrs decodes attrs against schema into a Config. missing is
// where a missing required attribute is reported (the block header).
func decodeAttrs(attrs hcl.Attributes, sch []schema.Attribute, where string, missing hcl.Range) (schema.Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	cfg := schema.Config{}
	known := make(map[string]schema.Attribute, len(sch))
	for _, at := range sch {
		known[at.Name] = at
	}
	failed := map[string]bool{} // attributes given but wrong
	typos := map[string]bool{}  // attributes suggested for a misspelt one
	for _, a := range sorted(attrs) {
		at, ok := known[a.Name]
		if !ok {
			if t := closest(a.Name, names(sch)); t != "" {
				typos[t] = true
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported argument",
				Detail: fmt.Sprintf("An argument named %q is not expected in the %s.%s Allowed: %s.",
					a.Name, where, didYouMean(a.Name, names(sch)), list(names(sch))),
				Subject: a.NameRange.Ptr(),
			})
			continue
		}
		v, d := decodeValue(a, at.Type)
		diags = append(diags, d...)
		failed[a.Name] = d.HasErrors()
		if v != nil {
			cfg[a.Name] = v
		}
	}
	for _, at := range sch {
		if _, set := cfg[at.Name]; set || failed[at.Name] {
			continue
		}
		if at.Default != nil {
			cfg[at.Name], _ = normalizeDefault(at) // checkSchema vetted it
			continue
		}
		if at.Required && !typos[at.Name] {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Missing required argument",
				Detail:   fmt.Sprintf("The %s needs %s, %s%s.", where, at.Name, typeName(at.Type), docSuffix(at.Doc)),
				Subject:  missing.Ptr(),
			})
		}
	}
	return cfg, diags
}

// decodeValue evaluates a (constants only: no variables, no functions)
// and converts it to t's Config type. Null is "not set": nil, no error.
func decodeValue(a *hcl.Attribute, t schema.AttrType) (any, hcl.Diagnostics) {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.IsNull() {
		return nil, diags
	}
	bad := func(summary, detail string) (any, hcl.Diagnostics) {
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   detail,
			Subject:  a.Expr.Range().Ptr(),
			Context:  a.Range.Ptr(),
		})
	}
	want := map[schema.AttrType]cty.Type{
		schema.TypeString: cty.String, schema.TypeDuration: cty.String, schema.TypeSize: cty.String, schema.TypeAddress: cty.String,
		schema.TypeNumber: cty.Number, schema.TypeBool: cty.Bool,
	}[t]
	cv, err := convert.Convert(v, want)
	if err != nil || !cv.IsWhollyKnown() || cv.IsNull() {
		return bad("Wrong type for "+a.Name, fmt.Sprintf("%s must be %s, not %s.", a.Name, typeName(t), article(v.Type().FriendlyName())))
	}
	switch t {
	case schema.TypeNumber:
		f := cv.AsBigFloat()
		if !f.IsInt() {
			return bad("Wrong type for "+a.Name, fmt.Sprintf("%s must be a whole number, not %s.", a.Name, f.Text('g', 10)))
		}
		n, acc := f.Int64()
		if acc != big.Exact {
			return bad("Invalid "+a.Name, fmt.Sprintf("%s = %s is out of range.", a.Name, f.Text('g', 10)))
		}
		return n, diags
	case schema.TypeBool:
		return cv.True(), diags
	case schema.TypeDuration:
		d, err := ParseDuration(cv.AsString())
		if err != nil {
			return bad("Invalid "+a.Name, err.Error())
		}
		return int64(d), diags
	case schema.TypeSize:
		n, err := ParseSize(cv.AsString())
		if err != nil {
			return bad("Invalid "+a.Name, err.Error())
		}
		return int64(n), diags
	case schema.TypeAddress:
		n, err := ParseAddress(cv.AsString())
		if err != nil {
			return bad("Invalid "+a.Name, err.Error())
		}
		return int64(n), diags
	}
	return cv.AsString(), diags
}

func article(noun string) string {
	if noun != "" && strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}

func docSuffix(doc string) string {
	doc = strings.TrimRight(strings.TrimSpace(doc), ".")
	if doc == "" {
		return ""
	}
	return ": " + doc
}

func names(sch []schema.Attribute) []string {
	n := make([]string, len(sch))
	for i, at := range sch {
		n[i] = at.Name
	}
	return n
}

// sorted returns attrs in source order.
func sorted(attrs hcl.Attributes) []*hcl.Attribute {
	s := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		s = append(s, a)
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].Range.Start.Byte != s[j].Range.Start.Byte {
			return s[i].Range.Start.Byte < s[j].Range.Start.Byte
		}
		return s[i].Name < s[j].Name
	})
	return s
}
