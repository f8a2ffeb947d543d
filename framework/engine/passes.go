package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// live runs the bulk pass and dirty passes until the estimated downtime
// fits MaxDowntime or MaxPasses is reached, or until it is time to switch
// to post-copy (then s.pcWhy says why and s.pcUnsent holds the pages the
// passes still owe). At MaxPasses above MaxDowntime it fails, the VM
// never paused, where the switch-over could not finish within
// SwitchoverTimeout (forcedSwitchRefused). The dirty log is on.
func (s *sender) live(ctx context.Context) error {
	toSend := bitmap.New(s.layout.Pages())
	toSend.SetAll()
	s.carry = bitmap.New(s.layout.Pages())
	// Pages written from here on are caught by the first sync below; the
	// bulk pass's hints belong to this epoch.
	if err := s.sync(bitmap.New(s.layout.Pages())); err != nil {
		return err
	}
	s.capStart = time.Now()
	var last time.Duration // the previous pass's estimate
	for s.pass = 1; ; s.pass++ {
		// The pass does not wait for answers: they are applied as they
		// arrive, to the pages it has not reached yet (hints.go).
		s.hints.request(ctx, s.gen)
		if s.pass == 1 {
			s.setPhase(PhaseBulk)
		} else {
			s.setPhase(PhaseDirty)
		}
		s.hints.hold(ctx, s.opt.HintHold) // 0: not at all
		sentBefore := s.rep.PagesSent
		s.probeAt, s.probeSent = time.Now(), sentBefore
		s.rtt.next() // the estimate charges this pass's round trips (rttMeter)
		stopped, err := s.sendPass(ctx, toSend, true)
		if err != nil {
			return err
		}
		if stopped { // s.pcWhy says why; toSend holds what the pass had not sent
			toSend.Or(s.carry)
			s.pcUnsent = toSend
			return nil
		}
		sent := s.rep.PagesSent - sentBefore
		toSend.ClearAll()
		if err := s.sync(toSend); err != nil {
			return err
		}
		toSend.Or(s.carry)
		s.carry.ClearAll()
		s.remaining = toSend.Count()
		s.rtt.sample(s.stats.poll(ctx).RTT) // once per pass (and on the ticker); 0 from a transport that does not measure it
		s.estimate = s.estimateDowntime(s.remaining)
		if s.pass > 1 && s.estimate*10 >= last*9 { // fell by less than a tenth: no real progress
			s.pcStalls++
		} else {
			s.pcStalls = 0
		}
		last = s.estimate
		s.progress(true)
		s.opt.Log.Info("pass done", "pass", s.pass, "dirty", s.remaining, "estimate", s.estimate, "rtt", s.rtt.get())
		if why := s.postcopyWhy(sent, s.remaining); why != "" {
			s.pcWhy, s.pcUnsent = why, toSend
			return nil
		}
		if s.estimate <= s.opt.MaxDowntime || s.pass >= s.opt.MaxPasses {
			if err := s.forcedSwitchRefused(); err != nil {
				return err // never paused: the guest runs on here
			}
			s.pending = toSend
			return nil
		}
	}
}

