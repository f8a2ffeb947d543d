//go:build !linux

package tcp

import (
	"net"
	"time"
)

// smoothedRTT is Linux only (TCP_INFO); elsewhere no round trip is
// reported (transport.Stats.RTT 0).
func smoothedRTT(*net.TCPConn) time.Duration { return 0 }
