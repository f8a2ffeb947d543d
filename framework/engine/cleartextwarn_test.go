package engine

import (
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestCleartextPagesWarned: Send and Receive with encryption on and the
// transport's cleartext_pages set (transport.CleartextPages: rdma's
// writes) each log one Warn saying what the pages give up
// (transport.CleartextPagesRisk), as migrate warns of such a job
// (cmd/migrate cleartextPagesWarning, the same words), so an embedder or
// a VMM driven by hand is told too; with Credentials.Plaintext the
// plaintext warning alone (it implies the pages'), and without the
// setting none. The transport's Open fails, so each ends there: the
// warning comes before any session. Before, the engine warned of
// Plaintext only (TestPlaintextWarned): 'the cleartext pages warning
// came 0 times, want 1' for Send and Receive.
func TestCleartextPagesWarned(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		plaintext, cleartext bool
		wantClear, wantPlain int
	}{
		{"cleartext pages with encryption", false, true, 1, 0},
		{"cleartext pages with plaintext", true, true, 0, 1},
		{"encryption alone", false, false, 0, 0},
	} {
		for _, role := range []string{"Send", "Receive"} {
			w, err := warnedAtStart(t, role, Options{Credentials: transport.Credentials{Plaintext: tc.plaintext},
				Transport: schema.Config{transport.CleartextPages: tc.cleartext}})
			if !errors.Is(err, errNoSession) {
				t.Fatalf("%s, %s: %v; want the Open's refusal", tc.name, role, err)
			}
			if n := w.count(transport.CleartextPagesRisk); n != tc.wantClear {
				t.Errorf("%s, %s: the cleartext pages warning came %d times, want %d (warnings %q)", tc.name, role, n, tc.wantClear, w.msgs)
			}
			if n := w.count(transport.PlaintextRisk); n != tc.wantPlain {
				t.Errorf("%s, %s: the plaintext warning came %d times, want %d (warnings %q)", tc.name, role, n, tc.wantPlain, w.msgs)
			}
		}
	}
}
