//go:build linux

package tcp

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
)

// vm is a test guest's RAM: memfds, their test-side mappings and the
// region list a transport is opened with.
type vm struct {
	files []*os.File
	mem   [][]byte // per region
	ram   []transport.RAMRegion
}

// testLayout is two regions split around a hole, in one memfd at
// different offsets, like a VMM with RAM above and below 4 GiB.
var testLayout = []transport.RAMRegion{
	{GPA: 0, Size: 3 << 20, File: 0, Offset: 0},
	{GPA: 1 << 32, Size: 2 << 20, File: 0, Offset: 4 << 20},
}

func newVM(t testing.TB, layout []transport.RAMRegion) *vm {
	t.Helper()
	var size uint64
	for _, r := range layout {
		size = max(size, r.Offset+r.Size)
	}
	f := plugintest.Memfd(t, "ferry-test-ram", int64(size))
	v := &vm{files: []*os.File{f}, ram: layout}
	for _, r := range layout {
		v.mem = append(v.mem, plugintest.Map(t, f, int64(r.Offset), int64(r.Size)))
	}
	return v
}

// page returns the bytes of page p (page index across regions).
func (v *vm) page(p uint64) []byte {
	for i, r := range v.ram {
		n := r.Size / pageSize
		if p < n {
			return v.mem[i][p*pageSize : (p+1)*pageSize]
		}
		p -= n
	}
	panic("page outside RAM")
}

func (v *vm) pages() uint64 {
	var n uint64
	for _, r := range v.ram {
		n += r.Size / pageSize
	}
	return n
}

func (v *vm) request(role transport.Role, cfg schema.Config) transport.OpenRequest {
	return transport.OpenRequest{Role: role, Config: cfg, RAM: v.ram, Files: v.files, Credentials: creds(role)}
}

// testCreds are the package's tests' job credentials: [0] the source's.
var testCreds = sync.OnceValue(func() [2]transport.Credentials {
	src, dst, err := transport.MintCredentials(false)
	if err != nil {
		panic(err)
	}
	return [2]transport.Credentials{src, dst}
})

func creds(role transport.Role) transport.Credentials {
	if role == transport.RoleSend {
		return testCreds()[0]
	}
	return testCreds()[1]
}

// secureRaw authenticates a hand-driven connection as role with the
// tests' credentials (or c, when given).
func secureRaw(t testing.TB, c net.Conn, role transport.Role, cr ...transport.Credentials) net.Conn {
	t.Helper()
	use := creds(role)
	if len(cr) > 0 {
		use = cr[0]
	}
	cfg, err := use.TLSConfig(role)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc, err := transport.Secure(ctx, c, role, cfg, use.Plaintext)
	if err != nil {
		t.Fatalf("authenticate a raw %v peer: %v", role, err)
	}
	return sc
}

// fill writes page p: random bytes, a compressible pattern, or a byte.
func fillRandom(b []byte, r *rand.Rand) {
	for i := 0; i+8 <= len(b); i += 8 {
		u := r.Uint64()
		b[i], b[i+1], b[i+2], b[i+3], b[i+4], b[i+5], b[i+6], b[i+7] =
			byte(u), byte(u>>8), byte(u>>16), byte(u>>24), byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56)
	}
}

func fillCompressible(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < len(b); i += pageSize {
		fillRandom(b[i:i+pageSize/4], r)
		clear(b[i+pageSize/4 : i+pageSize])
	}
}

// freeAddr returns a loopback address whose port was free a moment ago,
// below the ephemeral range where there is room, so that a test that
// listens on it again after a Close does not meet it taken as some
// connection's source port (transporttest.FreeAddr).
func freeAddr(t testing.TB) string {
	t.Helper()
	return transporttest.FreeAddr(t, "127.0.0.1")
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func cfg(addr string, streams int, compress string) schema.Config {
	return schema.Config{"listen": addr, "streams": int64(streams), "compress": compress,
		"connect_timeout": int64(5 * time.Second)}
}

// openPair opens a receiving and a sending transport on src and dst.
func openPair(t testing.TB, src, dst *vm, c schema.Config) (send, recv *Transport) {
	t.Helper()
	return openPairPlain(t, src, dst, c, false)
}

// openPairPlain is openPair, with frames in the clear if plain.
func openPairPlain(t testing.TB, src, dst *vm, c schema.Config, plain bool) (send, recv *Transport) {
	t.Helper()
	return openPairWith(t, New(testLogger(t)), src, dst, c, plain)
}

// openPairWith is openPairPlain with a sending transport of the caller's.
func openPairWith(t testing.TB, send *Transport, src, dst *vm, c schema.Config, plain bool) (_, recv *Transport) {
	t.Helper()
	recv = New(testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	sreq, rreq := src.request(transport.RoleSend, c), dst.request(transport.RoleReceive, c)
	sreq.Credentials.Plaintext, rreq.Credentials.Plaintext = plain, plain
	wg.Go(func() { rerr = recv.Open(ctx, rreq) })
	serr := send.Open(ctx, sreq)
	wg.Wait()
	if serr != nil || rerr != nil {
		send.Close()
		recv.Close()
		t.Fatalf("open: send %v, receive %v", serr, rerr)
	}
	t.Cleanup(func() {
		send.Close()
		recv.Close()
	})
	return send, recv
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openSession is t's open session (nil: none).
func (t *Transport) openSession() *session {
	s, _ := t.slot.Get()
	return s
}
