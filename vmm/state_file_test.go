package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/control"
)

// hungFS mounts a FUSE file system whose daemon never answers (it never
// reads /dev/fuse, so not even the kernel's INIT) and returns its
// mount point: every access below it blocks, as on a hard-mounted NFS
// whose server went away. unhang closes the daemon's end, which fails
// every blocked call and every later one with ENOTCONN; the test's
// cleanup calls it too, then unmounts. It skips where FUSE cannot be
// mounted (no /dev/fuse, no CAP_SYS_ADMIN). Call it only in a test
// that runs in its own mount namespace (inPrivateMounts), so that no
// one else sees the mount and it goes with the test's process.
func hungFS(t *testing.T) (dir string, unhang func()) {
	t.Helper()
	if os.Getenv(envPrivateMounts) != t.Name() {
		t.Fatal("hungFS outside a mount namespace of the test's own: start the test with inPrivateMounts")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no FUSE here: %v", err)
	}
	dir = t.TempDir()
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := unix.Mount("ferry-hung", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	closed := false
	unhang = func() {
		if !closed {
			closed = true
			unix.Close(fd)
		}
	}
	t.Cleanup(func() {
		unhang()
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if os.Getenv(envHungFSDies) != "" { // TestHungFSLeavesNoMount
		fmt.Fprintln(os.Stderr, hungFSDying)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return dir, unhang
}

// takeFake is a state taker for saveStateFile without KVM: the VM must
// be paused, as saveState wants it.
func takeFake(v *VM) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		if st := v.Status().State; st != StatePaused {
			return nil, fmt.Errorf("save state: the VM is %s: pause it first", st)
		}
		return []byte("state blob"), nil
	}
}

// saveWithin runs saveStateFile with a deadline of d and fails the test
// if it has not returned 5 s after that deadline (then unhang lets it
// go).
func saveWithin(t *testing.T, v *VM, d time.Duration, path string, unhang func()) (stateSaved, error) {
	t.Helper()
	type result struct {
		n   stateSaved
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		n, err := v.saveStateFile(ctx, path, takeFake(v))
		res <- result{n, err}
	}()
	select {
	case r := <-res:
		return r.n, r.err
	case <-time.After(d + 5*time.Second):
		unhang()
		r := <-res
		t.Fatalf("state-save to %s with a deadline of %v had not returned 5 s after it (%+v, %v once the file system failed)",
			path, d, r.n, r.err)
		return stateSaved{}, nil
	}
}

// TestStateSaveHungFS: a state-save whose file system does not answer
// fails at its deadline and leaves the run lock free: pause and resume
// go on while its write hangs, a second state-save is refused at its own
// deadline saying why (the first still holds the file lock, which keeps
// saves in order), and once the file system fails the next state-save
// writes its file. Before, the file was written under the run lock with
// no deadline: the state-save, and every pause, resume, quit and
// migration after it, hung for as long as the file system did.
func TestStateSaveHungFS(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	hung, unhang := hungFS(t)
	v := fakeVM(StatePaused)
	call := serveFake(t, v)
	good := filepath.Join(t.TempDir(), "state")

	start := time.Now()
	_, err := saveWithin(t, v, 300*time.Millisecond, filepath.Join(hung, "state"), unhang)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("state-save on a hung file system: %v; want it to give up at its deadline", err)
	}
	t.Logf("state-save on a hung file system gave up after %v", time.Since(start).Round(time.Millisecond))
	for _, cmd := range []string{"resume", "pause"} {
		if err := call(cmd, nil); err != nil {
			t.Fatalf("%s while a state-save's write hangs: %v", cmd, err)
		}
	}
	if _, err := saveWithin(t, v, 200*time.Millisecond, good, unhang); err == nil ||
		!strings.Contains(err.Error(), "an earlier state-save is still writing") {
		t.Fatalf("a second state-save while the first's write hangs: %v; want refused at its deadline", err)
	}
	if _, err := os.Stat(good); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused state-save left %s: %v", good, err)
	}

	unhang() // the hung write fails (ENOTCONN), and lets the file lock go
	n, err := saveWithin(t, v, 5*time.Second, good, unhang)
	if err != nil {
		t.Fatalf("state-save once the hung write failed: %v", err)
	}
	if b, err := os.ReadFile(good); err != nil || string(b) != "state blob" || n.Bytes != len(b) {
		t.Fatalf("saved %+v; %s holds %q, %v", n, good, b, err)
	}
	quitStops(t, v, "after the hung state-save", call("quit", nil))
}

// TestStateLoadHungFS: a state-load whose file's file system does not
// answer fails at its handler's deadline, saying so, and leaves nothing
// waiting behind it: other commands answer, and the control server,
// asked to stop, returns (ferry-vmm waits for that before it exits).
// Before, the file was read in the handler itself with no deadline: the
// handler waited for as long as the file system hung, and with it the
// control server's shutdown and so the VMM's exit after a quit.
func TestStateLoadHungFS(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	hung, unhang := hungFS(t)
	v := fakeWithRAM(t, StateIncoming)
	sock := filepath.Join(t.TempDir(), "c.sock")
	s, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHandlerTimeout(300 * time.Millisecond)
	v.Serve(s)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); unhang(); <-served })
	call := func(cmd string, args, res any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return control.Call(ctx, sock, cmd, args, res)
	}

	start := time.Now()
	err = call("state-load", map[string]string{"path": filepath.Join(hung, "state")}, nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") || took > 3*time.Second {
		t.Fatalf("state-load from a hung file system: %v after %v; want it to give up at its 300 ms deadline, saying why",
			err, took.Round(time.Millisecond))
	}
	t.Logf("state-load from a hung file system gave up after %v", took.Round(time.Millisecond))
	var st Status
	if err := call("status", nil, &st); err != nil || st.State != StateIncoming {
		t.Fatalf("status after the hung state-load: %+v, %v; want incoming", st, err)
	}
	cancel() // as ferry-vmm once its VM stopped
	select {
	case err := <-served:
		served <- err // for the cleanup
	case <-time.After(5 * time.Second):
		unhang()
		t.Fatal("the control server had not returned 5 s after it was asked to stop: it waits for the hung state-load")
	}
}

