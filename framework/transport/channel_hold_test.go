package transport

import (
	"net"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// TestChannelHoldAfterExit: the listening sockets a plugin handed over
// (fHold) just before its process died are held by the host, even those
// the host had not read yet when it saw the process gone. Before, the
// host closed the channel at the process's exit, which closed the
// sockets still in it: their ports were free until the next Open bound
// them again, and anyone on the host could take them first.
func TestChannelHoldAfterExit(t *testing.T) {
	hc, pc := connPair(t)
	exit := make(chan struct{})
	l := &launched{}
	t.Cleanup(func() { l.Close() })
	c := newChanClient(hc, errclass.NewProcess(exit, ErrPluginGone, classes), l.hold)

	// The host is busy with the first socket (hold waits for l.mu) when
	// the process dies with the second one still unread.
	l.mu.Lock()
	w := &chanWriter{conn: pc}
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			l.mu.Unlock()
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		addrs = append(addrs, addr)
		rc, _ := ln.(*net.TCPListener).SyscallConn()
		var werr error
		rc.Control(func(fd uintptr) { werr = w.writeFD(chanFrame{Type: fHold, Text: addr}, int(fd)) })
		ln.Close() // the plugin's own copy: only the one in the channel is left
		if werr != nil {
			l.mu.Unlock()
			t.Fatal(werr)
		}
	}
	pc.Close()
	close(exit)
	time.Sleep(100 * time.Millisecond) // the host sees the process gone
	l.mu.Unlock()
	select {
	case <-c.dead:
	case <-time.After(10 * time.Second):
		t.Fatal("the host's reader did not end")
	}
	for _, addr := range addrs {
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			t.Errorf("%s was free after its plugin handed it over and died", addr)
		}
	}
	l.Close()
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("after Close %s is still bound: %v", addr, err)
			continue
		}
		ln.Close()
	}
}
