package plugproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// defaultStartTimeout bounds a plugin's start when ctx has no deadline.
const defaultStartTimeout = time.Minute

// Config says which plugin binary Start runs and what it hands over.
type Config struct {
	Kind      string // "transport", "hint": names the plugin in errors
	Path      string // the plugin binary
	Files     []*os.File
	Env       []string // the kind's own variables (RAM file count, log level)
	Handshake plugin.HandshakeConfig
	Plugins   plugin.PluginSet
	Dispense  string // the plugin in Plugins to dispense
	Logger    hclog.Logger
	// AnswerEarly are the unary methods (full gRPC names) whose calls
	// ask the plugin to answer a margin before their deadline
	// (Kind.AnswerEarly, answer.go).
	AnswerEarly []string

	// wrapConn, if set (tests only: export_test.go), wraps each of the
	// host's connections to the process that gRPC is handed (conns.go).
	wrapConn func(net.Conn) net.Conn
	// dialOpts (tests only: export_test.go) come after Start's own gRPC
	// dial options.
	dialOpts []grpc.DialOption
}

// Process is one running plugin process started by Start.
type Process struct {
	// Client is go-plugin's client of the process.
	Client *plugin.Client
	// Raw is what Dispense returned: the kind's gRPC client.
	Raw any
	// SocketDir is the private directory of the process's Unix sockets.
	SocketDir string
	// TLS is the host's side of the process's mutual TLS, which
	// go-plugin's broker serves with too (ServeBroker).
	TLS *tls.Config

	pid   int
	start uint64 // pid's start time when it started (descendants.go)
	run   *cmdRunner
	stop  context.CancelFunc // ends exec.CommandContext's context
	conns *hostConns         // the host's gRPC connections to the process
}

// Pid is the plugin's process id (go-plugin's ReattachConfig has none
// for a process started by a RunnerFunc).
func (p *Process) Pid() int { return p.pid }

// Start runs one plugin process and dispenses cfg.Dispense from it.
// ctx may kill the process until the handshake is done, never after.
//
// The channel to the plugin is private (docs/ARCHITECTURE.md#invariant-7:
// only the job's real parties may reach guest RAM):
//   - mutual TLS 1.3 with two one-time certificates (tls.go: the host
//     mints both, the plugin reads its own from an inherited pipe; the
//     protocol is go-plugin's AutoMTLS), each side trusting only the
//     other's, so a local client that reaches a socket cannot call the
//     plugin (and so cannot make it map the guest RAM it inherited), nor
//     can it serve the host;
//   - every Unix socket of the process (the plugin's listener and the
//     broker listeners on both sides) lives in a fresh directory of mode
//     0700 whatever the umask; the directory is removed when the process
//     exits (crash included) and again on Kill.
//
// A call of cfg.AnswerEarly asks the plugin to answer a margin before
// the call's deadline, so that one that runs out of time returns the
// plugin's reason, not only the deadline (askEarlyAnswer).
//
// It cannot clean up after a host that is itself killed with SIGKILL:
// the plugin then removes the directory when it notices the host is
// gone (WatchParent), and if the plugin is killed too the directory
// stays in the temporary directory (TMPDIR), empty of anyone to talk to.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	procCtx, stop := context.WithCancel(context.Background())
	abort := context.AfterFunc(ctx, stop)
	timeout := defaultStartTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	pair, err := mintPairing()
	if err != nil {
		stop()
		return nil, fmt.Errorf("start %s plugin %s: one-time certificates: %w", cfg.Kind, cfg.Path, err)
	}
	certPipe, err := pair.pipe()
	if err != nil {
		stop()
		return nil, fmt.Errorf("start %s plugin %s: certificate pipe: %w", cfg.Kind, cfg.Path, err)
	}
	defer certPipe.Close() // the plugin has its copy once it started
	var run *cmdRunner
	conns := newHostConns(cfg.wrapConn)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  cfg.Handshake,
		Plugins:          cfg.Plugins,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           cfg.Logger,
		StartTimeout:     timeout,
		TLSConfig:        pair.host,
		GRPCDialOptions: append([]grpc.DialOption{
			grpc.WithStreamInterceptor(dropBrokerOffers),               // broker.go
			grpc.WithChainStreamInterceptor(conns.keepClient),          // closed by closeAll: conns.go
			grpc.WithUnaryInterceptor(askEarlyAnswer(cfg.AnswerEarly)), // answer.go
			grpc.WithContextDialer(conns.dial),                         // replaces go-plugin's: conns.go
		}, cfg.dialOpts...),
		RunnerFunc: func(l hclog.Logger, spec *exec.Cmd, socketDir string) (runner, error) {
			cmd := exec.CommandContext(procCtx, cfg.Path)
			cmd.Env = append(spec.Env, cfg.Env...)
			cmd.Env = append(cmd.Env, clientCertEnv+"="+string(pair.hostPEM),
				tlsEnv+"="+strconv.Itoa(FirstFile+len(cfg.Files)), hostEnv+"="+strconv.Itoa(os.Getpid()))
			cmd.Stdin = spec.Stdin
			cmd.ExtraFiles = append(slices.Clip(cfg.Files), certPipe)
			r, err := newCmdRunner(l, cmd, socketDir)
			if err != nil {
				removeDir(socketDir)
				return nil, err
			}
			run = r
			return r, nil
		},
	})
	fail := func(err error) (*Process, error) {
		left := run.note() // a plugin that exits when asked leaves its children
		pc.Kill()
		conns.closeAll()
		stop()
		killNoted(left)
		if run != nil {
			removeDir(run.dir)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("start %s plugin %s: %w", cfg.Kind, cfg.Path, err)
	}
	addr, err := pc.Start() // the handshake: where the plugin listens
	if err != nil {
		return fail(err)
	}
	conns.setAddr(addr)
	rpc, err := pc.Client()
	if err != nil {
		return fail(err)
	}
	if !abort() {
		return fail(errors.New("cancelled during start"))
	}
	raw, err := rpc.Dispense(cfg.Dispense)
	if err != nil {
		return fail(err)
	}
	return &Process{Client: pc, Raw: raw, SocketDir: run.dir, TLS: pair.host, pid: run.pid, start: run.start.Load(), run: run, stop: stop, conns: conns}, nil
}

