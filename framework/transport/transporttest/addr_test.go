package transporttest

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddrNotEphemeral: the suite's listen ports are outside the
// ephemeral range, so no connection's source port can take one between
// two Opens.
func TestFreeAddrNotEphemeral(t *testing.T) {
	lo := ephemeralLow()
	if lo <= 2048 {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	for range 20 {
		a := FreeAddr(t, "127.0.0.1")
		_, ps, _ := net.SplitHostPort(a)
		if p, _ := strconv.Atoi(ps); p >= lo || p < 1024 {
			t.Fatalf("FreeAddr gave %s; want a port from 1024 to below the ephemeral range from %d", a, lo)
		}
		if l, err := net.Listen("tcp", a); err != nil {
			t.Fatalf("FreeAddr gave %s, which cannot be bound: %v", a, err)
		} else {
			l.Close()
		}
	}
}
