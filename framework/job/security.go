package job

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ferryvm/ferry/framework/schema"
)

// Security is the security block: how the two sides authenticate each
// other and whether pages travel encrypted. The zero value is not the
// default: Parse sets Encryption.
type Security struct {
	// Encryption off authenticates the peer in the TLS 1.3 handshake
	// only: the frames after it are neither encrypted nor
	// integrity-protected, so anyone on the path can read, change or
	// inject them. For trusted links (benchmarks, test proxies); migrate
	// warns (and each side's engine: transport.PlaintextRisk), and the
	// report says so.
	Encryption bool
	// Operator files, paths as written (relative ones are relative to the
	// job file). All empty: migrate mints fresh credentials for the job.
	// Otherwise the four certificate and key files are all given and
	// each side pins the other's certificate; CAFile, if given, is a
	// root both certificates must also chain to (migrate checks it).
	CAFile          string
	SourceCert      string
	SourceKey       string
	DestinationCert string
	DestinationKey  string

	Range hcl.Range // the block, for diagnostics about its files
}

// defaultSecurity is the security of a job without a security block.
func defaultSecurity() Security { return Security{Encryption: true} }

// Minted reports whether migrate mints credentials (no file is named).
func (s Security) Minted() bool {
	return s.CAFile == "" && s.SourceCert == "" && s.SourceKey == "" && s.DestinationCert == "" && s.DestinationKey == ""
}

var securitySchema = []schema.Attribute{
	{Name: "encryption", Type: schema.TypeBool, Default: true,
		Doc: "encrypt and integrity-protect the stream (TLS 1.3); false: only the handshake is authenticated, for trusted links"},
	{Name: "ca_file", Type: schema.TypeString, Doc: "PEM CA both named certificates must chain to (each side pins the other's certificate either way)"},
	{Name: "source_cert", Type: schema.TypeString, Doc: "PEM certificate chain of the source"},
	{Name: "source_key", Type: schema.TypeString, Doc: "PEM private key of the source"},
	{Name: "destination_cert", Type: schema.TypeString, Doc: "PEM certificate chain of the destination"},
	{Name: "destination_key", Type: schema.TypeString, Doc: "PEM private key of the destination"},
}

func (p *parser) security(b *hclsyntax.Block) {
	attrs, diags := attributes(b.Body, "security block", securitySchema)
	cfg, more := decodeAttrs(attrs, securitySchema, "security block", b.DefRange())
	p.diags = append(p.diags, append(diags, more...)...)
	s := &p.job.Security
	s.Range = b.DefRange()
	if v, ok := cfg["encryption"].(bool); ok {
		s.Encryption = v
	}
	for name, dst := range map[string]*string{"ca_file": &s.CAFile, "source_cert": &s.SourceCert,
		"source_key": &s.SourceKey, "destination_cert": &s.DestinationCert, "destination_key": &s.DestinationKey} {
		v, ok := cfg[name].(string)
		if !ok {
			continue
		}
		if strings.TrimSpace(v) == "" {
			p.errorf(attrs[name].Expr.Range(), "Empty "+name, "%s is empty: name a PEM file, or remove it.", name)
		}
		*dst = v
	}
	if !s.Minted() && (s.SourceCert == "" || s.SourceKey == "" || s.DestinationCert == "" || s.DestinationKey == "") {
		p.errorf(b.DefRange(), "Incomplete security files",
			"Operator certificates need all of source_cert, source_key, destination_cert and destination_key "+
				"(ca_file is optional); name none of them to let migrate mint fresh keys for this job.")
	}
}
