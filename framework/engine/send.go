package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
)

// batchPages bounds the pages handed to the transport in one SendPages.
const batchPages = 2048

// sender is one outgoing migration.
type sender struct {
	src    framework.Source
	tr     transport.Transport
	opt    Options
	layout framework.Layout
	mem    [][]byte
	holes  []holes
	base   []uint64 // first page index of each region

	start     time.Time
	pass      int
	phase     string
	rep       Report
	rate      float64 // data pages per second, last measured
	msgs      chan transport.Message
	recvErr   chan error
	capStart  time.Time
	capBytes  uint64
	estimate  time.Duration
	remaining uint64
	pending   *bitmap.Bitmap // pages dirtied during the last live pass
	gen       uint64         // dirty syncs so far: the current hint generation
	freeSent  *bitmap.Bitmap // pages whose last send was a skip on a free/unused hint
	hints     *hinter
}

// Send migrates src's VM through tr, which must not be open yet. On
// success the VM stays paused (it now runs on the destination) and the
// caller should end it; on any failure before the destination confirmed
// the load, Send resumes the VM and returns the error with the report.
func Send(ctx context.Context, src framework.Source, tr transport.Transport, opt Options) (Report, error) {
	opt.defaults()
	s := &sender{src: src, tr: tr, opt: opt, layout: src.RAM(), start: time.Now(), phase: PhaseSetup}
	s.hints = newHinter(opt.Hints, s.layout.Pages(), opt.Log.Info)
	if len(opt.Hints) > 0 {
		s.freeSent = bitmap.New(s.layout.Pages())
	}
	err := s.run(ctx)
	s.hints.close(true)
	s.rep.Hints = s.hints.stats
	for _, st := range s.hints.stats {
		if st.Skipped > 0 {
			if s.rep.SkippedBy == nil {
				s.rep.SkippedBy = map[string]uint64{}
			}
			s.rep.SkippedBy[st.Name] += st.Skipped
		}
	}
	s.rep.TotalMS = time.Since(s.start).Milliseconds()
	s.rep.TotalPages = s.layout.Pages()
	if secs := time.Since(s.start).Seconds(); secs > 0 {
		s.rep.ThroughputMB = float64(s.rep.BytesWire) / secs / 1e6
	}
	switch {
	case err == nil:
		s.rep.Status = "completed"
	case errors.Is(err, context.Canceled):
		s.rep.Status, s.rep.Error = "cancelled", err.Error()
	default:
		s.rep.Status, s.rep.Error = "failed", err.Error()
	}
	s.phase = PhaseDone
	s.progress()
	return s.rep, err
}

func (s *sender) run(ctx context.Context) (err error) {
	if err := s.layout.Check(); err != nil {
		return err
	}
	files, ram, err := RAMFiles(s.layout)
	if err != nil {
		return err
	}
	defer closeFiles(files)
	for i, r := range s.layout {
		s.mem = append(s.mem, s.src.Memory(i))
		s.holes = append(s.holes, holes{fd: int(files[ram[i].File].Fd())})
		if i == 0 {
			s.base = append(s.base, 0)
		} else {
			s.base = append(s.base, s.base[i-1]+s.layout[i-1].Size/framework.PageSize)
		}
		if uint64(len(s.mem[i])) != r.Size {
			return fmt.Errorf("memory of region %d is %d bytes, layout says %d", i, len(s.mem[i]), r.Size)
		}
	}
	if err := openTransport(ctx, s.tr, transport.OpenRequest{Role: transport.RoleSend, Config: s.opt.Transport, RAM: ram, Files: files, Credentials: s.opt.Credentials}, &s.rep); err != nil {
		return fmt.Errorf("open transport: %w", err)
	}
	defer func() {
		s.captureStats()
		s.tr.Close()
	}()
	rctx, stopRecv := context.WithCancel(ctx)
	s.msgs, s.recvErr = make(chan transport.Message, 4), make(chan error, 1)
	go s.receive(rctx)
	defer func() {
		stopRecv()
		<-s.recvErr // joined: receive returns on rctx
	}()
	if err := s.handshake(ctx); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			s.abort(err)
		}
	}()
	if err := s.src.StartDirtyLog(); err != nil {
		return fmt.Errorf("start dirty log: %w", err)
	}
	defer s.src.StopDirtyLog()
	if err := s.live(ctx); err != nil {
		return err
	}
	committed, err = s.switchOver(ctx)
	return err
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// receive forwards the destination's messages until ctx ends.
func (s *sender) receive(ctx context.Context) {
	for {
		m, err := s.tr.RecvMessage(ctx)
		if err != nil {
			close(s.msgs)
			s.recvErr <- err
			return
		}
		select {
		case s.msgs <- m:
		case <-ctx.Done():
			close(s.msgs)
			s.recvErr <- ctx.Err()
			return
		}
	}
}

// await returns the next message from the destination; ABORT becomes an error.
func (s *sender) await(ctx context.Context, want uint32) error {
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return fmt.Errorf("destination went away: %w", transport.ErrClosed)
		}
		if m.Kind == msgAbort {
			return fmt.Errorf("destination aborted: %s", m.Payload)
		}
		if m.Kind != want {
			return fmt.Errorf("%w: message %d from the destination, want %d", errMalformed, m.Kind, want)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sender) handshake(ctx context.Context) error {
	if err := s.tr.SendMessage(ctx, transport.Message{Kind: msgHello, Payload: encodeHello(s.layout)}); err != nil {
		return fmt.Errorf("send HELLO: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.await(hctx, msgReady); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return nil
}

// abort tells the destination why we give up and gets the VM running.
func (s *sender) abort(cause error) {
	if cause == nil {
		cause = errors.New("source gave up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msg := cause.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	_ = s.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: []byte(msg)})
}

// captureStats records the transport's byte count while the session is open.
func (s *sender) captureStats() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := s.tr.Stats(ctx); err == nil {
		s.rep.BytesWire = st.BytesWire
	}
}
