package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Send migrates src away: Open, Session.Send, then Close: it returns
// once every plugin process is gone. host offers the VMM's capabilities
// to hint providers; nil offers none (providers that need one report
// not-supported). The report is the engine's, with the providers that
// could not start added to Report.Hints and SetupMS set; when the
// transport cannot start the report says failed (cancelled if ctx was)
// and nothing was sent.
func Send(ctx context.Context, src framework.Source, host hint.Host, spec Spec) (engine.Report, error) {
	spec.Role = transport.RoleSend
	s, err := Open(ctx, src.RAM(), spec)
	if err != nil {
		return failed(err), err
	}
	defer s.Close()
	return s.Send(ctx, src, host)
}

// Receive migrates a VM into dst: Open, Session.Receive, then Close.
func Receive(ctx context.Context, dst framework.Target, spec Spec) (engine.Report, error) {
	spec.Role = transport.RoleReceive
	s, err := Open(ctx, dst.RAM(), spec)
	if err != nil {
		return failed(err), err
	}
	defer s.Close()
	return s.Receive(ctx, dst)
}

// failed is the report of a session that ended before the engine ran:
// cancelled if ctx was, like the engine's.
func failed(err error) engine.Report {
	st := engine.StatusFailed
	if errors.Is(err, context.Canceled) {
		st = engine.StatusCancelled
	}
	return engine.Report{Status: st, Error: err.Error()}
}

// Session is one migration whose transport plugin runs and whose job
// block was accepted: Open starts it, Send or Receive runs it once and
// returns its report at once, Close waits until its plugins are gone.
// A VMM that must answer "did it start" before the migration runs (a
// control command) calls Open itself, then Send or Receive on another
// goroutine, then Close.
type Session struct {
	spec    Spec
	layout  framework.Layout      // Open's, a copy: Send and Receive want the VM's RAM to be it (checkRAM)
	files   []*os.File            // the guest RAM files every plugin gets
	fileIDs []fileID              // files' device and inode, taken by Open: checkRAM needs no file Close may be closing
	ram     []transport.RAMRegion // the layout, naming files by index
	tr      transport.Transport
	hints   *hintSet      // the providers, starting since Open
	opened  time.Duration // how long Open took: part of SetupMS
	used    atomic.Bool   // Send, Receive or Close was called
	once    sync.Once     // the teardown was started
	done    chan struct{} // closed when the teardown is over
}

