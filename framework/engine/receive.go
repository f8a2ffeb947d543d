package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// Receive accepts one incoming migration into dst through tr, which must
// not be open yet: it waits for the source, checks that both sides have
// the same RAM layout, lets the transport write pages, loads the state and,
// once the source committed, resumes the VM. Any error leaves dst not
// running; the caller should then discard it.
func Receive(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options) (Report, error) {
	opt.defaults()
	start := time.Now()
	var rep Report
	layout := dst.RAM()
	err := receive(ctx, dst, tr, opt, layout, &rep, start)
	rep.TotalMS = time.Since(start).Milliseconds()
	rep.TotalPages = layout.Pages()
	switch {
	case err == nil:
		rep.Status = "completed"
	case errors.Is(err, context.Canceled):
		rep.Status, rep.Error = "cancelled", err.Error()
	default:
		rep.Status, rep.Error = "failed", err.Error()
	}
	opt.Progress(Progress{Phase: PhaseDone, BytesWire: rep.BytesWire, PagesSent: rep.PagesSent,
		PagesZero: rep.PagesZero, Elapsed: time.Since(start), TotalPages: rep.TotalPages})
	return rep, err
}

func receive(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options,
	layout framework.Layout, rep *Report, start time.Time) error {
	if err := layout.Check(); err != nil {
		return err
	}
	files, ram, err := RAMFiles(layout)
	if err != nil {
		return err
	}
	defer closeFiles(files)
	opt.Progress(Progress{Phase: PhaseWaiting, TotalPages: layout.Pages()})
	if err := openTransport(ctx, tr, transport.OpenRequest{Role: transport.RoleReceive, Config: opt.Transport, RAM: ram, Files: files, Credentials: opt.Credentials}, rep); err != nil {
		return fmt.Errorf("open transport: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if st, err := tr.Stats(sctx); err == nil {
			rep.BytesWire, rep.PagesSent, rep.PagesZero = st.BytesWire, st.PagesData, st.PagesZero
		}
		cancel()
		tr.Close()
	}()
	r := &receiver{tr: tr, dst: dst, layout: layout, opt: opt, start: start}
	err = r.loop(ctx)
	if r.check != nil {
		r.check.close()
	}
	if err != nil && !r.abortedBySource {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: []byte(err.Error())})
		cancel()
	}
	return err
}

type receiver struct {
	tr              transport.Transport
	dst             framework.Target
	layout          framework.Layout
	opt             Options
	start           time.Time
	state           []byte
	stateGot        uint64
	check           *checker // page-exact check in progress
	helloSeen       bool
	loaded          bool
	abortedBySource bool
}

// loop handles the source's messages until COMMIT (nil) or a failure.
func (r *receiver) loop(ctx context.Context) error {
	for {
		m, err := r.tr.RecvMessage(ctx)
		if err != nil {
			return fmt.Errorf("migration stream: %w", err)
		}
		done, err := r.handle(ctx, m)
		if err != nil || done {
			return err
		}
	}
}

func (r *receiver) handle(ctx context.Context, m transport.Message) (bool, error) {
	switch {
	case m.Kind == msgAbort:
		r.abortedBySource = true
		return false, fmt.Errorf("source aborted the migration: %s", m.Payload)
	case m.Kind == msgHello && !r.helloSeen:
		h, err := decodeHello(m.Payload)
		if err != nil {
			return false, err
		}
		if err := r.layout.Same(h.layout()); err != nil {
			return false, fmt.Errorf("the source's RAM layout does not match this VM's: %w "+
				"(start the destination with the same memory size as the source)", err)
		}
		r.helloSeen = true
		r.opt.Progress(Progress{Phase: PhaseBulk, TotalPages: r.layout.Pages(), Elapsed: time.Since(r.start)})
		return false, r.tr.SendMessage(ctx, transport.Message{Kind: msgReady})
	case m.Kind == msgState && r.helloSeen && !r.loaded:
		return false, r.stateChunk(ctx, m.Payload)
	case m.Kind == msgHashes && r.loaded:
		return false, r.hashes(ctx, m.Payload)
	case m.Kind == msgCommit && r.loaded:
		if err := r.dst.Resume(); err != nil {
			return false, fmt.Errorf("resume the migrated VM: %w", err)
		}
		return true, nil
	}
	return false, fmt.Errorf("%w: unexpected message %d (hello=%v loaded=%v)", errMalformed, m.Kind, r.helloSeen, r.loaded)
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
		r.opt.Progress(Progress{Phase: PhaseState, TotalPages: r.layout.Pages(), Elapsed: time.Since(r.start)})
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
	r.loaded = true
	return r.tr.SendMessage(ctx, transport.Message{Kind: msgLoaded})
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
