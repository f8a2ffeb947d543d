package plugproc

import (
	"time"

	"golang.org/x/sys/unix"
)

// watchExit closes the plugin's output pipes outputGrace after the
// process ends on its own (a crash, an exit), as Kill does after it
// kills. go-plugin reaps a plugin, and cancels the context that tells
// its clients the process is gone (ErrPluginGone), only once both pipes
// ended: a process the plugin started that inherited them (a tool it
// shelled out to) would otherwise keep a dead plugin looking alive, every
// call to it failing as a broken connection, until somebody killed it.
// The process's end is seen through a pidfd, which does not reap it
// (go-plugin's Wait does); without pidfds (Linux before 5.3) nothing
// watches and the pipes end when their last holder closes them. Wait
// joins the watching goroutine (watched).
func (r *cmdRunner) watchExit() {
	// Nobody has waited for the process yet (Start), so the pid is
	// still the plugin's.
	fd, err := unix.PidfdOpen(r.pid, 0)
	if err != nil {
		r.log.Debug("plugin exit not watched (no pidfd)", "pid", r.pid, "error", err)
		return
	}
	r.watched = make(chan struct{})
	go func() {
		defer close(r.watched)
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		// Readable once the process has ended, reaped or not.
		for {
			_, err := unix.Poll(fds, -1)
			if err == nil {
				break
			}
			if err != unix.EINTR {
				r.log.Debug("plugin exit not watched", "pid", r.pid, "error", err)
				return
			}
		}
		time.AfterFunc(outputGrace, r.closeOutput)
	}()
}
