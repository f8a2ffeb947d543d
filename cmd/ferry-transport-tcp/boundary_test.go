package main

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// memVM is a Source/Target over a memfd with no guest: one pass moves it all.
type memVM struct {
	fd  int
	mem []byte
}

func newMemVM(b testing.TB, size int, fill bool) *memVM {
	fd, err := unix.MemfdCreate("bench-ram", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	unix.Ftruncate(fd, int64(size))
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	if fill { // incompressible, no zero pages
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i+8 <= len(m); i += 8 {
			v := r.Uint64() | 1
			for k := 0; k < 8; k++ {
				m[i+k] = byte(v >> (8 * k))
			}
		}
	}
	b.Cleanup(func() { unix.Munmap(m); unix.Close(fd) })
	return &memVM{fd: fd, mem: m}
}

func (v *memVM) RAM() framework.Layout {
	return framework.Layout{{GPA: 0, Size: uint64(len(v.mem)), Fd: v.fd}}
}
func (v *memVM) Memory(int) []byte                         { return v.mem }
func (v *memVM) StartDirtyLog() error                      { return nil }
func (v *memVM) SyncDirtyLog(*bitmap.Bitmap) error         { return nil }
func (v *memVM) StopDirtyLog() error                       { return nil }
func (v *memVM) Pause(context.Context) error               { return nil }
func (v *memVM) Resume() error                             { return nil }
func (v *memVM) SaveState(context.Context) ([]byte, error) { return []byte("state"), nil }
func (v *memVM) LoadState(context.Context, []byte) error   { return nil }

// BenchmarkPluginBoundary moves 1 GiB of incompressible pages with the TCP
// transport in process and as plugin processes, through the same engine:
// the difference is the cost of the plugin boundary (target: < 10%).
func BenchmarkPluginBoundary(b *testing.B) {
	const size = 1 << 30
	src, dst := newMemVM(b, size, true), newMemVM(b, size, false)
	plugin, _ := filepath.Abs("../../bin/plugins/ferry-transport-tcp")
	for _, mode := range []string{"in-process", "plugin"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "plugin" {
				if _, err := os.Stat(plugin); err != nil {
					b.Skipf("SKIPPED: %s missing (run make): %v", plugin, err)
				}
			}
			var secs float64
			for i := 0; i < b.N; i++ {
				send, recv := transports(b, mode, plugin, src, dst)
				l, _ := net.Listen("tcp", "127.0.0.1:0")
				port := l.Addr().(*net.TCPAddr).Port
				l.Close()
				cfg := schema.Config{"listen": "127.0.0.1:" + strconv.Itoa(port), "streams": int64(2),
					"compress": "none", "connect_timeout": int64(10 * time.Second)}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				srcCreds, dstCreds, _ := transport.MintCredentials(true) // the boundary, not the cipher, is measured
				var wg sync.WaitGroup
				var rerr error
				wg.Go(func() {
					_, rerr = engine.Receive(ctx, dst, recv, engine.Options{Transport: cfg, Credentials: dstCreds})
				})
				start := time.Now()
				_, serr := engine.Send(ctx, src, send, engine.Options{Transport: cfg, Credentials: srcCreds})
				secs += time.Since(start).Seconds()
				wg.Wait()
				cancel()
				send.Close()
				recv.Close()
				if serr != nil || rerr != nil {
					b.Fatalf("send %v receive %v", serr, rerr)
				}
			}
			b.ReportMetric(float64(size)*float64(b.N)/secs/1e9, "GB/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func transports(b *testing.B, mode, plugin string, src, dst *memVM) (transport.Transport, transport.Transport) {
	if mode == "in-process" {
		return tcp.New(nil), tcp.New(nil)
	}
	launch := func(v *memVM, role transport.Role) transport.Transport {
		files, _, err := engine.RAMFiles(v.RAM(), role)
		if err != nil {
			b.Fatal(err)
		}
		tr, err := transport.Launch(context.Background(), plugin, files, hclog.NewNullLogger())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			for _, f := range files {
				f.Close()
			}
		})
		return tr
	}
	return launch(src, transport.RoleSend), launch(dst, transport.RoleReceive)
}