// estimateDowntime is how long the switch-over would keep the VM paused
// with n dirty pages still to send: the final dirty sync (as long as the
// last one took), the pages expected to carry data at the last measured
// rate, two round trips on this link (the final pass's Flush and the
// state's LOADED; rttMeter: the smallest of the latest pass's Flush and
// the transport's own measure, HELLO to READY before the first) and a
// margin for the state.
//
// The pages expected to carry data are n less the share the last dirty
// pass found free (finalFree): zero pages and holes travel as zero runs,
// which cost the link almost nothing. They are not free at the pause,
// though: the final pass reads every populated zero page to find it zero
// (BenchmarkOwedClassify, zero: ~0.18 us a page, 47 ms a GiB, on a
// 2-core test host), so they are charged what classifying them took that
// pass, a page (freeSecs), not the data rate: a guest that zeroed 16 GiB
// between two syncs would otherwise be paused on an estimate of a few
// milliseconds and its final pass read for three quarters of a second
// (TestEstimateZeroReadCharged). The data rate was measured on a pass's
// whole time, its free pages' reading included: where that pass is the
// share's too, their reading is charged twice, which errs high, by at
// most what reading them takes. Pages a "free" or "unused" hint let
// that pass skip unread are charged as data (freeInFinal): the final
// pass applies no hints (its sync begins a generation no provider is
// asked for, and invariant 1 drops the older ones) and sends those that
// hold data, and max_downtime must hold. With nothing measured every
// page is charged, at 100 000 pages/s until a rate is.
//
// What it cannot see: the final pass's pages are those written during
// the last live pass, the share is of those written before it, so a
// guest that fills with data what it zeroed a pass ago (or the reverse)
// is estimated on the old mix; the bulk pass's share (all of RAM, not
// what the guest writes) is never used, nor a pass's that classified
// fewer than minShareSample pages (the older share stays); nor what a
// zero run costs the destination (a punched hole, or a cleared page
// where the file cannot punch), beyond what the round trips hold.
func (s *sender) estimateDowntime(n uint64) time.Duration {
	rate := s.rate
	if rate <= 0 {
		rate = 100_000 // ~400 MB/s until measured
	}
	data := dataOf(n, s.finalFree)
	reading := time.Duration(float64(n-data) * s.freeSecs * float64(time.Second))
	return s.syncTook + 2*s.rtt.get() + downtimeAt(data, rate) + reading
}

// dataOf is how many of n dirty pages are expected to carry data when a
// share free (0 to 1) of such pages travels as zero runs: n less that
// share, rounded down, so a page in doubt is charged. Every "auto"
// judgement of how much a guest's writes cost the link uses it: the
// downtime estimate and postcopyWhy with the last dirty pass's share
// (finalFree), a probe with its window's sample (sampleFree).
func dataOf(n uint64, free float64) uint64 {
	if !(free > 0) { // NaN too
		return n
	}
	return n - min(n, uint64(float64(n)*min(free, 1)))
}

// minShareSample: a dirty pass that classified fewer pages leaves
// finalFree as it was (a handful of pages says little of the mix).
const minShareSample = 256

// downtimeAt is how long sending n pages takes at rate pages per second,
// plus a margin for the state and the handshake.
func downtimeAt(n uint64, rate float64) time.Duration {
	const overhead = 2 * time.Millisecond
	return overhead + time.Duration(float64(n)/rate*float64(time.Second))
}

// batchLimit is the cost of one batch of a pass: batchPages, or under a
// bandwidth cap what the cap moves in capBatchTime (at least
// minCapBatch pages), so that the pass reaches a batch boundary, where it
// reports progress, takes the operator's StartPostcopy and probes, every
// capBatchTime or so rather than every 8 MiB (a second at 8 MiB/s).
func (s *sender) batchLimit(capped bool) uint64 {
	if !capped || s.opt.Bandwidth == 0 {
		return batchPages
	}
	n := uint64(float64(s.opt.Bandwidth)*capBatchTime.Seconds()) / framework.PageSize
	return min(max(n, minCapBatch), batchPages)
}

const (
	capBatchTime = 100 * time.Millisecond
	minCapBatch  = 256
)

