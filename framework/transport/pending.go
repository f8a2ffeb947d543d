package transport

import (
	"net"
	"time"
)

// Pending is a connection a destination accepted and has not yet
// authenticated, as Evictable sees it.
type Pending struct {
	Host  string    // the remote address without its port (HostOf)
	Since time.Time // when it was accepted
}

// Evictable picks which of the pending connections to close so that one
// more, from newHost, fits (ok false: none pending). A listener bounds
// the connections it authenticates at once, so that strangers cannot
// hold it; with the bound reached, a plain oldest-first rule let a flood
// from one host evict a real source mid-handshake as soon as enough
// newer connections arrived during its handshake. So: the oldest
// connection among the hosts that hold more than share pending (counting
// the new one), else the oldest of all. A transport sets share to the
// most connections one source opens at once, so a flood from one host,
// or from a few that each hold more than share, evicts its own
// connections, never those of a source within its share. A flood from
// many hosts still evicts the oldest: filtering it is the network's job.
func Evictable[C comparable](pending map[C]Pending, newHost string, share int) (victim C, ok bool) {
	held := map[string]int{newHost: 1}
	for _, p := range pending {
		held[p.Host]++
	}
	var pick Pending
	for c, p := range pending {
		if ok {
			flood, pickFlood := held[p.Host] > share, held[pick.Host] > share
			if !(flood && !pickFlood || flood == pickFlood && p.Since.Before(pick.Since)) {
				continue
			}
		}
		victim, pick, ok = c, p, true
	}
	return victim, ok
}

// HostOf is addr without its port.
func HostOf(addr net.Addr) string {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}