// Kill stops the process and waits for it and for go-plugin's
// goroutines (go-plugin asks the plugin to exit, and kills it after two
// seconds if it has not; a process of the plugin's that still holds its
// stdout or stderr costs outputGrace more, runner.go), closes the host's
// gRPC ClientConn and connections to it (gRPC may leave them to its own
// goroutines, which close them a moment later: conns.go), then kills the processes
// the plugin had started (descendants.go) and removes the socket
// directory. It is idempotent. go-plugin's request to exit has no
// deadline, and a process that stopped (SIGSTOP) or hangs never answers
// it: a process stopped as Kill begins (Stopped) is killed at once,
// without the request; one that hangs, or stops after that look, is
// killed after killGrace, which ends the request. The processes the
// plugin started are sent SIGKILL but not waited for: one that
// inherited a guest RAM file and maps it may still be ending a write as
// Kill returns (none of Ferry's plugins starts one).
func (p *Process) Kill() { p.kill(p.Stopped()) }

// KillNow is Kill without asking the process to exit first: it is
// killed at once, as a stopped one is. For a process the caller knows
// answers nothing (its last call went unanswered: a deadlock, a blocked
// server), which would otherwise cost killGrace. What it cannot do: let
// the plugin end its work first (a session it was asked to close, data
// it still had to write).
func (p *Process) KillNow() { p.kill(true) }

// kill is Kill; now kills the process before go-plugin's request.
func (p *Process) kill(now bool) {
	left := descendants(proc{pid: p.pid, start: p.start})
	defer killNoted(left)
	if now {
		p.stop() // exec.CommandContext kills the process; go-plugin's request then ends with it
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Client.Kill()
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
		p.stop() // exec.CommandContext kills the process
		<-done
	}
	p.conns.closeAll() // gRPC's Close may have left them to its goroutines
	p.stop()
	removeDir(p.SocketDir)
}

// Stopped reports whether the plugin's process is stopped (SIGSTOP,
// SIGTSTP, a tracer's stop; /proc/PID/stat says so, and the pid is
// still the plugin's): it answers no call until continued, and cannot
// exit when asked. False once it exited, or where procfs cannot say (a
// host without it): callers then wait their usual bounds.
func (p *Process) Stopped() bool { return proc{pid: p.pid, start: p.start}.stopped() }

// killGrace bounds how long Kill lets go-plugin ask the process to exit
// (it waits two seconds for that itself, after the request is answered).
const killGrace = 4 * time.Second

// removeDir removes a socket directory; "" is a no-op.
func removeDir(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}
