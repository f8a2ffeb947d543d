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

// TestPlaintextWarned: Send and Receive with Credentials.Plaintext each
// log one Warn saying what plaintext gives up (transport.PlaintextRisk),
// so an embedder or a VMM driven by hand, not only migrate, is told;
// with encryption, none. The transport's Open fails, so each ends there:
// the warning comes before any session.
func TestPlaintextWarned(t *testing.T) {
	refused := errors.New("no session in this test")
	for _, plaintext := range []bool{true, false} {
		want := map[bool]int{true: 1, false: 0}[plaintext]
		for _, role := range []string{"Send", "Receive"} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			tr := &transport.Mock{OpenFunc: func(context.Context, transport.OpenRequest) error { return refused },
				CloseFunc: func() error { return nil }}
			w := &warnings{}
			opt := Options{Credentials: transport.Credentials{Plaintext: plaintext}, Log: slog.New(w)}
			vm := newFakeVM(t, [2]uint64{0, 1 << 20})
			var err error
			if role == "Send" {
				_, err = Send(ctx, vm, tr, opt)
			} else {
				_, err = Receive(ctx, vm, tr, opt)
			}
			cancel()
			if !errors.Is(err, refused) {
				t.Fatalf("%s: %v; want the Open's refusal", role, err)
			}
			if n := w.count(transport.PlaintextRisk); n != want {
				t.Errorf("%s, plaintext %v: the plaintext warning came %d times, want %d (warnings %q)", role, plaintext, n, want, w.msgs)
			}
		}
	}
}
