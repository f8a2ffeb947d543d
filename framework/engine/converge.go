package engine

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferryvm/ferry/framework"
)

// ErrNotConverged is returned (wrapped) by Send when pre-copy reached
// MaxPasses with an estimate above MaxDowntime and the switch-over could
// not finish within SwitchoverTimeout by the engine's own measure
// (forcedSwitchRefused): the VM was never paused and runs on the source
// (Report.Status "failed"), and the destination was told with ABORT.
var ErrNotConverged = errors.New("pre-copy did not converge")

// capBoundShare: a live pass's rate at least this share of the
// bandwidth cap may be the cap's, not the link's (forcedSwitchRefused).
const capBoundShare = 0.75

// forcedSwitchRefused is nil when the switch-over may begin after the
// last live pass, or an error wrapping ErrNotConverged when pre-copy
// reached MaxPasses above MaxDowntime (a forced stop-and-copy) and the
// final dirty sync plus the dirty pages that carry data at the fastest
// rate a live pass measured alone take longer than SwitchoverTimeout: the
// pause would end at its deadline with the guest resumed, paused for
// nothing (TestForcedSwitchBeyondTimeoutNotPaused). The pages that
// carry data are the dirty pages times the last pass's share of data
// pages among those it classified: zero pages and holes travel as zero
// runs, which cost the link nothing (the rate's time already holds
// their reading), so a guest that clears many pages is not charged them
// at the data rate (TestForcedSwitchZeroPagesNotRefused); pages a hint
// let the pass skip count as free too, although the final pass, which
// applies no hints, sends those that hold data. That share (dataShare)
// is more lenient than estimateDowntime's (finalFree), which charges
// "free" and "unused" hinted pages as data, on purpose: the estimate
// decides whether to pause at all, and must keep max_downtime, while
// this decides whether to fail a migration at max_passes, and refuses
// only on what was measured (below); no live pass read the hinted
// pages, so that they hold data is a guess, and a switch let through on
// it is still bounded by its deadline. A forced switch whose
// estimate is over MaxDowntime but within SwitchoverTimeout goes on, as
// documented (max_passes forces it: TestForcedSwitchWithinTimeoutPauses).
//
// It refuses only on a measured figure, never on a missing or doubtful
// one, where the forced switch goes on as before and its deadline still
// bounds the pause:
//   - the last live pass must have measured a rate (sendPass takes one
//     only from a pass that sent 256 data pages or more): without one,
//     estimateDowntime guesses 100 000 pages/s, and its data share is
//     unknown (TestForcedSwitchUnmeasuredRateNotRefused);
//   - the rate is the fastest a live pass measured (peakRate), not the
//     last pass's: one slow pass (a link congested for a while) says
//     little of the final pass, which may move as fast as the link did
//     before (TestForcedSwitchTransientSlowPassNotRefused);
//   - under a bandwidth cap, a rate of at least capBoundShare of the cap
//     may be the cap's, while the final pass is uncapped and may go much
//     faster (TestForcedSwitchCapBoundNotRefused); only a fastest rate
//     clearly below the cap (the link is slower) counts;
//   - the round trips in the estimate are left out: a Flush's sample
//     may include the drain of a deep queue (rttMeter), which the pages'
//     time already counts.
//
// What it cannot do: it does not see pages the guest writes after the
// last live pass's sync, nor the state's size, nor a link that is
// slower for good than at its fastest pass, nor hinted pages that hold
// data; those make a switch it lets through still miss its deadline
// (then the guest resumes, as before). Nor can it tell a slow link from
// a sender that the running guest slowed (its vCPUs competing with the
// sender for the CPU or memory bandwidth), nor see a link that speeds
// up at the pause: the final pass, with the guest paused, may then go
// much faster than every live pass, and a switch that would have
// finished is refused (the migration fails, the guest running on the
// source; a larger SwitchoverTimeout lets it switch). It refuses
// nothing in post-copy: a source that can switch to post-copy at
// MaxPasses (postcopyWhy) does so before this is asked.
func (s *sender) forcedSwitchRefused() error {
	if s.estimate <= s.opt.MaxDowntime || s.pass < s.opt.MaxPasses {
		return nil // converged: not a forced switch
	}
	if s.ratePass != s.pass || s.rate <= 0 {
		return nil
	}
	bytesPerSec := s.peakRate * framework.PageSize
	if s.opt.Bandwidth > 0 && bytesPerSec >= capBoundShare*float64(s.opt.Bandwidth) {
		return nil
	}
	data := uint64(math.Ceil(float64(s.remaining) * s.dataShare))
	floor := s.syncTook + downtimeAt(data, s.peakRate)
	if floor <= s.opt.SwitchoverTimeout {
		return nil
	}
	s.rep.Passes = s.pass
	return fmt.Errorf("%w in max_passes %d: estimated downtime %v is beyond switchover_timeout %v "+
		"(the final dirty sync and the %d of the %d dirty pages that carry data at the last pass's share, "+
		"at the %.1f MB/s the fastest live pass moved, alone take %v); "+
		"the guest was not paused and keeps running on the source; %s",
		ErrNotConverged, s.opt.MaxPasses, s.estimate.Round(time.Millisecond), s.opt.SwitchoverTimeout,
		data, s.remaining, bytesPerSec/1e6, floor.Round(time.Millisecond), s.convergeAdvice())
}

// convergeAdvice says what lets a migration that did not converge
// finish: post-copy only where this destination could serve it.
func (s *sender) convergeAdvice() string {
	const more = "give the migration more bandwidth (a faster link) or the guest a lower write rate, or raise switchover_timeout"
	if s.maySwitch() && !s.pcReady {
		return more + " (post-copy cannot help: the destination cannot serve it, see the log)"
	}
	return more + `, or set postcopy = "auto"`
}
