package transporttest

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

const pageSize = framework.PageSize

// Layout is the suite's guest RAM, plugintest.SuiteRAM as transport
// regions.
var Layout = plugintest.SuiteLayout(func(g plugintest.Region) transport.RAMRegion {
	return transport.RAMRegion{GPA: g.GPA, Size: g.Size, File: g.File, Offset: g.Offset}
})

// RAM is the guest memory of one test: the same Layout over the
// sender's and the receiver's own memfds. Send are the sender's files
// opened read-only, as a sending VMM hands them to its transport
// (engine.RAMFiles): a transport must never need to write the source's
// RAM. The suite closes the files when the test ends.
type RAM struct {
	Layout     []transport.RAMRegion
	Send, Recv []*os.File
	sendRW     []*os.File // the sender's memfds, which the suite writes
}

// Pages is the number of guest pages.
func (r RAM) Pages() uint64 { return transport.Pages(r.Layout) }

func newRAM(t *testing.T) RAM {
	t.Helper()
	r := RAM{Layout: Layout, sendRW: plugintest.SuiteMemfds(t, "ferry-transporttest-send"),
		Recv: plugintest.SuiteMemfds(t, "ferry-transporttest-recv")}
	for _, f := range r.sendRW {
		r.Send = append(r.Send, plugintest.ReadOnly(t, f))
	}
	return r
}

// locate returns the file and byte offset of page p.
func (r RAM) locate(files []*os.File, p uint64) (*os.File, int64) {
	for _, g := range r.Layout {
		n := g.Size / pageSize
		if p < n {
			return files[g.File], int64(g.Offset + p*pageSize)
		}
		p -= n
	}
	panic(fmt.Sprintf("page %d outside the suite's RAM", p))
}

func (r RAM) page(t *testing.T, files []*os.File, p uint64) []byte {
	t.Helper()
	f, off := r.locate(files, p)
	b := make([]byte, pageSize)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read page %d: %v", p, err)
	}
	return b
}

func (r RAM) setPage(t *testing.T, files []*os.File, p uint64, b []byte) {
	t.Helper()
	f, off := r.locate(files, p)
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("write page %d: %v", p, err)
	}
}

// fill writes every page of files: page p gets gen(p).
func (r RAM) fill(t *testing.T, files []*os.File, gen func(p uint64) []byte) {
	t.Helper()
	var p uint64
	for _, g := range r.Layout {
		buf := make([]byte, 0, g.Size)
		for i := uint64(0); i < g.Size/pageSize; i++ {
			buf = append(buf, gen(p+i)...)
		}
		if _, err := files[g.File].WriteAt(buf, int64(g.Offset)); err != nil {
			t.Fatalf("fill RAM: %v", err)
		}
		p += g.Size / pageSize
	}
}

// receiverFill is the receiver's content before a test: never a page a
// sender sends.
func receiverFill(p uint64) []byte {
	return bytes.Repeat([]byte{0xEE, byte(p), byte(p >> 8), 0x5A}, pageSize/4)
}

// expect checks the receiver's pages: want[p] for every page in want,
// receiverFill for the others (the destination wrote nowhere else).
func (r RAM) expect(t *testing.T, want map[uint64][]byte) {
	t.Helper()
	bad := 0
	for p := uint64(0); p < r.Pages(); p++ {
		w, sent := want[p]
		if !sent {
			w = receiverFill(p)
		}
		if got := r.page(t, r.Recv, p); !bytes.Equal(got, w) {
			if bad++; bad <= 5 {
				t.Errorf("receiver page %d (sent: %v) differs from what it should hold (first bytes %x, want %x)", p, sent, got[:8], w[:8])
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d pages differ in all", bad)
	}
}
