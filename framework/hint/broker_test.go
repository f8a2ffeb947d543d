package hint_test

import (
	"runtime"
	"testing"
	"time"
)

// TestBrokerFlood: a plugin that floods the host's end of go-plugin's
// broker with connection offers (ConnInfo messages for ids the host
// never dials; each made go-plugin's host side start a goroutine that
// lived 5 s, and a knock would add a map entry for good) costs the host
// no goroutines: the host drops what a plugin sends on the broker
// stream, and the plugin still answers its calls.
func TestBrokerFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	before := runtime.NumGoroutine()
	p := launch(t, brokerFloodName, nil)
	most := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		most = max(most, runtime.NumGoroutine()-before)
	}
	t.Logf("the host ran up to %d goroutines more than before the plugin started", most)
	if most > 200 {
		t.Errorf("the host ran up to %d goroutines more while the plugin flooded its broker", most)
	}
	if _, err := p.Info(tctx(t)); err != nil {
		t.Errorf("Info while the plugin floods: %v", err)
	}
}
