package engine

import (
	"context"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestReportEncryption: the report says how the session was protected,
// and never "tls1.3" for a transport that moved pages in the clear with
// the job's consent (transport.CleartextPages).
func TestReportEncryption(t *testing.T) {
	tr := &transport.Mock{OpenFunc: func(context.Context, transport.OpenRequest) error { return nil }}
	for _, c := range []struct {
		plaintext bool
		cfg       schema.Config
		want      string
	}{
		{false, schema.Config{"listen": "x"}, EncryptionTLS},
		{false, schema.Config{transport.CleartextPages: false}, EncryptionTLS},
		{false, schema.Config{transport.CleartextPages: true}, EncryptionControl},
		{true, schema.Config{transport.CleartextPages: true}, EncryptionOff},
		{true, nil, EncryptionOff},
	} {
		var rep Report
		req := transport.OpenRequest{Config: c.cfg, Credentials: transport.Credentials{Plaintext: c.plaintext}}
		if err := openTransport(context.Background(), tr, req, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Encryption != c.want {
			t.Errorf("plaintext %v, config %v: encryption %q; want %q", c.plaintext, c.cfg, rep.Encryption, c.want)
		}
	}
}
