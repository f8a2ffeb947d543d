package transporttest

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr returns host:port for a receiver's listen address: a port
// free now and, where the kernel leaves room, below its ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range). The suite closes a receiver
// and opens it again on the same address (Reopen, PortHeld, PeerClose,
// the urgent cases); in between, any outgoing connection on the machine
// may take a free ephemeral port as its source port, and a connected
// socket on it fails the next Listen with EADDRINUSE. Below the range
// only an explicit bind can take it. What it cannot exclude: another
// process binding the same port (it is drawn at random from those below
// the range, about 31000 with Linux's default), and, where the range
// starts at 2048 or lower or procfs is missing, the old exposure (it
// then returns a port the kernel picked).
func FreeAddr(tb testing.TB, host string) string {
	tb.Helper()
	if lo := ephemeralLow(); lo > 2048 {
		for range 64 {
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(1024+rand.IntN(lo-1024))))
			if err == nil {
				defer l.Close()
				return l.Addr().String()
			}
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range (0 if
// unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	lo, _ := strconv.Atoi(strings.Fields(string(b) + " 0")[0])
	return lo
}