// Open starts the transport plugin with the files of ram for
// spec.Role (engine.RAMFiles: read-only to send, writable to receive)
// and checks spec.Transport.Config against the schema it reports. On
// the sending side every hint provider of spec starts at the same time,
// in the background (Send configures them); a receiving session starts
// none. ctx bounds the transport's start; cancelling it later kills
// nothing. On error nothing is left running or open; a layout that
// framework.Layout.Check refuses (no region, overlapping, unaligned,
// wrapping) fails before any plugin starts.
func Open(ctx context.Context, ram framework.Layout, spec Spec) (*Session, error) {
	start := time.Now()
	if err := checkRole(spec.Role); err != nil {
		return nil, err
	}
	if err := Check(spec); err != nil {
		return nil, err
	}
	// Before any plugin starts: the engine refuses such a layout too,
	// but only after the transport plugin and the providers ran.
	if err := ram.Check(); err != nil {
		return nil, fmt.Errorf("session: guest RAM layout: %w (no plugin was started)", err)
	}
	if spec.Log == nil {
		spec.Log = slog.Default()
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("ferry[%d]", os.Getpid())
	}
	if spec.Role == transport.RoleReceive {
		spec.Hints = nil
	}
	files, regions, err := engine.RAMFiles(ram, spec.Role)
	if err != nil {
		return nil, err
	}
	ids, err := fileIDsOf(files)
	if err != nil {
		closeAll(files)
		return nil, err
	}
	s := &Session{spec: spec, layout: slices.Clone(ram), files: files, fileIDs: ids, ram: regions, done: make(chan struct{})}
	s.hints = s.startHints(ctx)
	if err := s.launchTransport(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.opened = time.Since(start)
	return s, nil
}

// launchTransport starts the plugin (or takes the in-process transport)
// and coerces its block.
func (s *Session) launchTransport(ctx context.Context) error {
	p := s.spec.Transport
	name := "transport plugin " + p.Path
	if tr := s.spec.TransportInProcess; tr != nil {
		s.tr, name = tr, "in-process transport"
	} else {
		tr, err := transport.Launch(ctx, p.Path, s.files, hclogFor(s.spec.Log, p.Path))
		if err != nil {
			return err // "start transport plugin <path>: ..."
		}
		s.tr = tr
	}
	sch, err := s.tr.Schema(ctx)
	if err == nil {
		s.spec.Engine.Transport, err = schema.Coerce(sch, p.Config)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// use claims the session for its one migration, on side role.
func (s *Session) use(role transport.Role) error {
	if s.spec.Role != role {
		return fmt.Errorf("session: opened to %v, so it cannot %v", s.spec.Role, role)
	}
	if !s.used.CompareAndSwap(false, true) {
		return errUsed
	}
	return nil
}

// errUsed: a Session runs one migration.
var errUsed = errors.New("session: Send or Receive already called, or Close")

// Send waits for the hint providers (configuring each with src and host
// as soon as it runs), runs engine.Send and returns its report without
// waiting for the plugin processes to exit: they are stopped in the
// background, and Close waits for that.
//
// src must be the VM whose RAM was given to Open: first of all, src.RAM()
// must have as many regions as Open's layout, each with the same GPA,
// Size and Offset and the same file (device and inode: a duplicate
// descriptor passes). If not, Send returns a failed report and an error
// naming the region and what differs; no provider was configured, the
// engine did not run, src was not touched, and the session is used up
// (Close tears it down). Not checked: that src.Memory maps those files.
func (s *Session) Send(ctx context.Context, src framework.Source, host hint.Host) (engine.Report, error) {
	if err := s.use(transport.RoleSend); err != nil {
		return failed(err), err
	}
	defer s.release()
	if err := s.checkRAM(src.RAM()); err != nil {
		return failed(err), err
	}
	start := time.Now()
	sources, failedHints := s.hints.ready(ctx, s.hintVM(src), host)
	opt := s.options()
	opt.Hints = sources
	setup := s.opened + time.Since(start)
	rep, err := engine.Send(ctx, src, &engineTransport{Transport: s.tr}, opt)
	rep.Hints = append(rep.Hints, failedHints...)
	rep.SetupMS = setup.Milliseconds()
	return rep, err
}

// Receive runs engine.Receive into dst and returns its report without
// waiting for the transport's process to exit (Close waits). dst must
// be the VM whose RAM was given to Open, checked as Send checks src: if
// its RAM is not that, Receive returns a failed report and the error,
// the engine did not run, and nothing was written into either RAM.
func (s *Session) Receive(ctx context.Context, dst framework.Target) (engine.Report, error) {
	if err := s.use(transport.RoleReceive); err != nil {
		return failed(err), err
	}
	defer s.release()
	if err := s.checkRAM(dst.RAM()); err != nil {
		return failed(err), err
	}
	start := time.Now()
	setup := s.opened + time.Since(start)
	rep, err := engine.Receive(ctx, dst, &engineTransport{Transport: s.tr}, s.options())
	rep.SetupMS = setup.Milliseconds()
	return rep, err
}

// engineTransport is the transport as the engine sees it: its Close
// (usually the engine's last call) is left to the session's teardown,
// which closes the transport and stops its process after the report.
//
// A session the engine gives up on while its connection may still be
// up (post-copy's reconnect on either side after a stall, a malformed
// message or a failed call, the source's after a RESUME that failed; a
// destination refusing a silent or foreign session) is ended through
// transport.CloseHolding, which engineTransport forwards at once
// (CloseHoldingListeners): the session and its connection end then,
// and a launched plugin's process is stopped, while the listening
// sockets stay held for the next Open. Stats then report the ended
// session's totals (a launched plugin's after its Close), which the
// engine counts. Only the engine's Close waits for the teardown: the
// report does not wait for the plugin's exit, and what that last close
// moves is not counted. An engine that calls Close and then Open again
// (a reconnect through plain Close) gets the session ended by that Open,
// so nothing of the old session outlives the next one; what it cannot
// do is end that session any earlier, or count what its close moved.
//
// A launched plugin's new session runs in a new process, which takes
// the held sockets (transport.Launch).
type engineTransport struct {
	transport.Transport
	closed atomic.Bool // the engine called Close: a later Open is a reconnect
}

var _ transport.ListenerHolder = (*engineTransport)(nil)

// CloseHoldingListeners implements transport.ListenerHolder: it ends
// the session now (transport.CloseHolding on the transport: a launched
// plugin's process is stopped and waited for; a transport that is not
// a ListenerHolder is closed), holding the listening sockets of one that
// is. The teardown's Close after Send or Receive still lets them go.
func (t *engineTransport) CloseHoldingListeners() error {
	t.closed.Store(false) // ended here: the next Open has nothing to close
	return transport.CloseHolding(t.Transport)
}

// Answer implements transport.Answerer when the transport does.
func (t *engineTransport) Answer(ctx context.Context, kind uint32, owed *transport.Owed) error {
	a, ok := t.Transport.(transport.Answerer)
	if !ok {
		return fmt.Errorf("%w: the transport does not answer page requests itself", transport.ErrNotSupported)
	}
	return a.Answer(ctx, kind, owed)
}

// Open implements transport.Transport.Open.
func (t *engineTransport) Open(ctx context.Context, req transport.OpenRequest) error {
	if t.closed.Swap(false) {
		// A reconnect: the listening port stays bound meanwhile, so no
		// one else on the host can take it (transport.Listen).
		transport.CloseHolding(t.Transport)
	}
	return t.Transport.Open(ctx, req)
}

// Close implements transport.Transport.Close: nothing yet (teardown),
// unless the engine opens the transport again.
func (t *engineTransport) Close() error {
	t.closed.Store(true)
	return nil
}

func (s *Session) options() engine.Options {
	opt := s.spec.Engine
	opt.Log = s.spec.Log
	opt.Progress = s.spec.Progress
	return opt
}

// Close ends the session and waits until it is over: the transport is
// closed, every plugin process (transport, providers) has been stopped
// and waited for, and the RAM files are closed. After Send or Receive
// it waits for the teardown they started; for a Session that will not
// run it does the teardown itself. It is idempotent and safe from any
// goroutine. To stop a migration that runs, cancel the context given to
// Send or Receive instead.
func (s *Session) Close() {
	s.release()
	<-s.done
}

// release starts the teardown in the background, once.
func (s *Session) release() {
	s.once.Do(func() {
		s.used.Store(true)
		go s.teardown()
	})
}

// teardown closes the transport and stops every plugin process at once,
// then closes the RAM files.
func (s *Session) teardown() {
	defer close(s.done)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(s.hints.stop)
	if s.tr != nil {
		wg.Go(func() { s.tr.Close() })
	}
	wg.Wait()
	closeAll(s.files)
	s.spec.Log.Debug("session: plugins stopped", "ms", sinceMS(start))
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
