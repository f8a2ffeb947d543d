package engine

import (
	"context"
	"sync"
)

// Cancel cancels one migration and says whether the cancel took. A plain
// cancel of Send's or Receive's context cannot say so: from the moment a
// side holds (hold.go: a source deciding to write COMMIT, a destination
// acting on COMMIT) the engine ignores it, and the caller cannot tell
// whether its cancel came before or after that moment; the progress
// report saying so (HandoverCommitting, HandoverRunning, post-copy)
// follows the hold, not with it. Cancel decides under the hold's own
// lock: either the cancel took, and no hold can follow it, or the side
// had held, and the cancel is not applied at all.
//
// A Cancel serves one migration: its Send, or its Receive, or both when
// one process runs both sides (it then takes only if neither held). It
// cannot stop what a plain cancel cannot: what Send and Receive do after
// they held, and a migration that already ended (a Cancel after Send or
// Receive returned takes if they never held, and stops nothing).
//
// A Cancel whose context another NewCancel derives from (an embedder's
// own around a library's) decides with the sides under that one too;
// every Cancel of such a chain decides under the outermost one's lock,
// so two of them never take the sides' locks in different orders.
type Cancel struct {
	mu       *sync.Mutex // the outermost Cancel's (outer)
	outer    *Cancel     // the Cancel parent derives from, or nil
	cancel   context.CancelCauseFunc
	sides    []*heldCtx // the heldCtx of every Send and Receive given ctx or a context derived from it
	canceled bool
}

// cancelKey is the context key of a Cancel.
type cancelKey struct{}

// NewCancel returns a context that Send or Receive (or session.Open and
// Session.Send / Receive, which pass it on) must be given, derived from
// parent, and its Cancel. Cancelling parent, or a context derived from
// ctx, still works as a plain cancel: it ends everything before the hold
// and is ignored after it, without an answer.
func NewCancel(parent context.Context) (context.Context, *Cancel) {
	c := &Cancel{outer: cancelOf(parent), mu: new(sync.Mutex)}
	if c.outer != nil {
		c.mu = c.outer.mu
	}
	ctx, cancel := context.WithCancelCause(parent)
	c.cancel = cancel
	return context.WithValue(ctx, cancelKey{}, c), c
}

// Cancel cancels the migration unless a side of it already held. took:
// the cancel is applied (ctx ends with cause; Send, Receive and what runs
// before them end as cancelled, and a source resumes its VM). Otherwise
// it is not applied, and the migration goes on to its end: postcopy says
// why, the guest runs or is about to run on the destination with pages
// only the source holds (false: a pre-copy source writes COMMIT or waits
// for RUNNING, a pre-copy destination acts on COMMIT; the migration ends
// within SwitchoverTimeout). One thing a refused Cancel does end: a
// post-copy destination whose Resume at COMMIT failed, which only tells
// its source ABORT (heldCtx.telling), stops listening for the source
// to come back to hear it; it ends failed at once, as it would have.
// Safe for concurrent use; a second Cancel after one that took takes
// too and changes nothing.
func (c *Cancel) Cancel(cause error) (took, postcopy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.sides {
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	for _, h := range c.sides {
		if h.held {
			for _, side := range c.sides {
				if side.held {
					side.refuseCancel()
				}
			}
			return false, h.postcopy
		}
	}
	c.canceled = true
	c.cancel(cause)
	for _, h := range c.sides {
		h.end(context.Canceled) // at once, whatever contexts lie between ctx and h
	}
	return true, false
}

// cancelOf returns the Cancel that ctx was derived from, or nil.
func cancelOf(ctx context.Context) *Cancel {
	c, _ := ctx.Value(cancelKey{}).(*Cancel)
	return c
}

// add registers h, a side's context derived from ctx, with c and every
// Cancel c derives from: from now on they decide with h's hold. If one
// of them already took, h ends at once.
func (c *Cancel) add(h *heldCtx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cc := c; cc != nil; cc = cc.outer {
		cc.sides = append(cc.sides, h)
		if cc.canceled {
			h.mu.Lock()
			h.end(context.Canceled)
			h.mu.Unlock()
		}
	}
}