// sendPass sends every page set in set as the classifier's runs (zero
// runs as markers, the rest as data), applying hints as they arrive; it
// ends with a Flush so the next pass cannot overtake it. A live (capped)
// pass stops between two batches when the operator asks for post-copy
// (switchAsked) or a probe finds the guest outrunning the link (mode
// "auto"): it then reports stopped, with s.pcWhy set and set reduced to
// the pages it had not sent, once the transport wrote what the pass had
// queued (drainLive).
func (s *sender) sendPass(ctx context.Context, set *bitmap.Bitmap, capped bool) (stopped bool, err error) {
	started, dataBefore := time.Now(), s.rep.PagesSent
	s.remaining = set.Count()
	classified := s.remaining
	c := s.classify(set)
	batch := s.batchLimit(capped)
	// The transport calls wait on the destination: under a stall watch.
	ctx, stopWatch := s.watchPeer(ctx)
	defer stopWatch()
	var runs []transport.PageRun
	var cost, pages uint64     // of the batch being built: data pages + zero runs, and all pages
	var free uint64            // of the pages classified: those the final pass sends as zero runs too (finalFree)
	var freeTook time.Duration // classifying those: reading zero pages, asking for holes (freeSecs)
	since := time.Now()        // the run being classified began
	capBefore := s.capBytes    // the cap's bytes before the batch being built
	flush := func() error {
		if len(runs) == 0 {
			return nil
		}
		// The cap's sleep comes before the batch, for the batches before
		// it: the pass's last batch is followed by its Flush at once, so
		// that Flush's round-trip sample (below) holds no sleep. The
		// pages leave when they did before; the last batch's share of the
		// cap is slept by the next pass's first batch.
		if capped {
			if err := s.throttle(ctx, capBefore); err != nil {
				return err
			}
		}
		if err := s.sendPages(ctx, runs); err != nil {
			return fmt.Errorf("send pages (pass %d): %w", s.pass, s.peerStalled(ctx, err))
		}
		s.peer.moved()
		s.remaining -= min(s.remaining, pages)
		runs, cost, pages = runs[:0], 0, 0
		capBefore = s.capBytes
		return nil
	}
	for {
		s.hints.poll()
		r, ok := c.next(batch - cost)
		if !ok {
			break
		}
		now := time.Now() // one clock read a run: the loop's own cost is the final pass's too
		s.count(r)
		if s.freeInFinal(r) {
			free += r.count
			freeTook += now.Sub(since)
		}
		since = now
		runs = appendRun(runs, r.first, r.count, r.wire())
		if pages += r.count; r.wire() == transport.KindData {
			cost += r.count
		} else {
			cost++
		}
		if cost >= batch {
			if err := flush(); err != nil {
				return false, err
			}
			s.progress(false)
			if capped && s.switchAsked() {
				s.pcWhy = fmt.Sprintf("the operator asked (StartPostcopy) during pass %d", s.pass)
				set.ClearRange(0, c.p) // classified and sent
				return true, s.drainLive(ctx)
			}
			if capped {
				outrun, err := s.probe(set, c.p)
				if err != nil {
					return false, err
				}
				if outrun {
					set.ClearRange(0, c.p)
					return true, s.drainLive(ctx)
				}
			}
			since = time.Now() // the batch's send and the probe are not the next run's classifying
		}
	}
	if err := flush(); err != nil {
		return false, err
	}
	queuedSince := s.lastSend // zero when the pass queued nothing
	if err := s.flushReporting(ctx); err != nil {
		return false, fmt.Errorf("flush pass %d: %w", s.pass, s.peerStalled(ctx, err))
	}
	if !queuedSince.Before(started) {
		s.rtt.sample(time.Since(queuedSince)) // rttMeter: a round trip, never less
	}
	if sent, secs := s.rep.PagesSent-dataBefore, time.Since(started).Seconds(); sent >= 256 && secs > 0 {
		s.rate, s.ratePass = float64(sent)/secs, s.pass
		s.dataShare = float64(sent) / float64(classified) // classified >= sent
		if capped {
			s.peakRate = max(s.peakRate, s.rate)
		}
	}
	if capped && s.pass > 1 && classified >= minShareSample { // a dirty pass: its pages are what the guest writes
		s.finalFree = float64(free) / float64(classified) // classified >= free
		s.freeSecs = 0
		if free > 0 {
			s.freeSecs = freeTook.Seconds() / float64(free)
		}
	}
	return false, nil
}

