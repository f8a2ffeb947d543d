package vcpu

import (
	"context"
	"errors"
	"sync"
)

// ErrResumed is returned by a Pause that a Resume overtook before every
// vCPU had parked: the vCPUs run, and the caller's pause did not happen.
var ErrResumed = errors.New("the vCPUs were resumed before every one of them parked")

// Gate holds the vCPUs of one VM at a checkpoint while paused, and tells
// them to return when stopped.
//
// Every method may be called from any goroutine at any time, also while
// vCPUs start (a vCPU that joins a paused gate parks at its first
// checkpoint, before it enters the guest) or return. The gate does not
// order callers: Pause and Resume from two callers race like any two
// writes, and a VM that must not be resumed by one party while another
// pauses it serialises them above the gate (vmm's run lock).
type Gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	paused  bool
	stopped bool
	parked  int
	running int    // vCPU loops that have not returned
	resumes uint64 // Resume calls so far: a Pause in progress gives up when it changes
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

// kickAll kicks every vCPU whose loop still runs; the caller holds g.mu.
// An exited vCPU is skipped: its thread closes the KVM vCPU (and unmaps
// its kvm_run, which kick writes) right after done, so kicking it could
// fault. done marks it under g.mu, so the check cannot race the close.
func (g *Gate) kickAll() {
	for _, c := range g.vcpus {
		if !c.exited {
			c.kick()
		}
	}
}

// Pause stops every vCPU at its checkpoint and returns nil once all are
// parked (or have returned, or the gate is stopped). It returns early
// with ctx's error when ctx ends first: the pause then stays requested
// and the vCPUs park as they reach their checkpoints, so a caller that
// wants them running again must call Resume. It returns ErrResumed when a
// Resume came first: then nothing is paused and the vCPUs run.
func (g *Gate) Pause(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = true
	g.kickAll()
	resumes := g.resumes
	stopWait := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stopWait() // does not wait for the function, which takes g.mu
	for g.parked < g.running && !g.stopped {
		switch {
		case g.resumes != resumes:
			return ErrResumed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		g.cond.Wait()
	}
	return nil
}

// Resume lets parked vCPUs run again and makes a Pause still waiting for
// them return ErrResumed. Functions queued by Do that have not started
// fail.
func (g *Gate) Resume() {
	g.mu.Lock()
	g.paused = false
	g.resumes++
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
