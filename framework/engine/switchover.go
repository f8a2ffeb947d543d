package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// The source's side of the handover: pause, the last pages and the state
// under the switch-over deadline, then COMMIT and RUNNING (see doc.go).

// switchOver pauses the VM and hands it over: final pass, state and
// LOADED under the switch-over deadline, then COMMIT and RUNNING (commit).
// Any failure before COMMIT resumes the VM, a cancel too; from COMMIT on
// a cancel is ignored (hold): cutting the COMMIT write or the wait for
// RUNNING short could only leave the handover unknown, while the
// destination answers within SwitchoverTimeout.
func (s *sender) switchOver(ctx context.Context) error {
	if err := s.ho.move(HandoverSwitchover); err != nil {
		return err
	}
	s.setPhase(PhaseStop)
	_, err := s.pauseAndSend(ctx, s.toDestination)
	if err == nil && s.opt.VerifyPages {
		err = s.pageCheck(ctx)
	}
	if err == nil && !s.held.hold(false) {
		err = fmt.Errorf("cancelled before COMMIT: %w", s.held.Err())
	}
	if err != nil {
		// A partial pause must not leave vCPUs stuck either.
		if rerr := s.src.Resume(); rerr != nil {
			s.opt.Log.Error("resume after failed migration", "err", rerr)
		}
		return err
	}
	return s.commit(ctx)
}

// pauseAndSend pauses the VM and runs send, both under the switch-over
// deadline (sctx; ctx outlives it), send with the time the pause began,
// which it returns; an error the deadline caused says so.
func (s *sender) pauseAndSend(ctx context.Context, send func(sctx context.Context, paused time.Time) error) (time.Time, error) {
	paused := time.Now()
	sctx, cancel := context.WithTimeout(ctx, s.opt.SwitchoverTimeout)
	defer cancel()
	err := s.src.Pause(sctx)
	if err == nil {
		err = send(sctx, paused)
	} else {
		err = fmt.Errorf("pause: %w", err)
	}
	if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("switch-over took longer than its deadline (switchover_timeout %v): %w", s.opt.SwitchoverTimeout, err)
	}
	return paused, err
}

// toDestination sends the last pages and the state of the paused VM and
// waits for the destination's LOADED; ctx carries the switch-over deadline,
// which the final Flush honours too.
func (s *sender) toDestination(ctx context.Context, paused time.Time) error {
	if err := s.sync(s.pending); err != nil {
		return fmt.Errorf("final %w", err)
	}
	if _, err := s.sendPass(ctx, s.pending, false); err != nil {
		return err
	}
	if err := s.sendState(ctx); err != nil {
		return err
	}
	s.rep.DowntimeMS = time.Since(paused).Milliseconds() // without the page check
	return nil
}

// sendState saves the paused VM's state, sends it in STATE chunks and
// waits for the destination's LOADED.
func (s *sender) sendState(ctx context.Context) error {
	s.setPhase(PhaseState)
	state, err := s.src.SaveState(ctx)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	s.rep.StateBytes = len(state)
	for off := 0; off < len(state) || off == 0; off += stateChunk {
		end := min(off+stateChunk, len(state))
		chunk := encodeStateChunk(uint64(len(state)), uint64(off), state[off:end])
		if err := s.tr.SendMessage(ctx, transport.Message{Kind: msgState, Payload: chunk}); err != nil {
			return fmt.Errorf("send state: %w", err)
		}
		if end == len(state) {
			break
		}
	}
	if err := s.await(ctx, msgLoaded); err != nil {
		return fmt.Errorf("waiting for the destination to load: %w", err)
	}
	return nil
}

// pageCheck runs the page-exact check (a test mode, not under the
// switch-over deadline).
func (s *sender) pageCheck(ctx context.Context) error {
	verifyStart := time.Now()
	s.rep.VerifyStrict = s.opt.VerifyFree
	checked, err := s.sendHashes(ctx)
	if err != nil {
		return fmt.Errorf("send page hashes: %w", err)
	}
	if err := s.awaitVerified(ctx, checked); err != nil {
		return err
	}
	s.rep.PagesChecked = s.layout.Pages()
	s.rep.VerifyMS = time.Since(verifyStart).Milliseconds()
	return nil
}

