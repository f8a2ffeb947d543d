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
	c.gate = g
	g.vcpus = append(g.vcpus, c)
	g.running++
	g.mu.Unlock()
}

func (g *Gate) done(c *VCPU) {
	g.mu.Lock()
	c.exited = true
	for _, r := range c.reqs {
		r.done <- errVCPUExited
	}
	c.reqs = nil
	g.running--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// checkpoint parks the calling vCPU c while the gate is paused, running
// the functions Do queues for it on its thread; it reports false when the
// vCPU must stop. A vCPU whose last exit left an I/O to complete is not
// parked: checkpoint sets immediate_exit and lets it enter KVM_RUN once
// more, which completes the I/O and returns EINTR without running guest
// code, so a parked vCPU's state is always whole.
func (g *Gate) checkpoint(c *VCPU) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && !g.stopped {
		if c.ioPending {
			c.k.SetImmediateExit(true)
			return true
		}
		if len(c.reqs) > 0 {
			r := c.reqs[0]
			c.reqs = c.reqs[1:]
			g.mu.Unlock()
			r.done <- r.fn(c.k)
			g.mu.Lock()
			continue
		}
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

// Resume lets parked vCPUs run again. Functions queued by Do that have not
// started fail.
func (g *Gate) Resume() {
	g.mu.Lock()
	g.paused = false
	for _, c := range g.vcpus {
		for _, r := range c.reqs {
			r.done <- errNotPaused
		}
		c.reqs = nil
	}
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
