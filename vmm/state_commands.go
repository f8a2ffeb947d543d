package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ferryvm/ferry/vmm/control"
	"github.com/ferryvm/ferry/vmm/state"
)

// serveState registers the state commands, a cold-migration and snapshot
// path (guest RAM travels separately):
//
//	state-save {"path": FILE}  paused VM → {"path", "bytes", "warning"?}; FILE is written 0600
//	state-load {"path": FILE}  incoming VM → Status (paused; resume runs it)
//
// Both are refused while a migration owns the VM, and state-save once it
// was handed over (runlock.go); the state is taken or loaded under the
// run lock, so the VM cannot change state in between. Neither touches
// its file under the run lock: state-save writes after it (saveStateFile),
// state-load reads before it (readStateFile), each waited for under the
// command's deadline, so a file system that does not answer fails the
// command at its deadline and holds nothing else: not pause, resume,
// quit or a migration, nor the control server's shutdown.
// Two saves to one path still land in the order their states were
// taken (the later state wins): state_file.go.
func (v *VM) serveState(s *control.Server) {
	s.Handle("state-save", func(ctx context.Context, raw json.RawMessage) (any, error) {
		path, err := statePath(raw)
		if err != nil {
			return nil, err
		}
		saved, err := v.saveStateFile(ctx, path, v.saveState)
		if err != nil {
			return nil, err
		}
		return saved, nil
	})
	s.Handle("state-load", func(ctx context.Context, raw json.RawMessage) (any, error) {
		path, err := statePath(raw)
		if err != nil {
			return nil, err
		}
		// Read between two holds of the run lock, under the command's
		// deadline: a slow or hung file system holds neither the VM nor
		// the command past it (readStateFile). The first hold
		// only asks whether the command is refused (a migration owns
		// the VM, or it ran), so that says so before any file error.
		if err := v.outside(ctx, "state-load", func(context.Context) error { return nil }); err != nil {
			return nil, err
		}
		blob, err := readStateFile(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("state-load: %w", err)
		}
		err = v.outside(ctx, "state-load", func(ctx context.Context) error {
			return v.loadState(ctx, blob)
		})
		if err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
}

func statePath(raw json.RawMessage) (string, error) {
	var a struct {
		Path string `json:"path"`
	}
	if err := decodeArgs(raw, &a); err != nil {
		return "", err
	}
	if a.Path == "" {
		return "", errors.New(`missing argument: {"path": FILE}`)
	}
	return filepath.Clean(a.Path), nil
}

// writeFileAtomic writes b to path through a 0600 temporary file in the
// same directory (createTemp, state_temp.go), renamed over path once
// complete and synced, then syncs the directory: a reader never sees a
// half-written state, and nobody else can read it. Just before the
// rename it asks commit: false leaves path alone (the temporary file is
// removed) and returns errSaveAbandoned. First it removes the temporary
// files of path that writers which ended left (removeDeadWriters).
//
// What is durable once it returned nil: the state's bytes (the file's
// fsync, before the rename) and its name (the directory's fsync, after
// it): after a host crash path holds this state. What is not:
//   - a crash before it returned may bring back what path held before,
//     or nothing if it held nothing; never a part of either;
//   - the removal of a temporary file (a write abandoned or refused, a
//     dead writer's) is not synced: after a crash one may come back, and
//     stays (another boot's: state_temp.go);
//   - the directory's own name in its parent is not synced: a directory
//     made just before and never synced may vanish after a crash, with
//     everything in it;
//   - a file system that acknowledges fsync without keeping the data (a
//     FUSE daemon that ignores it, a disk whose volatile write cache
//     the kernel is not told of), or that cannot sync a directory at
//     all (dirNoSyncError, below), keeps what it keeps.
//
// A directory whose sync fails fails the call, though path then holds
// the new state: it may not survive a host crash. One whose file system
// cannot sync a directory at all (dirSyncUnsupported) returns a
// *dirNoSyncError: path holds the new state, as
// durable as that file system makes a rename, and no later try can do
// more there (state-save succeeds, with a warning: savedFile).
func writeFileAtomic(path string, b []byte, commit func() bool) error {
	removeDeadWriters(path)
	f, err := createTemp(path)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !commit() {
		err = errSaveAbandoned
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		if dirSyncUnsupported(err) {
			return &dirNoSyncError{err}
		}
		return fmt.Errorf("the state was written to %s, but its directory could not be synced, so after a host crash "+
			"%s may hold what it held before: %w (save again, or sync the file system: sync -f %s)", path, path, err, dir)
	}
	return nil
}

// dirNoSyncError is writeFileAtomic's answer when the file is in place
// but its directory's file system cannot sync a directory (err, the
// sync's error: dirSyncUnsupported).
type dirNoSyncError struct{ err error }

func (e *dirNoSyncError) Error() string {
	return "the state file is in place, but its directory's file system cannot sync a directory: " + e.err.Error()
}

func (e *dirNoSyncError) Unwrap() error { return e.err }

// dirSyncUnsupported reports whether err, syncDir's, says that the
// directory's file system has no sync for directories at all: fsync
// fails with EINVAL (the kernel's answer for a file system without one:
// sysfs and procfs here, legacy 9p and vboxsf shares), or ENOTSUP. An
// error that may pass (EIO, ENOSPC) is not one. PostgreSQL's
// fsync_fname draws the same line for directories.
func dirSyncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP)
}

// syncDir makes the renames in dir durable: an fsync of the directory.
// A variable for tests, which watch when it runs.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	if cerr := d.Close(); serr == nil {
		serr = cerr
	}
	return serr
}

// readStateFile is state-load's read of its file (readBounded, at most
// state.MaxSize bytes), on a goroutine of its own that it waits for
// under ctx (the handler's deadline): a file system that does not
// answer fails the command at its deadline, saying so. Before, the
// handler read the file itself and waited for as long as the file
// system hung, and with it the control server's shutdown, which waits
// for its handlers, and so the VMM's exit (TestStateLoadHungFS). What
// it cannot do: stop that read. A system call the kernel does not
// return from keeps its goroutine until the file system answers or
// fails; what it read then is dropped (nothing was loaded).
func readStateFile(ctx context.Context, path string) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		b, err := readBounded(path, state.MaxSize)
		res <- result{b, err}
	}()
	select {
	case r := <-res:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading %s did not finish in time (does its file system answer?); nothing was loaded: %w",
			path, ctx.Err())
	}
}

// readBounded reads a regular file of at most max bytes. Anything else
// (a FIFO, a device) is refused without waiting on it.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than a state blob may be (%d bytes)", path, max)
	}
	return b, nil
}
