package tcp

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// smoothedRTT is the kernel's smoothed round trip of c (TCP_INFO's
// tcpi_rtt), 0 if it cannot be read. It is the link's round trip as TCP
// sees it: neither side's engine nor a plugin's RPC hop is in it.
func smoothedRTT(c *net.TCPConn) time.Duration {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	if cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return 0
	}
	return time.Duration(info.Rtt) * time.Microsecond
}
