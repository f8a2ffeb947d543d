package rdma_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestSourceLeftDuringSetup: a try of the source's Open that ends after
// the destination admitted it (its own deadline, in the plugin
// conformance suite under load) closes the control channel; the
// destination's Open drops it at once and takes the source's next try,
// instead of waiting connect_timeout for the dead one and failing
// (before: "fabric: waiting for the source's connection on port N:
// context deadline exceeded", and every later try met a port nobody
// accepted on).
//
//   - "after OFFER": a real source whose fabric connect fails (provider
//     verbs, which has no device on loopback) after HELLO and OFFER;
//   - "before urgent channel": a source that connected both fabric
//     endpoints and read the KEYS, then closed without its urgent channel.
func TestSourceLeftDuringSetup(t *testing.T) {
	for _, p := range providers(t) {
		if p == "verbs" {
			continue // the first try's failure needs a provider that does not work here
		}
		for _, stage := range []string{"after OFFER", "before urgent channel"} {
			t.Run(p+"/"+stage, func(t *testing.T) { sourceLeft(t, p, stage) })
		}
	}
}

func sourceLeft(t *testing.T, provider, stage string) {
	sf, _ := memfd(t, "send", 1<<20)
	df, _ := memfd(t, "recv", 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, provider) // connect_timeout 10 s: what the destination waited for the dead try
	// The dead try names another migration than the next tries: a
	// destination that takes any (zero Tag) must not hold the next tries
	// to the dead one's tag.
	deadTag, tag := transport.Tag{1}, transport.Tag{2}
	sendReq := transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc, Tag: tag}
	send, recv := rdma.New(nil), rdma.New(nil)
	defer send.Close()
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	defer wg.Wait()

	// The first try ends half-way.
	first, stopFirst := context.WithTimeout(ctx, 5*time.Second)
	var reached bool
	switch stage {
	case "after OFFER":
		bad := schema.Config{}
		for k, v := range cfg {
			bad[k] = v
		}
		bad["provider"] = "verbs"
		req := sendReq
		req.Config, req.Tag = bad, deadTag
		early := rdma.New(nil)
		err = early.Open(first, req) // dials until the destination listens
		if err == nil {
			early.Close()
			t.Skip("provider verbs connected on loopback: no first try that fails at its fabric connect")
		}
		reached = strings.Contains(err.Error(), "fabric:")
	case "before urgent channel":
		err = rdma.AbandonedSource(first, provider, cfg["listen"].(string), sc, deadTag, layout)
		reached = err == nil
	}
	stopFirst()
	if !reached {
		t.Fatalf("the first try did not reach the stage %q: %v", stage, err)
	}

	// The source tries again, as its callers do (the engine's post-copy
	// reconnect, the conformance suite); the destination takes a next
	// try. One may still fail at once: a try that came while the
	// destination was accepting the dead one's urgent channel is closed
	// with that wait; it must not blame the credentials (TestSourceAuthErrors).
	start, tries := time.Now(), 1
	for err = send.Open(ctx, sendReq); err != nil && ctx.Err() == nil; err = send.Open(ctx, sendReq) {
		if tries <= 3 {
			t.Logf("try %d: %v", tries, err)
		}
		if strings.Contains(err.Error(), "refused this job's credentials") {
			t.Errorf("try %d, with the job's credentials, blames them: %v", tries, err)
		}
		tries++
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("the source's next tries: %v (the destination's Open: %v)", err, rerr)
	}
	wg.Wait()
	if rerr != nil {
		t.Fatalf("the destination's Open: %v", rerr)
	}
	t.Logf("the source opened in %v, at try %d", time.Since(start), tries)
	if err := send.SendMessage(ctx, transport.Message{Kind: 7, Payload: []byte("after the dead try")}); err != nil {
		t.Fatal(err)
	}
	if m, err := recv.RecvMessage(ctx); err != nil || m.Kind != 7 {
		t.Fatalf("message after the dead try: kind %d, %v", m.Kind, err)
	}
}

// TestOwnSetupFailure: a failure of the destination's own during setup
// (registering guest RAM; here the test's hook, which returns only once
// the source's try has ended) fails the destination's Open with that
// error, although the source, meeting it, closed the control channel
// first: a next try would meet it again. Before, the destination took
// the close for a source that left, dropped its own error and waited for
// a next try until its Open's context ended.
func TestOwnSetupFailure(t *testing.T) {
	for _, p := range providers(t) {
		if p == "verbs" {
			continue // the hook holds the source's fabric connect; verbs adds nothing here
		}
		t.Run(p, func(t *testing.T) { ownSetupFailure(t, p) })
	}
}

func ownSetupFailure(t *testing.T, provider string) {
	sf, _ := memfd(t, "send", 1<<20)
	df, _ := memfd(t, "recv", 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, provider)
	send, recv := rdma.New(nil), rdma.New(nil)
	defer send.Close()
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sourceEnded := make(chan struct{})
	failed := errors.New("registering guest RAM failed (the test's hook)")
	recv.SetRegisterHook(func() error { <-sourceEnded; return failed })
	rerr := make(chan error, 1)
	go func() {
		rerr <- recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	}()

	// The source's try waits in its fabric connect while the destination
	// registers, until the try's deadline; then it closes everything.
	try, stop := context.WithTimeout(ctx, 2*time.Second)
	err = send.Open(try, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc})
	stop()
	if err == nil || !strings.Contains(err.Error(), "fabric:") {
		close(sourceEnded)
		t.Fatalf("the source's try = %v; want it to end in its fabric connect", err)
	}
	close(sourceEnded)

	bound := time.NewTimer(10 * time.Second)
	defer bound.Stop()
	select {
	case err := <-rerr:
		if !errors.Is(err, failed) {
			t.Fatalf("the destination's Open = %v; want its own failure, %q", err, failed)
		}
		t.Logf("the destination's Open: %v", err)
	case <-bound.C:
		cancel()
		t.Fatalf("the destination still waits for a next try 10 s after its own setup failed (then: %v)", <-rerr)
	}
}
