package engine

import (
	"context"

	"github.com/ferryvm/ferry/framework/transport"
)

// endSession ends tr's session for a post-copy reconnect, on either
// side, and returns its totals to count in the side's wireBase.
//
// The session ends through transport.CloseHolding (a transport that
// holds a listening port keeps it for the next Open; the caller's last
// Close lets it go). Its totals are the transport's Stats asked after
// that close, which count what the close itself moved (a receiving
// transport's close finishes the writes in flight; a launched plugin's
// Stats after its Close count them, transport.Launch), or seen, the
// last counters polled before it, when the transport cannot vouch for
// them (its Stats fail: a plugin process that stopped or died) or
// answers less (a session's counters only grow). What it cannot count:
// anything the session moved after seen was polled when its Stats after
// the close fail.
func endSession(tr transport.Transport, seen transport.Stats) transport.Stats {
	transport.CloseHolding(tr)
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	if st, err := tr.Stats(ctx); err == nil && st.BytesWire >= seen.BytesWire {
		return st
	}
	return seen
}
