package engine

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// ramMemfd is a memfd of size bytes with "guest" written at offset 0,
// allowing seals when sealable.
func ramMemfd(t *testing.T, size int64, sealable bool) int {
	t.Helper()
	flags := unix.MFD_CLOEXEC
	if sealable {
		flags |= unix.MFD_ALLOW_SEALING
	}
	fd, err := unix.MemfdCreate("files-test", flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, []byte("guest"), 0); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestRAMFilesAccess: the sending side's files read guest RAM and can
// change nothing; the receiving side's write, and the VMM's memfd is
// then sealed against shrinking when it allows seals.
func TestRAMFilesAccess(t *testing.T) {
	const mib = 1 << 20
	a, b := ramMemfd(t, 2*mib, true), ramMemfd(t, mib, false)
	l := framework.Layout{
		{GPA: 0, Size: mib, Fd: a},
		{GPA: 4 << 30, Size: mib, Fd: a, Offset: mib},
		{GPA: 8 << 30, Size: mib, Fd: b},
	}
	closeAll := func(files []*os.File) {
		for _, f := range files {
			f.Close()
		}
	}

	send, ram, err := RAMFiles(l, transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(send)
	if len(send) != 2 || ram[1].File != 0 || ram[2].File != 1 || ram[1].Offset != mib {
		t.Fatalf("files %d, regions %+v: want 2 files, regions 0 and 1 on the first", len(send), ram)
	}
	for i, f := range send {
		fd := int(f.Fd())
		got := make([]byte, 5)
		if _, err := unix.Pread(fd, got, 0); err != nil || !bytes.Equal(got, []byte("guest")) {
			t.Errorf("send file %d reads %q (%v), want the VMM's bytes", i, got, err)
		}
		if off, err := unix.Seek(fd, 0, unix.SEEK_DATA); err != nil || off != 0 {
			t.Errorf("send file %d: SEEK_DATA %d, %v", i, off, err)
		}
		if _, err := unix.Pwrite(fd, []byte("x"), 0); err == nil {
			t.Errorf("send file %d can be written", i)
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, mib); err == nil {
			t.Errorf("send file %d can punch holes", i)
		}
		if err := unix.Ftruncate(fd, 0); err == nil {
			t.Errorf("send file %d can be truncated", i)
		}
		if _, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			t.Errorf("send file %d can be mapped writable", i)
		}
		if m, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err != nil {
			t.Errorf("send file %d cannot be mapped to read: %v", i, err)
		} else {
			unix.Munmap(m)
		}
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); err == nil {
			t.Errorf("send file %d can add seals", i)
		}
	}
	if ShrinkSealed(send[0]) {
		t.Error("the sending side sealed the VMM's memfd")
	}

	recv, _, err := RAMFiles(l, transport.RoleReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(recv)
	for i, f := range recv {
		if _, err := f.WriteAt([]byte("page"), 4096); err != nil {
			t.Errorf("receive file %d cannot be written: %v", i, err)
		}
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 4096); err != nil {
			t.Errorf("receive file %d cannot punch holes: %v", i, err)
		}
	}
	if !ShrinkSealed(recv[0]) {
		t.Error("the memfd that allows seals was not sealed against shrinking")
	}
	if err := recv[0].Truncate(mib); !errors.Is(err, unix.EPERM) {
		t.Errorf("truncate the sealed memfd: %v, want EPERM", err)
	}
	if ShrinkSealed(recv[1]) {
		t.Error("a memfd that allows no seals reports sealed")
	}

	if _, _, err := RAMFiles(l, 0); err == nil {
		t.Error("RAMFiles without a role: no error")
	}
}
