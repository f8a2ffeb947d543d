package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// Receive accepts one incoming migration into dst through tr, which must
// not be open yet: it waits for the source (at most IncomingTimeout),
// checks that both sides have the same RAM layout, lets the transport
// write pages, loads the state and answers LOADED; on COMMIT it resumes
// the VM and answers RUNNING.
//
// A failure before LOADED, an ABORT, or a VM that will not resume leaves
// dst not running and tells the source (ABORT); the caller should then
// discard dst. If the stream ends (or goes quiet for SwitchoverTimeout)
// after LOADED and before COMMIT, the source may have written COMMIT:
// Receive leaves dst paused and returns an error wrapping
// ErrHandoverUnknown. The caller must then neither resume nor discard
// dst until the source was asked (docs/HANDOVER.md).
func Receive(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options) (Report, error) {
	opt.defaults()
	var rep Report
	r := newReceiver(dst, tr, opt)
	err := r.run(ctx, &rep)
	if err != nil && !r.ho.get().Final() {
		_ = r.ho.move(HandoverFailed) // before the transport opened: nobody to tell
	}
	rep.Handover = r.ho.get()
	rep.TotalMS = time.Since(r.start).Milliseconds()
	rep.TotalPages = r.layout.Pages()
	rep.Status = status(err)
	if err != nil {
		rep.Error = err.Error()
	}
	r.phase = PhaseDone // from any phase (phaseNext)
	opt.Progress(Progress{Phase: r.phase, BytesWire: rep.BytesWire, PagesSent: rep.PagesSent,
		PagesZero: rep.PagesZero, Elapsed: time.Since(r.start), TotalPages: rep.TotalPages, Handover: rep.Handover})
	return rep, err
}

func (r *receiver) run(ctx context.Context, rep *Report) error {
	if err := r.layout.Check(); err != nil {
		return err
	}
	files, ram, err := RAMFiles(r.layout)
	if err != nil {
		return err
	}
	defer closeFiles(files)
	r.progress()
	if err := r.open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: r.opt.Transport, RAM: ram, Files: files,
		Credentials: r.opt.Credentials}, rep); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if st, err := r.tr.Stats(sctx); err == nil {
			rep.BytesWire, rep.PagesSent, rep.PagesZero = st.BytesWire, st.PagesData, st.PagesZero
		}
		cancel()
		r.tr.Close()
	}()
	err = r.loop(ctx)
	if r.check != nil {
		r.check.close()
	}
	if err != nil {
		r.giveUp(err)
	}
	return err
}

// giveUp ends a failed migration: from a state that is not final, this
// side fails and tells the source (ABORT), which may then resume. A
// final state already says what happened: failed on the source's ABORT
// (nothing to tell), or handover-unknown (the source may have
// committed: never ABORT).
func (r *receiver) giveUp(cause error) {
	if r.ho.get().Final() {
		return
	}
	if err := r.ho.move(HandoverFailed); err != nil {
		r.opt.Log.Error("give up", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msg := cause.Error()
	if len(msg) > maxAbortReason {
		msg = msg[:maxAbortReason]
	}
	_ = r.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: []byte(msg)})
}

// open opens the transport within IncomingTimeout and records in rep how
// the session is protected.
func (r *receiver) open(ctx context.Context, req transport.OpenRequest, rep *Report) error {
	octx := ctx
	if r.opt.IncomingTimeout > 0 {
		var cancel context.CancelFunc
		octx, cancel = context.WithTimeout(ctx, r.opt.IncomingTimeout)
		defer cancel()
	}
	err := openTransport(octx, r.tr, req, rep)
	switch {
	case err == nil:
		return nil
	case octx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		return fmt.Errorf("no source connected within incoming_timeout %v (is the source's transport address right?): %w",
			r.opt.IncomingTimeout, err)
	}
	return fmt.Errorf("open transport: %w", err)
}

// receiver is one incoming migration. Its state is ho: what may arrive
// next is receiverAccepts[ho] (messages.go), and whether to tell the
// source when it fails is ho too (giveUp).
type receiver struct {
	tr       transport.Transport
	dst      framework.Target
	layout   framework.Layout
	opt      Options
	start    time.Time
	phase    Phase
	state    []byte
	stateGot uint64
	check    *checker // page-exact check in progress
	ho       handoverState
}

// newReceiver is a receiver waiting for its source; opt has its defaults.
func newReceiver(dst framework.Target, tr transport.Transport, opt Options) *receiver {
	r := &receiver{tr: tr, dst: dst, layout: dst.RAM(), opt: opt, start: time.Now(), phase: PhaseWaiting}
	r.ho.h = HandoverWaiting
	return r
}

// setPhase moves to phase p along phaseNext and tells the caller.
func (r *receiver) setPhase(p Phase) {
	next, err := nextPhase(r.phase, p)
	if err != nil {
		r.opt.Log.Error("progress", "err", err)
	}
	if next != r.phase {
		r.phase = next
		r.progress()
	}
}

func (r *receiver) progress() {
	r.opt.Progress(Progress{Phase: r.phase, TotalPages: r.layout.Pages(), Elapsed: time.Since(r.start), Handover: r.ho.get()})
}

