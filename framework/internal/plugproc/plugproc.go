// Package plugproc holds what every plugin kind needs the same way: on
// the host, starting the plugin process over a private, mutually
// authenticated channel (Start); in the plugin, the logger that carries
// levels across go-plugin, the guest RAM files inherited from the host,
// and exiting when the host is gone. A kind describes itself once (Kind:
// its name, handshake and environment variables) and gets Launch, Serve
// and Logger from it; FileIndex matches the RAM files a request names to
// the ones the process inherited. A call of the kind's setup methods
// that runs out of time returns the plugin's reason: the plugin answers
// a margin before the deadline, the host waits for it (answer.go).
//
//	host (VMM)                          plugin process
//	Start ── exec, fds 3.. = guest RAM ──► InheritedFiles
//	      ── PLUGIN_CLIENT_CERT, a pipe with ─► ServerTLS
//	         the plugin's one-time cert and key (tls.go)
//	      ◄── handshake line: socket ──
//	      ══ gRPC over TLS 1.3, both certs pinned ══
//	socket dir: $TMPDIR/plugin-dirNNN, mode 0700, removed on exit
package plugproc

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"
)

// FirstFile is the descriptor of the first inherited RAM file in a plugin
// process (exec.Cmd.ExtraFiles start after stdin, stdout, stderr).
const FirstFile = 3

// Logger returns the logger a plugin process should log through: JSON on
// stderr, which go-plugin turns back into records of the host's logger
// with their levels, at the level the host put in levelEnv (the host
// logger's: a host logging at debug gets the plugin's debug records).
// time.Duration values are written as durations ("148ms").
func Logger(name, levelEnv string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(levelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return readable{hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: os.Stderr, JSONFormat: true})}
}

// hostEnv carries the host's process id to the plugin (Start), so that
// the plugin knows whose child it is even if the host is gone before the
// plugin first asks for its parent.
const hostEnv = "FERRY_PLUGIN_HOST_PID"

// HostPID returns the pid of the host that started this plugin process:
// the one Start named in hostEnv, or, from a host that names none (built
// before it did), the parent this process has now. The parent alone is
// not enough: a host that dies while the plugin starts has already left
// it re-parented (to init or a subreaper), and a watch that took that
// parent for the host would never see the host go.
func HostPID() int {
	if pid, err := strconv.Atoi(os.Getenv(hostEnv)); err == nil && pid > 1 {
		return pid
	}
	return os.Getppid()
}

// WatchParent exits the process once its parent is no longer the host
// (host: HostPID), at once if that is so when it starts, else within
// every: go-plugin only stops a plugin the host kills, and an orphan
// would keep guest RAM and the transport's listening sockets open (the
// next try's destination could not listen on its address). It removes
// the private socket directory the host made for this process (Start)
// first, which a host that died cannot do any more.
//
// Once it runs, a log write to the dead host's stderr fails with EPIPE
// instead of killing the process with SIGPIPE, so the plugin gets to
// clean up however much it logs in its last interval.
func WatchParent(log hclog.Logger, host int, every time.Duration) {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for ; ; <-tick.C {
		if os.Getppid() != host {
			// Before logging: a write to the dead host's stderr pipe
			// ends the process with SIGPIPE.
			removeDir(os.Getenv(plugin.EnvUnixSocketDir))
			log.Error("the host process is gone; exiting", "host_pid", host)
			os.Exit(2)
		}
	}
}

// InheritedFiles wraps the descriptors the host handed over (fd
// FirstFile+i is file i; countEnv says how many). They are marked
// close-on-exec so the plugin's own children do not inherit guest RAM,
// and live as long as the process.
func InheritedFiles(countEnv string) ([]*os.File, error) {
	v := os.Getenv(countEnv)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("%s=%q: want a count of RAM files", countEnv, v)
	}
	files := make([]*os.File, n)
	for i := range files {
		fd := FirstFile + i
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("RAM file %d (fd %d) was not inherited: %w", i, fd, err)
		}
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("guest-ram-%d", i))
	}
	return files, nil
}

// InheritedChannel wraps the socket the host handed over after the RAM
// files (Launch's channel), whose descriptor channelEnv names; nil if
// the variable is unset. It must be the descriptor right after the nfiles
// RAM files and a socket; it is marked close-on-exec.
func InheritedChannel(channelEnv string, nfiles int) (*os.File, error) {
	v := os.Getenv(channelEnv)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd != FirstFile+nfiles {
		return nil, fmt.Errorf("%s=%q: want descriptor %d, the one after the %d RAM files", channelEnv, v, FirstFile+nfiles, nfiles)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("channel (fd %d) was not inherited: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("channel (fd %d) is not a socket", fd)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "plugin-channel"), nil
}

// InheritedHeld wraps the descriptors the host handed over after its
// channel (Launch's held), named as heldEnv lists them; first is the
// descriptor after the channel. None if the variable is unset. Each
// must be a socket; they are marked close-on-exec.
func InheritedHeld(heldEnv string, first int) ([]Held, error) {
	v := os.Getenv(heldEnv)
	if v == "" {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(v), &names); err != nil || len(names) > MaxHeld {
		return nil, fmt.Errorf("%s=%q: want a JSON array of at most %d names", heldEnv, v, MaxHeld)
	}
	held := make([]Held, len(names))
	for i, name := range names {
		fd := first + i
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("held descriptor %q (fd %d) was not inherited: %w", name, fd, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK || name == "" || len(name) > MaxHeldName {
			return nil, fmt.Errorf("held descriptor %q (fd %d) is not a socket, or its name is empty or longer than %d bytes", name, fd, MaxHeldName)
		}
		unix.CloseOnExec(fd)
		held[i] = Held{Name: name, File: os.NewFile(uintptr(fd), "held-"+name)}
	}
	return held, nil
}
