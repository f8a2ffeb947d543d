package engine

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestPrecopyOnlyNoPostcopyWarning: a source that may not switch to
// post-copy (postcopy "off", no StartPostcopy) does not ask the
// destination about it (HELLO without helloMaySwitch), so READY says
// nothing of post-copy. It must not log that the destination cannot
// serve post-copy: that is not known, and a refusal at max_passes
// advises postcopy = "auto" beside it. Since HELLO always carries
// helloTransportTag, the handshake took any flag for "may switch" and
// logged it on every pre-copy migration.
func TestPrecopyOnlyNoPostcopyWarning(t *testing.T) {
	src, dst, _ := outrunGuest(t, 2*mib, 0)
	logs := &logBuf{}
	opt := Options{MaxDowntime: time.Nanosecond, MaxPasses: 2, SwitchoverTimeout: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, nil))}
	_, serr, _, _ := sendOver(t, src, dst, opt, func(tr transport.Transport) transport.Transport {
		return &slowLink{Transport: tr, pagesPerSec: 2048}
	})
	if !errors.Is(serr, ErrNotConverged) || !strings.Contains(serr.Error(), `or set postcopy = "auto"`) {
		t.Fatalf("Send: %v; want the refusal, advising post-copy", serr)
	}
	if l := logs.String(); strings.Contains(l, "cannot serve post-copy") {
		t.Errorf("a pre-copy-only source logged that the destination cannot serve post-copy, which it never asked:\n%s", l)
	}
}
