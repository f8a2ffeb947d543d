package job

import "testing"

func TestSecurity(t *testing.T) {
	const ends = `
source      { control = "/s.sock" }
destination { control = "/d.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
`
	for _, c := range []struct {
		name, src string
		want      Security
		errors    int
	}{
		{"default: minted, encrypted", ends, Security{Encryption: true}, 0},
		{"encryption off", ends + `security { encryption = false }`, Security{}, 0},
		{"operator files", ends + `security {
  ca_file = "ca.pem"
  source_cert = "s.pem"
  source_key = "s.key"
  destination_cert = "d.pem"
  destination_key = "d.key"
}`, Security{Encryption: true, CAFile: "ca.pem", SourceCert: "s.pem", SourceKey: "s.key", DestinationCert: "d.pem", DestinationKey: "d.key"}, 0},
		{"a key missing", ends + `security {
  source_cert = "s.pem"
  source_key = "s.key"
  destination_cert = "d.pem"
}`, Security{}, 1},
		{"only a CA", ends + `security { ca_file = "ca.pem" }`, Security{}, 1},
		// A second block is checked on its own, not on top of the first:
		// its missing files are reported with the duplicate.
		{"a second block, incomplete", ends + `security {
  source_cert = "s.pem"
  source_key = "s.key"
  destination_cert = "d.pem"
  destination_key = "d.key"
}
security { source_cert = "other.pem" }`, Security{}, 2},
		{"empty path and unknown argument", ends + `security {
  ca_file = ""
  encrypt = true
}`, Security{}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, diags := Parse("job.hcl", []byte(c.src))
			if len(diags) != c.errors {
				t.Fatalf("%d diagnostics, want %d: %v", len(diags), c.errors, diags)
			}
			if c.errors > 0 {
				return
			}
			got := j.Security
			got.Range = c.want.Range
			if got != c.want {
				t.Errorf("security %+v, want %+v", got, c.want)
			}
			if got.Minted() != (got.SourceCert == "") {
				t.Errorf("Minted() = %v for %+v", got.Minted(), got)
			}
		})
	}
}
