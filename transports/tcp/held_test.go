//go:build linux

package tcp

import (
	"net"
	"testing"
)

// TestPortHeldTwoTransports: two receiving Transports of one process
// that listen on the same address share its socket (transport.Listen).
// The first one's Close must not let the port go while the second still
// holds it for a post-copy reconnect (CloseHoldingListeners); the
// second one's Close does. Before, the first Close closed the process's
// copy of the socket, and the port was free once the second session's
// listener was closed: a local user could take it before the reconnect.
func TestPortHeldTwoTransports(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	addr := freeAddr(t)
	c := cfg(addr, 1, "none")
	sendA, a := openPair(t, src, dst, c)
	sendB, b := openPair(t, src, dst, c) // a's session runs: b takes the held socket
	sendA.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	sendB.Close()
	if err := b.CloseHoldingListeners(); err != nil {
		t.Fatal(err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("one Transport's Close let %s go while another still held it", addr)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after both Closes %s is still bound: %v", addr, err)
	}
	ln.Close()
}
