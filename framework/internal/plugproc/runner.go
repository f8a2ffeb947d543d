package plugproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin/runner"
)

// runner is go-plugin's process runner interface.
type runner = goplugin.Runner

// cmdRunner runs a plugin as a child process, like go-plugin's own
// (internal) command runner, and removes the process's socket directory
// as soon as the process has exited. go-plugin only creates a private
// socket directory, and hands it to the plugin, when a RunnerFunc
// starts the process: that is why Start uses this runner.
type cmdRunner struct {
	log    hclog.Logger
	cmd    *exec.Cmd
	dir    string
	stdout io.ReadCloser
	stderr io.ReadCloser
	tail   *stderrTail // stderr as go-plugin reads it, and how the process ended
	pid    int
	start  atomic.Uint64 // the process's start time (descendants.go); 0: unknown
	// watched is closed when watchExit's goroutine has closed its pidfd;
	// nil when nothing watches.
	watched chan struct{}
}

var _ runner = (*cmdRunner)(nil)

// newCmdRunner makes dir private (os.MkdirTemp already asks for 0700,
// which a umask can only narrow) and prepares cmd's output pipes.
func newCmdRunner(log hclog.Logger, cmd *exec.Cmd, dir string) (*cmdRunner, error) {
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("plugin socket directory: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	r := &cmdRunner{log: log, cmd: cmd, dir: dir, stdout: stdout, stderr: stderr, tail: newStderrTail(stderr)}
	// A context that ends during the start kills the plugin's children
	// too (exec calls Cancel only after Start).
	cmd.Cancel = func() error { return r.killTree(cmd.Process.Kill) }
	return r, nil
}

// note returns the plugin's descendants (descendants.go); none before
// Start, or once its pid is not the plugin's.
func (r *cmdRunner) note() []proc {
	if r == nil || r.cmd.Process == nil {
		return nil
	}
	return descendants(proc{pid: r.cmd.Process.Pid, start: r.start.Load()})
}

// killTree notes the plugin's descendants, kills it with kill, then
// kills those noted.
func (r *cmdRunner) killTree(kill func() error) error {
	left := r.note()
	defer killNoted(left)
	return kill()
}

// Start implements runner.Runner.Start.
func (r *cmdRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	// Nobody waits for the process before Start returns, so the pid is
	// still the plugin's, exited or not.
	if st, ok := startTime(r.pid); ok {
		r.start.Store(st)
	}
	r.watchExit()
	r.log.Debug("plugin started", "path", r.cmd.Path, "pid", r.pid, "socket_dir", r.dir)
	return nil
}

// Wait implements runner.AttachedRunner.Wait: once the process is gone
// nobody listens in its socket directory any more, so it is removed, and
// the pidfd watchExit held is closed before Wait returns (the process
// has ended, so that is at once): go-plugin's Kill returns after Wait,
// and nothing of the plugin's may stay open after it.
func (r *cmdRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	if ps := r.cmd.ProcessState; ps != nil {
		r.tail.setExit(ps.String())
	}
	if r.watched != nil {
		<-r.watched
	}
	removeDir(r.dir)
	return err
}

// Kill implements runner.AttachedRunner.Kill: the process and the
// processes it started (go-plugin kills through it when a start fails,
// and when a plugin does not exit when asked); a process already gone is
// not an error. outputGrace after the process ended the host's ends of
// its stdout and stderr are closed (watchExit; without a pidfd,
// outputGrace after Kill).
func (r *cmdRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if r.watched == nil {
		time.AfterFunc(outputGrace, r.closeOutput)
	}
	if err := r.killTree(r.cmd.Process.Kill); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// outputGrace is how long after its Kill, or its own end (watchExit),
// the host still reads a plugin's stdout and stderr to their end. A
// process the plugin started may hold them (a tool it shelled out to,
// which inherited them), and go-plugin reaps the plugin, and returns
// from its Kill, only once both ended: without a bound, Kill (a transport's Close, a post-copy
// reconnect's CloseHoldingListeners, a hint provider's Kill) waited as
// long as that process lived, forever for one that no Kill can tell from
// a stranger's (the plugin died first: descendants.go).
const outputGrace = time.Second

// closeOutput closes the host's ends of the plugin's stdout and stderr,
// which ends go-plugin's readers of them (what they had not read yet is
// lost). A second close is a no-op.
func (r *cmdRunner) closeOutput() {
	r.stdout.Close()
	r.tail.Close()
}

// Stdout implements runner.Runner.Stdout.
func (r *cmdRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr implements runner.Runner.Stderr.
// It is the tail that remembers the plugin's last error line (Exit).
func (r *cmdRunner) Stderr() io.ReadCloser { return r.tail }

// Name implements runner.Runner.Name.
func (r *cmdRunner) Name() string { return r.cmd.Path }

// ID implements runner.AttachedRunner.ID.
func (r *cmdRunner) ID() string { return fmt.Sprint(r.pid) }

// Diagnose implements runner.Runner.Diagnose.
func (r *cmdRunner) Diagnose(context.Context) string {
	return "the plugin binary may be for another architecture, not executable, " +
		"or not a Ferry plugin of this kind (it did not complete go-plugin's handshake)"
}

// PluginToHost implements runner.AddrTranslator: host and plugin share
// the file system, so addresses are the same on both sides.
func (r *cmdRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin implements runner.AddrTranslator.
func (r *cmdRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
