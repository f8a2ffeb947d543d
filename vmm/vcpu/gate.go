package vcpu

import (
	"context"
	"sync"
)

// Gate holds the vCPUs of one VM at a checkpoint while paused, and tells
// them to return when stopped.
type Gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	paused  bool
	stopped bool
	parked  int
	running int // vCPU loops that have not returned
	vcpus   []*VCPU
}

// NewGate returns a gate with nothing paused.
func NewGate() *Gate {
	g := &Gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *Gate) add(c *VCPU) {
	g.mu.Lock()
	g.vcpus = append(g.vcpus, c)
	g.running++
	g.mu.Unlock()
}

func (g *Gate) done() {
	g.mu.Lock()
	g.running--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// checkpoint parks the calling vCPU while the gate is paused; it reports
// false when the vCPU must stop.
func (g *Gate) checkpoint() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && !g.stopped {
		g.parked++
		g.cond.Broadcast()
		g.cond.Wait()
		g.parked--
	}
	return !g.stopped
}

func (g *Gate) kickAll() {
	for _, c := range g.vcpus {
		c.kick()
	}
}

// Pause stops every vCPU at its checkpoint and returns once all are parked
// (or have returned), or when ctx ends (the pause then stays requested).
func (g *Gate) Pause(ctx context.Context) error {
	g.mu.Lock()
	g.paused = true
	g.kickAll()
	stopWait := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stopWait()
	for g.parked < g.running && !g.stopped && ctx.Err() == nil {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return ctx.Err()
}

// Resume lets parked vCPUs run again.
func (g *Gate) Resume() {
	g.mu.Lock()
	g.paused = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// Paused reports whether a pause is in effect.
func (g *Gate) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Stop makes every vCPU loop return at its next checkpoint; it does not wait.
func (g *Gate) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.kickAll()
	g.cond.Broadcast()
	g.mu.Unlock()
}