// freeInFinal reports whether the final pass, which applies no hints,
// would send run r as a zero run too: zero pages and holes, and pages a
// "zero" hint let the pass skip (the classifier read them zero, or
// found them holes: checkZero). Pages a "free" or "unused" hint let it
// skip were not read and may hold data: not free (estimateDowntime).
func (s *sender) freeInFinal(r run) bool {
	switch r.kind {
	case runHole, runZero:
		return true
	case runHinted:
		return s.hints.srcs[r.who].Meaning == hint.MeaningZero // classifier.at checked these
	}
	return false
}

// watchPeer is ctx under a stall watch for a pass's transport calls,
// which wait on the destination (a full queue, a Flush): progress is a
// call that returned (moved) or the transport's byte count growing (the
// stats poller's). A destination whose process or transport plugin
// stopped, or a link that no longer moves, keeps the connection up:
// before this the pass waited on it until the caller cancelled. The
// migration then fails before COMMIT, and the VM runs here (again, if
// the final pass stalled). stop ends the watch.
func (s *sender) watchPeer(ctx context.Context) (pctx context.Context, stop func()) {
	s.peer.limit = s.opt.StallTimeout
	return s.peer.watchCounting(ctx, func(context.Context) (uint64, error) {
		st, err := s.stats.answer()
		return st.BytesWire, err
	})
}

// peerStalled is err, a pass's transport call under pctx (watchPeer),
// saying so if the stall watch ended it: the destination stopped, or
// this side's transport plugin if it answered no Stats call for the
// whole StallTimeout (statsPoller.answer, selfStopped).
func (s *sender) peerStalled(pctx context.Context, err error) error {
	return stalledError(pctx, err,
		"the destination took nothing while this side waited on it (its process or transport plugin stopped, or the link no longer moves)",
		"this side's transport plugin stopped answering (its last Stats call: %v) while this side waited on it: "+
			"it, not the destination, is likely what stopped (its process stopped, or it hangs)")
}

// drainLive Flushes what a stopped pass queued while the guest still
// runs. The switch pauses the guest next, and a transport's queue can
// hold far more than the link moves in max_downtime (transports/tcp:
// 32 batches per stream; behind a link slower than the cap, or an
// emulated one, tens of MiB): drained after the pause, all of it would
// be downtime. Pages the guest writes meanwhile are the final sync's.
func (s *sender) drainLive(ctx context.Context) error {
	start := time.Now()
	if err := s.flushReporting(ctx); err != nil {
		return fmt.Errorf("flush pass %d before the switch: %w", s.pass, s.peerStalled(ctx, err))
	}
	s.opt.Log.Debug("pass stopped for post-copy: queue drained with the guest running", "pass", s.pass, "took", time.Since(start))
	return nil
}

// flushReporting is tr.Flush, reporting progress every statsInterval
// while it waits: behind a link slower than the pass queued (a capped
// pass whose link is slower than its cap), a Flush can take seconds,
// and the progress would stand still meanwhile. While it waits the
// reported rate is what the transport wrote since the Flush began (its
// data pages, from the stats poller), the only pages moving; without a
// poller the reports come at the usual rate of the pass.
//
// The reporter runs beside the main goroutine while it is blocked in
// Flush, and is joined before Flush's caller goes on: the sender's
// fields have one writer at a time.
func (s *sender) flushReporting(ctx context.Context) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(statsInterval)
		defer t.Stop()
		start, from := time.Now(), s.stats.get().PagesData
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				rate := -1.0 // the pass's
				if s.stats != nil {
					wrote := s.stats.get().PagesData
					rate = float64(wrote-min(from, wrote)) / now.Sub(start).Seconds()
				}
				s.report(now, rate)
			}
		}
	})
	err := s.tr.Flush(ctx)
	close(stop)
	wg.Wait()
	return err
}