// TestStateSaveOverFIFO: a FIFO named as state-save's file does not
// block it: the state goes to a new file in the same directory, renamed
// over the FIFO once complete, so the path then holds the state.
func TestStateSaveOverFIFO(t *testing.T) {
	v := fakeVM(StatePaused)
	fifo := filepath.Join(t.TempDir(), "state")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := saveWithin(t, v, 5*time.Second, fifo, func() {
		f, _ := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a reader, should it write to the FIFO
		f.Close()
	})
	if err != nil {
		t.Fatalf("state-save over a FIFO: %v", err)
	}
	fi, err := os.Lstat(fifo)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(n.Bytes) {
		t.Fatalf("after state-save over a FIFO the path is %v (%+v saved), %v; want the regular state file", fi, n, err)
	}
	if err := v.Resume(); err != nil {
		t.Fatalf("resume after the state-save: %v", err)
	}
}

// TestWriteFileAtomic: the state file appears whole, 0600, and nothing
// else is left in its directory; a write whose commit is refused (the
// command gave up at its deadline) leaves the path as it was, and no
// temporary file either.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := writeFileAtomic(path, []byte("old"), func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new, abandoned"), func() bool { return false }); !errors.Is(err, errSaveAbandoned) {
		t.Fatalf("an abandoned write: %v, want errSaveAbandoned", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "old" {
		t.Fatalf("after an abandoned write the file holds %q, %v; want the old state", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the directory holds %q; want the state file alone", names)
	}
}

// watchSyncDir replaces syncDir with watch for the test.
func watchSyncDir(t *testing.T, watch func(dir string) error) {
	real := syncDir
	syncDir = watch
	t.Cleanup(func() { syncDir = real })
}

// TestStateSaveSyncsDirAfterRename: state-save syncs the file's
// directory once, after the rename (the path holds the new state when
// it does), so the new name survives a host crash; a directory that
// cannot be synced fails the command, saying that the path holds the
// state but may not keep it. Before, the directory was never synced:
// after a host crash the rename could be lost, and the old state, or
// none, came back.
func TestStateSaveSyncsDirAfterRename(t *testing.T) {
	if err := syncDir(t.TempDir()); err != nil {
		t.Fatalf("syncing a directory here: %v", err)
	}
	real := syncDir
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	var synced []string
	watchSyncDir(t, func(d string) error {
		b, _ := os.ReadFile(path)
		synced = append(synced, d+" with "+string(b))
		return real(d)
	})
	v := fakeVM(StatePaused)
	if _, err := saveWithin(t, v, 5*time.Second, path, func() {}); err != nil {
		t.Fatalf("state-save: %v", err)
	}
	if want := []string{dir + " with state blob"}; !slices.Equal(synced, want) {
		t.Errorf("directories synced (and what the path held then): %q; want %q", synced, want)
	}

	watchSyncDir(t, func(string) error { return syscall.EIO })
	os.WriteFile(path, []byte("old"), 0o600)
	_, err := saveWithin(t, v, 5*time.Second, path, func() {})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "could not be synced") {
		t.Errorf("state-save whose directory cannot be synced: %v; want it to fail, saying so", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "state blob" {
		t.Errorf("after the failed directory sync the path holds %q, %v; want the new state", b, err)
	}
}

// TestStateSaveDirWithoutSync: a directory whose file system cannot
// sync a directory at all (fsync fails EINVAL, as it does here for
// /sys, and for legacy 9p or vboxsf shares) does not fail state-save:
// the path holds the state, and the answer (and the log) warn that it
// may not survive a host crash; a sync that may pass (EIO) still fails
// it (TestStateSaveSyncsDirAfterRename). Before, every state-save to
// such a directory failed, though the state was in place, advising to
// save again, which could never do more.
func TestStateSaveDirWithoutSync(t *testing.T) {
	noSync := syncDir("/sys") // sysfs has no fsync for its directories
	if noSync == nil || !errors.Is(noSync, syscall.EINVAL) {
		t.Skipf("syncing /sys here: %v; want EINVAL, the kernel's answer for a file system without a directory sync", noSync)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	watchSyncDir(t, func(string) error { return noSync })
	saved, err := saveWithin(t, fakeVM(StatePaused), 5*time.Second, path, func() {})
	if err != nil || saved.Bytes != len("state blob") || !strings.Contains(saved.Warning, "cannot sync a directory (sync /sys: invalid argument)") {
		t.Errorf("state-save to a directory whose file system cannot sync one: %+v, %v; want it saved, with a warning", saved, err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "state blob" {
		t.Errorf("the path holds %q, %v; want the new state", b, err)
	}
}
