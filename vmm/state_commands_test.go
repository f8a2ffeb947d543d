package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadBoundedRefusesFIFO: state-load reads its file before it takes
// the run lock, and only a regular file: a FIFO named as the state file
// used to block the read (and with it the run lock, so every later
// command) until someone wrote to it.
func TestReadBoundedRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "state.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := readBounded(fifo, 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("reading a FIFO: %v, want a refusal", err)
		}
	case <-time.After(5 * time.Second):
		f, _ := os.OpenFile(fifo, os.O_WRONLY, 0) // let the reader go
		f.Close()
		t.Fatal("reading a FIFO as a state file blocked")
	}
	regular := filepath.Join(dir, "state")
	os.WriteFile(regular, []byte("blob"), 0o600)
	if b, err := readBounded(regular, 1<<20); err != nil || string(b) != "blob" {
		t.Errorf("a regular file: %q, %v", b, err)
	}
	if _, err := readBounded(regular, 2); err == nil {
		t.Error("a file over the bound was read")
	}
}