// sendPages queues runs with the transport and counts their pages in
// queued (the destination's landed lane reports each once); it notes
// when it began (lastSend: sendPass's round-trip sample).
func (s *sender) sendPages(ctx context.Context, runs []transport.PageRun) error {
	s.lastSend = time.Now()
	if err := s.tr.SendPages(ctx, runs); err != nil {
		return err
	}
	for _, r := range runs {
		s.queued += r.Count
	}
	return nil
}

// count records a run in the report, the providers' stats and the page
// check's free set (a page whose last send was a skip on a free or unused
// hint is not compared).
func (s *sender) count(r run) {
	free := false
	switch r.kind {
	case runHinted:
		s.rep.PagesSkipped += r.count
		s.hints.stats[r.who].Skipped += r.count
		m := s.opt.Hints[r.who].Meaning
		free = m == hint.MeaningFree || m == hint.MeaningUnused
	case runHole, runZero:
		s.rep.PagesZero += r.count
	case runWrong:
		s.hints.wrongSent(r.who, r.first, r.count) // counted at the next sync, unless written since
		fallthrough
	case runData:
		s.rep.PagesSent += r.count
		s.capBytes += r.count * framework.PageSize
	}
	if s.freeSent == nil {
		return
	}
	if free {
		s.freeSent.SetRange(r.first, r.count)
	} else {
		s.freeSent.ClearRange(r.first, r.count)
	}
}

// sync harvests the dirty log into dst (ORed in) and begins a new epoch:
// hints of the previous generation no longer apply, and its "zero" pages
// that held data are judged (hinter.settleWrong) against dst once the
// harvest is in: a page in dst was written since, or is still to be
// sent, and is not blamed on its provider, so pages_wrong is a lower
// bound. Judging against the harvest alone would need a second bitmap
// the size of dst, whose first touch cost 1-12 ms per 64 GiB of guest in
// the final sync, while the VM is paused; the passes leave dst empty
// but for what they did not reach, so little is lost.
func (s *sender) sync(dst *bitmap.Bitmap) error {
	start := time.Now()
	if err := s.src.SyncDirtyLog(dst); err != nil {
		return fmt.Errorf("dirty sync: %w", err)
	}
	s.syncTook = time.Since(start)
	if s.hints.suspected {
		s.hints.settleWrong(dst)
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

// throttle sleeps as needed to keep live page data under the bandwidth
// cap: until the cap allows bytes of page data since capStart.
func (s *sender) throttle(ctx context.Context, bytes uint64) error {
	if s.opt.Bandwidth == 0 {
		return nil
	}
	due := time.Duration(float64(bytes) / float64(s.opt.Bandwidth) * float64(time.Second))
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
	s.report(now, -1)
}

// report reports the state at now; rate is data pages per second, or
// negative for the pass's meter.
func (s *sender) report(now time.Time, rate float64) {
	s.lastProg = now
	s.opt.Progress(s.progressAt(now, rate))
}

// progressAt is the Progress report sends.
func (s *sender) progressAt(now time.Time, rate float64) Progress {
	if rate < 0 {
		rate = s.meter.rate(now, s.pass, s.rep.PagesSent, s.rate)
	}
	p := Progress{Phase: s.phase, Pass: s.pass, Remaining: s.remaining, PagesSent: s.rep.PagesSent,
		PagesZero: s.rep.PagesZero, PagesSkipped: s.rep.PagesSkipped, Throughput: rate * framework.PageSize,
		EstDowntime: s.estimate, Elapsed: now.Sub(s.start), TotalPages: s.layout.Pages(), Handover: s.ho.get(), Mode: s.rep.Mode,
		TagFingerprint: s.rep.TagFingerprint}
	switch {
	case s.phase == PhaseDone:
		p.BytesWire = s.rep.BytesWire
	case s.stats != nil:
		p.BytesWire = s.wireBase + s.stats.get().BytesWire
	default:
		p.BytesWire = s.wireBase
	}
	if s.pc != nil {
		p.Remaining = s.pc.owedCount()
	}
	return p
}
