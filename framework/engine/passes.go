package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// live runs the bulk pass and dirty passes until the estimated downtime
// fits MaxDowntime or MaxPasses is reached. The dirty log is on.
func (s *sender) live(ctx context.Context) error {
	toSend := bitmap.New(s.layout.Pages())
	toSend.SetAll()
	// Pages written from here on are caught by the first sync below; the
	// bulk pass's hints belong to this epoch.
	if err := s.sync(bitmap.New(s.layout.Pages())); err != nil {
		return err
	}
	s.capStart = time.Now()
	for s.pass = 1; ; s.pass++ {
		if s.pass == 1 {
			s.setPhase(PhaseBulk)
		} else {
			s.setPhase(PhaseDirty)
		}
		s.hints.request(ctx, s.gen)
		s.hints.wait(ctx)
		if err := s.sendPass(ctx, toSend, true); err != nil {
			return err
		}
		toSend.ClearAll()
		if err := s.sync(toSend); err != nil {
			return err
		}
		s.remaining = toSend.Count()
		s.estimate = s.estimateDowntime(s.remaining)
		s.stats.poll(ctx) // once per pass (and on the ticker)
		s.progress(true)
		s.opt.Log.Info("pass done", "pass", s.pass, "dirty", s.remaining, "estimate", s.estimate)
		if s.estimate <= s.opt.MaxDowntime || s.pass >= s.opt.MaxPasses {
			s.pending = toSend
			return nil
		}
	}
}

// estimateDowntime is how long sending n pages (as data) would take at the
// last measured rate, plus a margin for the state and the handshake.
func (s *sender) estimateDowntime(n uint64) time.Duration {
	const overhead = 2 * time.Millisecond
	rate := s.rate
	if rate <= 0 {
		rate = 100_000 // ~400 MB/s until measured
	}
	return overhead + time.Duration(float64(n)/rate*float64(time.Second))
}