// loop handles the source's messages until the VM runs (nil) or a
// failure. Once LOADED is out, a silent or broken stream makes the
// handover unknown.
func (r *receiver) loop(ctx context.Context) error {
	for {
		m, err := r.recv(ctx)
		if err != nil {
			err = fmt.Errorf("migration stream: %w", err)
			if r.ho.get() == HandoverLoaded {
				return r.unknown(err)
			}
			return err
		}
		done, err := r.handle(ctx, m)
		if err != nil || done {
			return err
		}
	}
}

// recv waits for the next message; after LOADED at most SwitchoverTimeout.
func (r *receiver) recv(ctx context.Context) (transport.Message, error) {
	if r.ho.get() != HandoverLoaded {
		return r.tr.RecvMessage(ctx)
	}
	rctx, cancel := context.WithTimeout(ctx, r.opt.SwitchoverTimeout)
	defer cancel()
	return r.tr.RecvMessage(rctx)
}

// unknown records that the source may or may not have committed: the VM
// stays paused here.
func (r *receiver) unknown(cause error) error {
	if err := r.ho.move(HandoverUnknown); err != nil {
		return err
	}
	r.opt.Log.Error("handover unknown: the VM stays paused here until resolved", "err", cause)
	return fmt.Errorf("%w (after LOADED, no COMMIT: %v)", ErrHandoverUnknown, cause)
}

// handle applies one message from the source. It reports done once the
// VM runs; an error ends the migration (the caller tells the source).
func (r *receiver) handle(ctx context.Context, m transport.Message) (bool, error) {
	if h := r.ho.get(); !receiverTakes(h, m.Kind) {
		return false, fmt.Errorf("%w: unexpected %s in handover state %s", errMalformed, msgName(m.Kind), h)
	}
	switch m.Kind {
	case msgAbort:
		// The source will not commit: failed, and nothing to tell it.
		if err := r.ho.move(HandoverFailed); err != nil {
			return false, err
		}
		return false, fmt.Errorf("source aborted the migration: %s", m.Payload)
	case msgHello:
		return false, r.hello(ctx, m.Payload)
	case msgState:
		return false, r.stateChunk(ctx, m.Payload)
	case msgHashes:
		return false, r.hashes(ctx, m.Payload)
	case msgCommit:
		return true, r.commit(ctx)
	}
	return false, fmt.Errorf("engine bug: %s is in receiverAccepts but not handled", msgName(m.Kind))
}

// hello checks the source's layout and answers READY.
func (r *receiver) hello(ctx context.Context, payload []byte) error {
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	if err := r.layout.Same(h.layout()); err != nil {
		return fmt.Errorf("the source's RAM layout does not match this VM's: %w "+
			"(start the destination with the same memory size as the source)", err)
	}
	if err := r.ho.move(HandoverReceiving); err != nil {
		return err
	}
	r.setPhase(PhaseBulk)
	return r.tr.SendMessage(ctx, transport.Message{Kind: msgReady})
}

// commit runs the VM and answers RUNNING. If the VM will not resume, the
// migration fails here (and the source, told by ABORT, resumes). A lost
// RUNNING is the source's problem to resolve: the VM runs here.
func (r *receiver) commit(ctx context.Context) error {
	if err := r.dst.Resume(); err != nil {
		return fmt.Errorf("resume the migrated VM: %w", err) // giveUp: failed, ABORT
	}
	if err := r.ho.move(HandoverRunning); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, r.opt.SwitchoverTimeout)
	defer cancel()
	if err := r.tr.SendMessage(sctx, transport.Message{Kind: msgRunning}); err != nil {
		r.opt.Log.Warn("the VM runs here, but RUNNING did not reach the source; it stays paused until resolved", "err", err)
	}
	return nil
}

// stateChunk collects the state blob; when complete it loads it and
// answers LOADED.
func (r *receiver) stateChunk(ctx context.Context, payload []byte) error {
	total, off, data, err := decodeStateChunk(payload)
	if err != nil {
		return err
	}
	if r.state == nil {
		r.state = make([]byte, total)
		r.setPhase(PhaseState)
	}
	if uint64(len(r.state)) != total || off != r.stateGot {
		return fmt.Errorf("%w: STATE chunk at %d of %d, expected %d of %d", errMalformed, off, total, r.stateGot, len(r.state))
	}
	copy(r.state[off:], data)
	r.stateGot += uint64(len(data))
	if r.stateGot < total {
		return nil
	}
	if err := r.dst.LoadState(ctx, r.state); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	// From the first byte of LOADED on, the source may commit.
	if err := r.ho.move(HandoverLoaded); err != nil {
		return err
	}
	if err := r.tr.SendMessage(ctx, transport.Message{Kind: msgLoaded}); err != nil {
		return r.unknown(fmt.Errorf("send LOADED: %w", err))
	}
	return nil
}

// hashes checks a chunk of the source's page hashes; after the last one
// it answers VERIFIED.
func (r *receiver) hashes(ctx context.Context, payload []byte) error {
	if r.check == nil {
		c, err := newChecker(r.layout)
		if err != nil {
			return err
		}
		r.check = c
	}
	done, err := r.check.chunk(payload)
	if err != nil || !done {
		return err
	}
	return r.tr.SendMessage(ctx, transport.Message{Kind: msgVerified, Payload: r.check.verdict()})
}
