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
//	state-save {"path": FILE}  paused VM → {"path", "bytes"}; FILE is written 0600
//	state-load {"path": FILE}  incoming VM → Status (paused; resume runs it)
//
// Both are refused while a migration owns the VM, and state-save once it
// was handed over (runlock.go); the state is taken or loaded under the
// run lock, so the VM cannot change state in between. Neither touches
// its file under the run lock: state-save writes after it (saveStateFile),
// state-load reads before it, so a file system that does not answer
// holds only the command, never pause, resume, quit or a migration.
// Two saves to one path still land in the order their states were
// taken (the later state wins): state_file.go.
func (v *VM) serveState(s *control.Server) {
	s.Handle("state-save", func(ctx context.Context, raw json.RawMessage) (any, error) {
		path, err := statePath(raw)
		if err != nil {
			return nil, err
		}
		n, err := v.saveStateFile(ctx, path, v.saveState)
		if err != nil {
			return nil, err
		}
		return map[string]any{"path": path, "bytes": n}, nil
	})
	s.Handle("state-load", func(ctx context.Context, raw json.RawMessage) (any, error) {
		path, err := statePath(raw)
		if err != nil {
			return nil, err
		}
		// Read between two holds of the run lock: a slow or hung file
		// system holds this command only, not the VM. The first hold
		// only asks whether the command is refused (a migration owns
		// the VM, or it ran), so that says so before any file error.
		if err := v.outside(ctx, "state-load", func(context.Context) error { return nil }); err != nil {
			return nil, err
		}
		blob, err := readBounded(path, state.MaxSize)
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
// same directory, renamed over path once complete and synced: a reader
// never sees a half-written state, and nobody else can read it. Just
// before the rename it asks commit: false leaves path alone (the
// temporary file is removed) and returns errSaveAbandoned.
func writeFileAtomic(path string, b []byte, commit func() bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
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
	}
	return err
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
