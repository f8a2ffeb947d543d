//go:build linux

package tcp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestRoundTrip sends random pages, compressible pages and zero runs
// over 1, 2 and 4 streams with and without lz4 and compares guest RAM.
func TestRoundTrip(t *testing.T) {
	for _, streams := range []int{1, 2, 4} {
		for _, comp := range []string{"lz4", "none"} {
			t.Run(fmt.Sprintf("streams=%d/%s", streams, comp), func(t *testing.T) {
				roundTrip(t, streams, comp)
			})
		}
	}
}

func roundTrip(t *testing.T, streams int, comp string) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	r := rand.New(rand.NewPCG(uint64(streams), 7))
	n := src.pages()
	for i := range src.mem {
		fillRandom(src.mem[i], r)
	}
	// The destination starts with junk: zero runs must clear it.
	for i := range dst.mem {
		for j := range dst.mem[i] {
			dst.mem[i][j] = 0xa5
		}
	}
	var runs []transport.PageRun
	var want struct{ data, zero, comp uint64 }
	for p := uint64(0); p < n; {
		c := min(1+r.Uint64N(100), n-p)
		kind := r.IntN(3)
		if len(runs) < 3 {
			kind = 1 // compressible first, before the compressor may give up
		}
		switch kind {
		case 0:
			for q := p; q < p+c; q++ {
				clear(src.page(q))
			}
			runs = append(runs, transport.PageRun{First: p, Count: c, Kind: transport.KindZero})
			want.zero += c
		case 1:
			for q := p; q < p+c; q++ {
				fillCompressible(src.page(q), q)
			}
			runs = append(runs, transport.PageRun{First: p, Count: c, Kind: transport.KindData})
			want.data += c
		default:
			runs = append(runs, transport.PageRun{First: p, Count: c, Kind: transport.KindData})
			want.data += c
		}
		p += c
	}
	send, recv := openPair(t, src, dst, cfg(freeAddr(t), streams, comp))
	ctx := ctxT(t)
	for i := 0; i < len(runs); i += 5 {
		if err := send.SendPages(ctx, runs[i:min(i+5, len(runs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for p := uint64(0); p < n; p++ {
		if !bytes.Equal(src.page(p), dst.page(p)) {
			t.Fatalf("page %d differs after Flush", p)
		}
	}
	ss, _ := send.Stats(ctx)
	rs, _ := recv.Stats(ctx)
	if ss.PagesData != want.data || ss.PagesZero != want.zero || rs.PagesData != want.data || rs.PagesZero != want.zero {
		t.Fatalf("stats: send %+v, receive %+v, want %d data %d zero", ss, rs, want.data, want.zero)
	}
	if ss.BytesWire != rs.BytesWire || ss.Compressed != rs.Compressed {
		t.Fatalf("send and receive disagree: %+v vs %+v", ss, rs)
	}
	if comp == "lz4" && ss.Compressed == 0 || comp == "none" && ss.Compressed != 0 {
		t.Fatalf("compress=%s but %d pages went compressed", comp, ss.Compressed)
	}
	t.Logf("%+v", ss)
}
