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

// saveStateFile is state-save: it takes the VM's state with take under
// the run lock (refused while a migration owns the VM, and in the
// states outside refuses), then writes it to path (writeFileAtomic) on a
// goroutine that holds the file lock until it returns, and waits for
// that under ctx. It returns the state's size.
func (v *VM) saveStateFile(ctx context.Context, path string, take func(context.Context) ([]byte, error)) (int, error) {
	lock, err := v.lockStateFile(ctx)
	if err != nil {
		return 0, err
	}
	var blob []byte
	err = v.outside(ctx, "state-save", func(ctx context.Context) error {
		var err error
		blob, err = take(ctx)
		return err
	})
	if err != nil {
		lock.Unlock()
		return 0, err
	}
	var phase atomic.Int32
	done := make(chan error, 1)
	go func() {
		defer lock.Unlock()
		done <- writeFileAtomic(path, blob, func() bool { return phase.CompareAndSwap(writeRunning, writeCommitted) })
	}()
	select {
	case err := <-done:
		return savedFile(len(blob), err)
	case <-ctx.Done():
	}
	if phase.CompareAndSwap(writeRunning, writeAbandoned) {
		return 0, fmt.Errorf("state-save: writing the state to %s did not finish in time (does its file system answer?); "+
			"%s was left as it was: %w", path, path, ctx.Err())
	}
	select {
	case err := <-done: // the rename had just ended
		return savedFile(len(blob), err)
	default:
	}
	return 0, fmt.Errorf("state-save: renaming the written state over %s did not finish in time; %s holds this state "+
		"or what it held before, never part of one: %w", path, path, ctx.Err())
}

// savedFile is saveStateFile's answer once the writer returned err.
func savedFile(n int, err error) (int, error) {
	if err != nil {
		return 0, fmt.Errorf("state-save: %w", err)
	}
	return n, nil
}
