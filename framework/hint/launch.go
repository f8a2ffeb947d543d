package hint

import (
	"context"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// Plugin is a hint provider running in its own process, started by
// Launch. It implements Provider over gRPC; Kill stops the process.
//
// A Plugin is one process for its whole life: Close (the Provider's) ends
// a hint window and leaves the process running; Kill ends the process.
// Once the process is gone — killed, crashed or exited — every call fails
// fast with an error wrapping ErrPluginGone, and nothing restarts it: a
// dead provider means no hints, never a stalled migration. Launch a new
// Plugin to try again.
type Plugin struct {
	path string
	proc *plugproc.Process
	c    *grpcClient
	once sync.Once
	// killed: this host ended the process (Kill); its calls' errors are
	// not crashes.
	killed atomic.Bool
}

var _ Provider = (*Plugin)(nil)

// Launch starts the hint provider plugin binary at path and returns the
// Provider it serves. files are the guest RAM files: the plugin receives
// files[i] as descriptor 3+i, and the VM passed to Configure must name
// these files or others open on the same inodes (VM.Files), or use their
// indices (VM.Files nil). ctx bounds the start only; logger (nil:
// hclog.Default) receives the plugin's logs with their levels. The
// channel is plugproc.Launch's: mutual TLS with one-time certificates
// and a private socket directory.
//
// The caller must Kill the plugin when done with it, after Close(ctx,
// true) so the provider can give the guest its pages back.
func Launch(ctx context.Context, path string, files []*os.File, logger hclog.Logger) (*Plugin, error) {
	if logger == nil {
		logger = hclog.Default().Named(PluginName)
	}
	p, c, err := plugproc.Launch[*grpcClient](ctx, kind, path, files, nil, nil, &GRPCPlugin{Files: files}, logger)
	if err != nil {
		return nil, err
	}
	c.tls = p.TLS // before any Configure
	return &Plugin{path: path, proc: p, c: c}, nil
}

// Path is the plugin binary's path, as given to Launch.
func (p *Plugin) Path() string { return p.path }

// Exit says how the process ended (Exited false while it runs): its
// exit status and the last line it logged at level ERROR.
func (p *Plugin) Exit() (exited bool, status, lastError string) {
	x := p.proc.Exit()
	return x.Exited, x.Status, x.LastError
}

// Done is closed once the plugin process has exited, for whatever reason.
func (p *Plugin) Done() <-chan struct{} { return p.c.proc.Done() }

// Kill stops the plugin process and waits for it: go-plugin asks it to
// exit and kills it after two seconds if it has not (a process that is
// stopped, SIGSTOP, is killed at once: plugproc.Process.Kill). It then stops
// serving the Host and waits for go-plugin's goroutines. Calls in flight
// fail with ErrPluginGone, and so do later ones. Kill is idempotent and
// safe to call from any goroutine.
func (p *Plugin) Kill() {
	p.once.Do(func() {
		p.killed.Store(true)
		p.c.proc.SetGone()
		p.proc.Kill()
		p.c.kill()
	})
}

// Info implements Provider.Info.
func (p *Plugin) Info(ctx context.Context) (Info, error) {
	info, err := p.c.Info(ctx)
	return info, p.exitErr(err)
}

// Schema implements Provider.Schema.
func (p *Plugin) Schema(ctx context.Context) (Schema, error) {
	s, err := p.c.Schema(ctx)
	return s, p.exitErr(err)
}

// Configure implements Provider.Configure (see grpcClient.Configure: the
// host is served to the plugin through go-plugin's broker).
func (p *Plugin) Configure(ctx context.Context, cfg Config, vm VM, host Host) error {
	return p.exitErr(p.c.Configure(ctx, cfg, vm, host))
}

// Hints implements Provider.Hints. It returns when the plugin's stream
// ends, when ctx ends or req.Deadline passes (whether or not the plugin
// honours them), or when the process dies (ErrPluginGone; an *ExitError
// when it ended on its own, with its exit status and last error line).
func (p *Plugin) Hints(ctx context.Context, req Request, emit func([]Range) error) error {
	return p.exitErr(p.c.Hints(ctx, req, emit))
}

// Close implements Provider.Close: it ends the hint window; the process
// keeps running until Kill.
func (p *Plugin) Close(ctx context.Context, final bool) error { return p.c.Close(ctx, final) }
