package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// warnings is a slog handler that keeps the messages of Warn records.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		w.mu.Lock()
		w.msgs = append(w.msgs, r.Message)
		w.mu.Unlock()
	}
	return nil
}

// count says how many Warn messages contain s.
func (w *warnings) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// errNoSession is the Open of warnedAtStart's transport failing.
var errNoSession = errors.New("no session in this test")

// warnedAtStart runs Send (role "Send") or Receive with opt on a
// transport whose Open fails (errNoSession), and returns the Warn
// messages logged until then and the error it returned: what Send and
// Receive say as they start, before any session. It sets opt.Log.
func warnedAtStart(t *testing.T, role string, opt Options) (*warnings, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &transport.Mock{OpenFunc: func(context.Context, transport.OpenRequest) error { return errNoSession },
		CloseFunc: func() error { return nil }}
	w := &warnings{}
	opt.Log = slog.New(w)
	vm := newFakeVM(t, [2]uint64{0, 1 << 20})
	var err error
	if role == "Send" {
		_, err = Send(ctx, vm, tr, opt)
	} else {
		_, err = Receive(ctx, vm, tr, opt)
	}
	return w, err
}

// TestPlaintextWarned: Send and Receive with Credentials.Plaintext each
// log one Warn saying what plaintext gives up (transport.PlaintextRisk),
// so an embedder or a VMM driven by hand, not only migrate, is told;
// with encryption, none. The transport's Open fails, so each ends there:
// the warning comes before any session.
func TestPlaintextWarned(t *testing.T) {
	for _, plaintext := range []bool{true, false} {
		want := map[bool]int{true: 1, false: 0}[plaintext]
		for _, role := range []string{"Send", "Receive"} {
			w, err := warnedAtStart(t, role, Options{Credentials: transport.Credentials{Plaintext: plaintext}})
			if !errors.Is(err, errNoSession) {
				t.Fatalf("%s: %v; want the Open's refusal", role, err)
			}
			if n := w.count(transport.PlaintextRisk); n != want {
				t.Errorf("%s, plaintext %v: the plaintext warning came %d times, want %d (warnings %q)", role, plaintext, n, want, w.msgs)
			}
		}
	}
}
