package sessionbase

import "fmt"

// CutWrite is the error of a write of a size-byte frame that a past
// deadline of this side's cut once n of its bytes counted as written:
// the call's context's, when byCtx (its end, ctx.Err()) is set, or,
// when it is nil, the session's own wind-down (the caller then returns
// the session's error, so this text is seldom seen). where names the
// connection and the write ("stream 0: send message", "control
// channel"), carrier what such a connection is called ("stream",
// "channel"). Over TLS (overTLS) it adds TLS's rules, whichever of the
// frame's records the cut met: crypto/tls refuses every write after one
// a deadline cut, so the connection can carry no frame however few
// bytes went, and it counts none of a record cut half-way, so the peer
// may have read more than n. What it does not do: classify a failure
// that is not a past deadline (the peer closed or reset the
// connection, the link broke); each transport does (tcp's connErr,
// rdma's writeFailed).
func CutWrite(where, carrier string, err, byCtx error, n, size int64, overTLS bool) error {
	rules := ""
	if overTLS {
		rules = " (over TLS, which refuses every write after one a deadline cut, and counts none of a record cut half-way)"
	}
	if byCtx != nil {
		return fmt.Errorf("%s: the call's context ended (%v) with %d of a frame's %d bytes written, "+
			"after which the %s can carry no frame: %w%s", where, byCtx, n, size, carrier, err, rules)
	}
	return fmt.Errorf("%s: the write was cut on this side with %d of a frame's %d bytes written: %w%s",
		where, n, size, err, rules)
}
