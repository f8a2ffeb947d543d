//go:build linux && cgo && !nolibfabric

package fabric

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// firstCallChild names, in a re-executed test binary's environment, what
// the child of TestFirstCallCost measures.
const firstCallChild = "FERRY_FABRIC_FIRST_CALL"

// TestFirstCallCost prints (t.Log; nothing is asserted) what libfabric's
// one-time initialisation costs the first Listen and Connect of a
// process, against the second of each, per software provider: each
// case runs in a fresh process (this test binary again): "cold" as
// transports/rdma did before, "warm" after Warm(provider) returned,
// "warm-any" after Warm("") (libfabric's initialisation alone) returned.
//
//	go test -run TestFirstCallCost -v ./transports/rdma/fabric/
func TestFirstCallCost(t *testing.T) {
	if mode := os.Getenv(firstCallChild); mode != "" {
		firstCalls(t, mode)
		return
	}
	for _, prov := range softProviders {
		for _, mode := range []string{"cold", "warm", "warm-any"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFirstCallCost$", "-test.v")
			cmd.Env = append(os.Environ(), firstCallChild+"="+mode+","+prov)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", prov, mode, err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "cost:") {
					t.Log(strings.TrimSpace(line))
				}
			}
		}
	}
}

// firstCalls is TestFirstCallCost's child: it times the calls of mode
// and provider ("cold,tcp") and logs them.
func firstCalls(t *testing.T, mode string) {
	m, prov, _ := strings.Cut(mode, ",")
	var times []string
	timed := func(what string, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		times = append(times, fmt.Sprintf("%s %.1f ms", what, float64(time.Since(start).Microseconds())/1000))
	}
	switch m {
	case "warm":
		timed("warm", func() error { <-Warm(prov); return nil })
	case "warm-any":
		timed("warm", func() error { <-Warm(""); return nil })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 1; i <= 2; i++ {
		var l *Listener
		timed(fmt.Sprintf("listen%d", i), func() (err error) { l, err = Listen(prov, "127.0.0.1"); return err })
		port, err := l.Port()
		if err != nil {
			t.Fatal(err)
		}
		acc := make(chan *Endpoint, 1)
		go func() {
			e, err := l.Accept(ctx, func([]byte) bool { return true }, func(*Endpoint) error { return nil })
			if err != nil {
				t.Error(err)
			}
			acc <- e
		}()
		var e *Endpoint
		timed(fmt.Sprintf("connect%d", i), func() (err error) { e, err = Connect(ctx, prov, "127.0.0.1", port, []byte("x")); return err })
		if a := <-acc; a != nil {
			a.Close()
		}
		e.Close()
		l.Close()
	}
	t.Logf("cost: %s %s: %s", m, prov, strings.Join(times, ", "))
}
