package rdma

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/job"
)

// TestJobBlock: a job file's transport "rdma" block decodes against this
// transport's schema, and what it decodes to passes parseConfig; a typo
// is refused with a diagnostic.
func TestJobBlock(t *testing.T) {
	src := `
source { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "rdma" {
  provider        = "tcp"
  listen          = "10.0.0.2:7070"
  connect_timeout = "5s"
  cleartext_pages = true
}
`
	j, diags := job.Parse("rdma.hcl", []byte(src))
	if j != nil {
		diags = append(diags, j.Transport.Decode(configSchema)...)
	}
	if diags.HasErrors() {
		t.Fatalf("the rdma block does not decode: %v", diags)
	}
	cfg, err := parseConfig(j.Transport.Config)
	if err != nil {
		t.Fatalf("parseConfig(%v) = %v", j.Transport.Config, err)
	}
	if cfg.provider != "tcp" || cfg.listen != "10.0.0.2:7070" || cfg.connectTimeout.String() != "5s" || !cfg.cleartextPages {
		t.Errorf("decoded %+v", cfg)
	}
	bad := strings.Replace(src, "provider ", "providr ", 1)
	j, diags = job.Parse("rdma.hcl", []byte(bad))
	if j != nil {
		diags = append(diags, j.Transport.Decode(configSchema)...)
	}
	if !diags.HasErrors() {
		t.Fatal("a misspelt attribute was accepted")
	}
	t.Logf("misspelt: %v", diags)
}
