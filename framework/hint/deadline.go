package hint

import (
	"context"
	"time"
)

// Margins for Request.AnswerBy: what a provider keeps in hand to send its
// last batch and return across gRPC before the engine stops listening.
const (
	// MinMargin is the least margin AnswerBy keeps.
	MinMargin = 2 * time.Millisecond
	// MaxMargin is the most the default margin takes.
	MaxMargin = 50 * time.Millisecond
)

// AnswerBy returns when a provider working on r should stop gathering
// and return what it has: r.Deadline minus margin. margin 0 means the
// default: a tenth of the time left until the deadline, between
// MinMargin and MaxMargin (a 300 ms deadline keeps 30 ms). The engine
// drops (and counts as late) whatever arrives after r.Deadline, so a
// provider that waits on something — the guest, a device, a file — waits
// until AnswerBy, not until r.Deadline.
//
//	ctx, cancel := req.Context(ctx, 0)   // ends at req.AnswerBy(0)
//	defer cancel()
//	for ctx.Err() == nil { ... emit(batch) ... }
//	return nil                           // what arrived in time counts
func (r Request) AnswerBy(margin time.Duration) time.Time {
	if r.Deadline.IsZero() {
		return time.Time{}
	}
	if margin <= 0 {
		margin = min(max(time.Until(r.Deadline)/10, MinMargin), MaxMargin)
	}
	return r.Deadline.Add(-margin)
}

// Context returns ctx bounded by r.AnswerBy(margin) (ctx itself, with
// a cancel, when r has no deadline). Cancel it when done, as with
// context.WithDeadline. Hints already runs under a context that ends at
// r.Deadline; this one ends in time to answer.
func (r Request) Context(ctx context.Context, margin time.Duration) (context.Context, context.CancelFunc) {
	by := r.AnswerBy(margin)
	if by.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, by)
}