// commit writes COMMIT and waits for RUNNING. From the first byte of
// COMMIT on, the destination may run the VM: a lost connection or a
// timeout leaves the VM paused here (HandoverUnknown); only an ABORT
// (the destination will never run it) resumes it, also one that came
// before a COMMIT write that failed (answeredBefore). In post-copy RUNNING
// moves the handover to HandoverPostcopy: the pages are still owed.
func (s *sender) commit(ctx context.Context) error {
	if err := s.ho.move(HandoverCommitting); err != nil {
		return err
	}
	// Said at once: from here a cancel no longer stops the migration (in
	// post-copy it is ignored), and a VMM answering one must know.
	s.progress(true)
	cctx, cancel := context.WithTimeout(ctx, s.opt.SwitchoverTimeout)
	defer cancel()
	s.rep.Passes = s.pass + 1
	var m transport.Message
	err := s.tr.SendMessage(cctx, transport.Message{Kind: msgCommit})
	if err == nil {
		m, err = s.next(cctx)
	} else if am, aerr, settled := s.answeredBefore(cctx); settled {
		m, err = am, aerr
	} else {
		cause := fmt.Errorf("send COMMIT: %w (then %v)", err, aerr)
		if s.pc != nil { // post-copy: COMMIT may have arrived (below)
			return s.recommit(ctx, cause)
		}
		return s.unknown(cause)
	}
	// Post-copy: no more answers, whatever happens now. A BROKEN is
	// answered on this session (pcSend.broken): an answer in flight may
	// finish first; every other end gives the session up.
	if errors.Is(err, errDestinationBroken) {
		s.pc.stopServing()
	} else if err != nil || m.Kind != msgRunning {
		s.pc.cutServing()
	}
	switch {
	case errors.Is(err, errDestinationAborted):
		if merr := s.ho.move(HandoverFailed); merr != nil {
			return merr
		}
		rerr := s.src.Resume()
		if s.pc != nil {
			// Heard, after the resume (answer may take answerTimeout):
			// a post-copy destination that refused COMMIT waits for
			// this, else listens for a RESUME (pcRecv.refuseCommit).
			s.pc.answer(msgAbort)
		}
		if rerr != nil {
			return fmt.Errorf("%w; resume here: %v", err, rerr)
		}
		return fmt.Errorf("the destination could not run the VM, it runs here again: %w", err)
	case errors.Is(err, errDestinationBroken) && s.pc != nil:
		return s.pc.broken(err) // it ran the VM, then lost it: never resume here
	case err != nil && s.pc != nil:
		return s.recommit(ctx, fmt.Errorf("waiting for RUNNING: %w", err))
	case err != nil:
		return s.unknown(fmt.Errorf("waiting for RUNNING: %w", err))
	case m.Kind != msgRunning:
		return s.unknown(fmt.Errorf("%w: message %d from the destination instead of RUNNING", errMalformed, m.Kind))
	}
	if s.pc != nil { // the VM runs there; pages still owed (postcopy_send.go)
		return s.ho.move(HandoverPostcopy)
	}
	return s.ho.move(HandoverCompleted)
}

// answeredBefore reads, after a failed COMMIT write, what the
// destination had sent before its end, at most a second (and ctx): a
// broken session ends the receive goroutine at once. An ABORT (it never
// runs the VM: cancelled after LOADED, it answered and closed its end),
// a RUNNING (COMMIT got through after all) or, in post-copy, a BROKEN
// settles the handover as if COMMIT had been written: settled, with
// next's message and error for commit to act on. Anything else settles
// nothing, and err is the cause to report.
func (s *sender) answeredBefore(ctx context.Context) (m transport.Message, err error, settled bool) {
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err = s.next(wctx)
	switch {
	case errors.Is(err, errDestinationAborted), errors.Is(err, errDestinationBroken) && s.pc != nil:
		return m, err, true
	case err == nil && m.Kind == msgRunning:
		return m, nil, true
	case err == nil:
		err = fmt.Errorf("%w: %s from the destination after a failed COMMIT", errMalformed, msgName(m.Kind))
	}
	return m, err, false
}

// recommit settles a post-copy COMMIT whose answer was lost with the
// connection: a destination that got COMMIT runs the VM and waits for
// its pages, listening for this side to reconnect. If it answers RESUME
// with MISSING, it runs the VM and post-copy goes on; if it answers
// ABORT, it never got COMMIT (pcRecv.uncommitted), refused it
// (pcRecv.refuseCommit) or failed before it ran the VM (pcRecv.commit:
// its fault service failed, its caller cancelled, its Resume failed;
// abortCommit) and will never run the VM, so the VM resumes here; if
// none answers within ReconnectTimeout, the handover is unknown.
func (s *sender) recommit(ctx context.Context, cause error) error {
	s.pc.cutServing() // the session broke around COMMIT
	err := s.pc.reconnect(ctx, cause)
	if errors.Is(err, errDestinationAborted) {
		if merr := s.ho.move(HandoverFailed); merr != nil {
			return merr
		}
		if rerr := s.src.Resume(); rerr != nil {
			return fmt.Errorf("%w; resume here: %v", err, rerr)
		}
		return fmt.Errorf("the connection broke around COMMIT (%v), and the destination never acted on it (it never received it, refused it, or failed before it ran the VM): the VM runs here again: %w", cause, err)
	}
	if err != nil {
		return err
	}
	return s.ho.move(HandoverPostcopy)
}

// unknown records that the handover's outcome is unknown: the VM stays
// paused here.
func (s *sender) unknown(cause error) error {
	if err := s.ho.move(HandoverUnknown); err != nil {
		return err
	}
	s.opt.Log.Error("handover unknown: the VM stays paused here until resolved", "err", cause)
	return fmt.Errorf("%w (after COMMIT: %v)", ErrHandoverUnknown, cause)
}