// sendPass sends every page set in set: zero runs as markers, the rest as
// data; it ends with a Flush so the next pass cannot overtake it.
func (s *sender) sendPass(ctx context.Context, set *bitmap.Bitmap, capped bool) error {
	started, dataBefore := time.Now(), s.rep.PagesSent
	s.remaining = set.Count()
	// Hole knowledge is only as fresh as the dirty sync that began this
	// pass: a page the guest populated since is in the next sync anyway.
	for i := range s.holes {
		s.holes[i].valid = false
	}
	var runs []transport.PageRun
	var cost, pages uint64 // of the batch being built: data pages + zero runs, and all pages
	flush := func() error {
		if len(runs) == 0 {
			return nil
		}
		if err := s.tr.SendPages(ctx, runs); err != nil {
			return fmt.Errorf("send pages (pass %d): %w", s.pass, err)
		}
		s.remaining -= min(s.remaining, pages)
		runs, cost, pages = runs[:0], 0, 0
		if capped {
			return s.throttle(ctx)
		}
		return nil
	}
	var err error
	for i, r := range s.layout {
		base, n := s.base[i], r.Size/framework.PageSize
		for p := set.NextSet(base); p < base+n && err == nil; {
			end := min(set.NextClear(p), base+n)
			for p < end && err == nil {
				k, kind := s.stretch(i, p, end)
				runs = appendRun(runs, p, k, kind)
				if kind == transport.KindData {
					cost += k
				} else {
					cost++
				}
				p, pages = p+k, pages+k
				if cost >= batchPages {
					err = flush()
					s.hints.drain() // late answers of this generation still help
					s.progress(false)
				}
			}
			p = set.NextSet(end)
		}
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if err := s.tr.Flush(ctx); err != nil {
		return fmt.Errorf("flush pass %d: %w", s.pass, err)
	}
	if sent, secs := s.rep.PagesSent-dataBefore, time.Since(started).Seconds(); sent >= 256 && secs > 0 {
		s.rate = float64(sent) / secs
	}
	return nil
}

// sync harvests the dirty log into dst and begins a new epoch: hints of
// the previous generation no longer apply.
func (s *sender) sync(dst *bitmap.Bitmap) error {
	if err := s.src.SyncDirtyLog(dst); err != nil {
		return fmt.Errorf("dirty sync: %w", err)
	}
	s.gen++
	s.hints.invalidate(s.gen)
	return nil
}

// appendRun adds n pages from p of kind k, extending the last run when it can.
func appendRun(runs []transport.PageRun, p, n uint64, k transport.Kind) []transport.PageRun {
	if l := len(runs); l > 0 && runs[l-1].Kind == k && runs[l-1].First+runs[l-1].Count == p {
		runs[l-1].Count += n
		return runs
	}
	return append(runs, transport.PageRun{First: p, Count: n, Kind: k})
}

// stretch classifies pages from p (in region i, before end) and returns
// how many in a row share the answer, with their kind, and counts them:
// a run a provider hinted (one provider), a hole of the memory file, or
// one populated page checked word by word.
func (s *sender) stretch(i int, p, end uint64) (uint64, transport.Kind) {
	if who, ok := s.hints.skip(p); ok {
		n := s.hints.extent(p, end)
		if s.opt.Hints[who].Meaning == hint.MeaningZero {
			// "Zero" is checkable for the price of a hole lookup (or one
			// page read): a provider that calls a page with data zero is
			// caught here, and the page travels.
			var zero bool
			if n, zero = s.zeroStretch(i, p, n); !zero {
				s.hints.stats[who].Wrong++
				return s.plain(i, p)
			}
		}
		s.rep.PagesSkipped += n
		s.hints.stats[who].Skipped += n
		if m := s.opt.Hints[who].Meaning; m == hint.MeaningFree || m == hint.MeaningUnused {
			s.freeSent.SetRange(p, n)
		} else {
			s.freeSent.ClearRange(p, n)
		}
		return n, transport.KindZero
	}
	return s.plain(i, p, end)
}

// zeroStretch reports whether page p really is zero (a hole of the memory
// file, or a populated page of zeros), and for how many of the next n
// pages the same holds cheaply (the hole's extent).
func (s *sender) zeroStretch(i int, p, n uint64) (uint64, bool) {
	r, base := s.layout[i], s.base[i]
	off := int64(r.Offset + (p-base)*framework.PageSize)
	if h := &s.holes[i]; h.hole(off) {
		dataPage := base + uint64(h.dataStart-int64(r.Offset))/framework.PageSize
		return max(1, min(p+n, dataPage)-p), true
	}
	return 1, isZero(s.mem[i][off-int64(r.Offset) : off-int64(r.Offset)+framework.PageSize])
}

// plain classifies pages from p without hints: a hole of the memory file
// (its whole extent before end), or one populated page checked word by word.
func (s *sender) plain(i int, p uint64, ends ...uint64) (uint64, transport.Kind) {
	end := p + 1
	if len(ends) > 0 {
		end = ends[0]
	}
	r, base := s.layout[i], s.base[i]
	off := int64(r.Offset + (p-base)*framework.PageSize)
	n, kind := uint64(1), transport.KindData
	switch h := &s.holes[i]; {
	case h.hole(off):
		// The stretch stops at the next hinted page too, so hints keep
		// their credit (and free pages stay exempt from the page check).
		dataPage := base + uint64(h.dataStart-int64(r.Offset))/framework.PageSize
		n, kind = max(1, min(end, dataPage, s.hints.nextMarked(p, end))-p), transport.KindZero
		s.rep.PagesZero += n
	case isZero(s.mem[i][off-int64(r.Offset) : off-int64(r.Offset)+framework.PageSize]):
		kind = transport.KindZero
		s.rep.PagesZero++
	default:
		s.rep.PagesSent++
		s.capBytes += framework.PageSize
	}
	if s.freeSent != nil {
		s.freeSent.ClearRange(p, n)
	}
	return n, kind
}

// throttle sleeps as needed to keep live page data under the bandwidth cap.
func (s *sender) throttle(ctx context.Context) error {
	if s.opt.Bandwidth == 0 {
		return nil
	}
	due := time.Duration(float64(s.capBytes) / float64(s.opt.Bandwidth) * float64(time.Second))
	wait := due - time.Since(s.capStart)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setPhase moves to phase p along phaseNext and tells the caller. A
// move outside the table is an engine bug: logged, and the phase stays.
func (s *sender) setPhase(p Phase) {
	next, err := nextPhase(s.phase, p)
	if err != nil {
		s.opt.Log.Error("progress", "err", err)
	}
	if next != s.phase {
		s.phase = next
		s.clock.enter(next, time.Now())
		s.progress(true)
	}
}

// progress reports the current state to the caller: always when force,
// else at most once per statsInterval. Bytes on the wire are the
// poller's last figure (at the end, the final count); it never calls
// the transport itself.
func (s *sender) progress(force bool) {
	now := time.Now()
	if !force && now.Sub(s.lastProg) < statsInterval {
		return
	}
	s.lastProg = now
	p := Progress{Phase: s.phase, Pass: s.pass, Remaining: s.remaining, PagesSent: s.rep.PagesSent,
		PagesZero: s.rep.PagesZero, PagesSkipped: s.rep.PagesSkipped, Throughput: s.meter.rate(now, s.pass, s.rep.PagesSent, s.rate) * framework.PageSize,
		EstDowntime: s.estimate, Elapsed: now.Sub(s.start), TotalPages: s.layout.Pages(), Handover: s.ho.get()}
	switch {
	case s.phase == PhaseDone:
		p.BytesWire = s.rep.BytesWire
	case s.stats != nil:
		p.BytesWire = s.stats.get().BytesWire
	}
	s.opt.Progress(p)
}
