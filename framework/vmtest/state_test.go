package vmtest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/ferryvm/ferry/framework/vmtest"
)

// saved returns a paused source's state blob.
func saved(t testing.TB) []byte {
	src := newVM(t, vmtest.Options{Free: free})
	src.Write(0)
	src.Pause(context.Background())
	b, err := src.SaveState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := saved(t)
	dst := newVM(t, vmtest.Options{Incoming: true})
	if err := dst.Resume(); err == nil {
		t.Fatal("a destination resumed before loading its state")
	}
	if err := dst.LoadState(ctx, b); err != nil {
		t.Fatal(err)
	}
	if dst.State() != vmtest.StatePaused || dst.Free().Count() != 768 {
		t.Fatalf("loaded: %s, %d free pages", dst.State(), dst.Free().Count())
	}
	if err := dst.Resume(); err != nil || dst.State() != vmtest.StateRunning {
		t.Fatalf("resume: %v, %s", err, dst.State())
	}
}

// TestBadState: every damaged blob is refused, and the destination stays
// incoming.
func TestBadState(t *testing.T) {
	good := saved(t)
	recrc := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
		return b
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"magic":     edit(func(b []byte) []byte { b[0] = 'X'; return recrc(b) }),
		"version":   edit(func(b []byte) []byte { b[4] = 2; return recrc(b) }),
		"crc":       edit(func(b []byte) []byte { b[9] ^= 1; return b }),
		"count":     edit(func(b []byte) []byte { b[16]++; return recrc(b) }),
		"run":       edit(func(b []byte) []byte { b[20+7] = 0xFF; return recrc(b) }),
	} {
		t.Run(name, func(t *testing.T) {
			dst := newVM(t, vmtest.Options{Incoming: true})
			err := dst.LoadState(context.Background(), b)
			if !errors.Is(err, vmtest.ErrBadState) || dst.State() != vmtest.StateIncoming {
				t.Fatalf("load: %v, state %s", err, dst.State())
			}
		})
	}
}

func FuzzLoadState(f *testing.F) {
	f.Add([]byte("FVMT"))
	f.Add(saved(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		dst := newVM(t, vmtest.Options{Incoming: true})
		if err := dst.LoadState(context.Background(), b); err == nil && dst.State() != vmtest.StatePaused {
			t.Fatalf("accepted %x but is %s", b, dst.State())
		}
	})
}
