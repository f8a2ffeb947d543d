package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ferryvm/ferry/vmm/internal/ctxlock"
)

// state-save's file is written after the run lock is let go, by a
// goroutine of its own, and the command waits for it under its context
// (the control server's handler deadline):
//
//	state-save ─► file lock (v.stateFile) ─────────────────────────────────────► let go by the writer
//	                 │
//	                 ├─ run lock: take the state (refused as outside refuses) ─► let go
//	                 │
//	                 └─ writer: temporary file, write, sync ─► commit? ─► rename over the path ─► sync the directory
//	                                                              ▲
//	    the command's ctx ends first: the command fails ──────────┘ no: the temporary file is removed,
//	    and the writer is abandoned                                   the path left as it was
//
// The file lock, taken before the run lock and held until the file is
// written, keeps two saves in order: their states are taken, and their
// files written, in the order they took it (to one path the later state
// wins). A file system that does not answer (a hard-mounted NFS that
// lost its server, a hung FUSE daemon) holds the writer, and with it the
// file lock, until it answers: the command fails at its deadline saying
// so, and every later state-save is refused at its own, but the run lock
// is free, so pause, resume, quit and migrations go on. Before, the file
// was written under the run lock without a deadline, and such a file
// system held them all for as long as it hung (TestStateSaveHungFS).
//
// What it cannot do: stop the writer. A system call the kernel does not
// return from stays where it is, its goroutine with it, until the file
// system answers or fails (VM.Close does not wait for it). The rename
// itself cannot be taken back once begun: a command whose deadline
// passes during it, or during the directory's sync after it, says the
// path holds either state. What a saved state survives (a host crash
// once the command answered, not before): writeFileAtomic.

// errSaveAbandoned is writeFileAtomic's answer when commit refused the
// rename.
var errSaveAbandoned = errors.New("state-save gave up on this write: the file was left as it was")

// The phases of one state file's write (stateWrite.phase).
const (
	writeRunning   int32 = iota // the temporary file is being written and synced
	writeCommitted              // the rename over the path has begun
	writeAbandoned              // the command gave up: no rename
)

// lockStateFile takes state-save's file lock (made by its first use),
// or fails once ctx ended first; a free lock is taken even then. It
// returns the lock, to Unlock.
func (v *VM) lockStateFile(ctx context.Context) (ctxlock.Mutex, error) {
	v.mu.Lock()
	if v.stateFile == nil {
		v.stateFile = ctxlock.New()
	}
	lock := v.stateFile
	v.mu.Unlock()
	if err := lock.LockContext(ctx); err != nil {
		return nil, fmt.Errorf("state-save: an earlier state-save is still writing its file (does its file system answer?); "+
			"nothing was saved: %w", err)
	}
	return lock, nil
}

// stateSaved is state-save's answer.
type stateSaved struct {
	Path  string `json:"path"`
	Bytes int    `json:"bytes"`
	// Warning, if not empty, says what of the save may not survive a
	// host crash though the command succeeded: a directory whose file
	// system cannot sync directories (dirNoSyncError).
	Warning string `json:"warning,omitempty"`
}

// saveStateFile is state-save: it takes the VM's state with take under
// the run lock (refused while a migration owns the VM, and in the
// states outside refuses), then writes it to path (writeFileAtomic) on a
// goroutine that holds the file lock until it returns, and waits for
// that under ctx. It returns the command's answer: the state's size.
func (v *VM) saveStateFile(ctx context.Context, path string, take func(context.Context) ([]byte, error)) (stateSaved, error) {
	lock, err := v.lockStateFile(ctx)
	if err != nil {
		return stateSaved{}, err
	}
	var blob []byte
	err = v.outside(ctx, "state-save", func(ctx context.Context) error {
		var err error
		blob, err = take(ctx)
		return err
	})
	if err != nil {
		lock.Unlock()
		return stateSaved{}, err
	}
	var phase atomic.Int32
	done := make(chan error, 1)
	go func() {
		defer lock.Unlock()
		done <- writeFileAtomic(path, blob, func() bool { return phase.CompareAndSwap(writeRunning, writeCommitted) })
	}()
	select {
	case err := <-done:
		return v.savedFile(path, len(blob), err)
	case <-ctx.Done():
	}
	if phase.CompareAndSwap(writeRunning, writeAbandoned) {
		return stateSaved{}, fmt.Errorf("state-save: writing the state to %s did not finish in time (does its file system answer?); "+
			"%s was left as it was: %w", path, path, ctx.Err())
	}
	select {
	case err := <-done: // the rename had just ended
		return v.savedFile(path, len(blob), err)
	default:
	}
	return stateSaved{}, fmt.Errorf("state-save: renaming the written state over %s did not finish in time; %s holds this state "+
		"or what it held before, never part of one: %w", path, path, ctx.Err())
}

// savedFile is saveStateFile's answer once the writer of n bytes to
// path returned err. A directory whose file system cannot sync
// directories (dirNoSyncError) is no failure: the state is in place, and
// no later try could do more there; the answer's warning, and the log,
// say what it may not survive.
func (v *VM) savedFile(path string, n int, err error) (stateSaved, error) {
	var noSync *dirNoSyncError
	switch {
	case errors.As(err, &noSync):
		w := fmt.Sprintf("%s holds the state, but its directory's file system cannot sync a directory (%v), so after a "+
			"host crash it may hold what it held before; save to a directory on another file system if it must survive one",
			path, noSync.err)
		v.log.Warn("state-save: "+w, "path", path)
		return stateSaved{Path: path, Bytes: n, Warning: w}, nil
	case err != nil:
		return stateSaved{}, fmt.Errorf("state-save: %w", err)
	}
	return stateSaved{Path: path, Bytes: n}, nil
}
