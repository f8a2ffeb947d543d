package transporttest

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

func testInfoSchema(t *testing.T, p *pair) {
	for _, side := range []struct {
		name string
		tr   transport.Transport
		cfg  schema.Config
	}{{"sender", p.send, p.sendCfg}, {"receiver", p.recv, p.recvCfg}} {
		info, err := side.tr.Info(ctx(t))
		if err != nil || info.Name == "" {
			t.Errorf("%s: Info before Open = %+v, %v; want a name", side.name, info, err)
		}
		sch, err := side.tr.Schema(ctx(t))
		if err != nil {
			t.Errorf("%s: Schema before Open: %v", side.name, err)
			continue
		}
		if err := sch.Validate(); err != nil {
			t.Errorf("%s: malformed schema: %v", side.name, err)
		}
		if _, err := schema.Coerce(sch, side.cfg); err != nil {
			t.Errorf("%s: the harness's config does not fit the schema: %v", side.name, err)
		}
		// Validate refuses nothing Open in either role takes (transport.Validator).
		if err := transport.Validate(ctx(t), side.tr, side.cfg); err != nil {
			t.Errorf("%s: Validate refuses the config the suite opens it with: %v", side.name, err)
		}
	}
}

// random returns a generator of random pages, the same for a seed.
func random(seed uint64) func(uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	return func(uint64) []byte {
		b := make([]byte, pageSize)
		for i := 0; i < len(b); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		return b
	}
}

// workload is a set of runs over the suite's RAM: data runs (long ones,
// one across the region boundary, the last page, many single pages) and
// zero runs over pages the receiver holds as non-zero.
func workload(pages uint64) []transport.PageRun {
	d, z := transport.KindData, transport.KindZero
	runs := []transport.PageRun{
		{First: 0, Count: 300, Kind: d},
		{First: 300, Count: 40, Kind: z},
		{First: 1900, Count: 300, Kind: d}, // crosses into region 1 at 2048
		{First: 2300, Count: 200, Kind: d},
		{First: 2500, Count: 550, Kind: z}, // long: spans cells of a transport that deals pages out in cells
		{First: pages - 1, Count: 1, Kind: d},
	}
	for q := uint64(400); q < 1800; q += 7 {
		k := d
		if q%3 == 0 {
			k = z
		}
		runs = append(runs, transport.PageRun{First: q, Count: 1, Kind: k})
	}
	return runs
}

// prepare fills the sender with random pages (zero where a zero run goes)
// and the receiver with receiverFill, and returns what the receiver
// should hold after runs arrived.
func (p *pair) prepare(seed uint64, runs []transport.PageRun) map[uint64][]byte {
	p.ram.fill(p.t, p.ram.sendRW, random(seed))
	p.ram.fill(p.t, p.ram.Recv, receiverFill)
	want := map[uint64][]byte{}
	for _, r := range runs {
		for q := r.First; q < r.First+r.Count; q++ {
			if r.Kind == transport.KindZero {
				p.ram.setPage(p.t, p.ram.sendRW, q, make([]byte, pageSize))
				want[q] = make([]byte, pageSize)
			} else {
				want[q] = p.ram.page(p.t, p.ram.Send, q)
			}
		}
	}
	return want
}

func testPages(t *testing.T, p *pair) {
	p.open()
	runs := workload(p.ram.Pages())
	want := p.prepare(1, runs)
	half := len(runs) / 2
	if err := p.send.SendPages(ctx(t), runs[:half]); err != nil {
		t.Fatalf("SendPages: %v", err)
	}
	p.sendAndFlush(runs[half:])
	p.ram.expect(t, want)
}

func testFlushIntervals(t *testing.T, p *pair) {
	p.open()
	d := transport.KindData
	runs := []transport.PageRun{{First: 10, Count: 5, Kind: d}, {First: 2100, Count: 1, Kind: d}}
	p.prepare(2, runs)
	p.sendAndFlush(runs)

	// Second interval: new contents for the same pages, and page 2100
	// becomes zero.
	gen := random(3)
	want := map[uint64][]byte{2100: make([]byte, pageSize)}
	for q := uint64(10); q < 15; q++ {
		want[q] = gen(q)
		p.ram.setPage(t, p.ram.sendRW, q, want[q])
	}
	p.ram.setPage(t, p.ram.sendRW, 2100, make([]byte, pageSize))
	p.sendAndFlush([]transport.PageRun{{First: 10, Count: 5, Kind: d}, {First: 2100, Count: 1, Kind: transport.KindZero}})
	p.ram.expect(t, want)

	// Third interval: one zero run over most of guest RAM, across the
	// two regions, over pages the receiver holds stale bytes in; then,
	// later in the same interval, new contents for two pages inside it.
	zero := make([]byte, pageSize)
	for q := uint64(5); q < 3000; q++ {
		want[q] = zero
		p.ram.setPage(t, p.ram.sendRW, q, zero)
	}
	for _, q := range []uint64{12, 2100} {
		want[q] = gen(q)
		p.ram.setPage(t, p.ram.sendRW, q, want[q])
	}
	p.sendAndFlush([]transport.PageRun{{First: 5, Count: 2995, Kind: transport.KindZero},
		{First: 12, Count: 1, Kind: d}, {First: 2100, Count: 1, Kind: d}})
	p.ram.expect(t, want)
}

func testBadRuns(t *testing.T, p *pair) {
	p.open()
	n := p.ram.Pages()
	for _, r := range []transport.PageRun{
		{First: n - 1, Count: 2, Kind: transport.KindData},
		{First: n, Count: 1, Kind: transport.KindZero},
		{First: math.MaxUint64, Count: 2, Kind: transport.KindData},
		{First: 1, Count: math.MaxUint64, Kind: transport.KindZero},
		{First: 0, Count: 1, Kind: 0},
		{First: 0, Count: 1, Kind: 3},
	} {
		err := p.send.SendPages(ctx(t), []transport.PageRun{r})
		if err == nil || errors.Is(err, transport.ErrPluginGone) {
			t.Errorf("SendPages(%+v) = %v; want a rejection", r, err)
		}
	}
	// The session still works.
	runs := []transport.PageRun{{First: n - 1, Count: 1, Kind: transport.KindData}}
	want := p.prepare(4, runs)
	p.sendAndFlush(runs)
	p.ram.expect(t, want)
}

func testStats(t *testing.T, p *pair) {
	p.open()
	runs := workload(p.ram.Pages())
	p.prepare(5, runs)
	p.sendAndFlush(runs)
	var data, zero uint64
	for _, r := range runs {
		if r.Kind == transport.KindData {
			data += r.Count
		} else {
			zero += r.Count
		}
	}
	check := func(when string, tr transport.Transport, side string) {
		st, err := tr.Stats(ctx(t))
		if err != nil {
			t.Fatalf("%s Stats %s: %v", side, when, err)
		}
		if st.PagesData != data || st.PagesZero != zero || st.BytesWire == 0 || st.Compressed > st.PagesData {
			t.Errorf("%s Stats %s = %+v; want %d data pages, %d zero pages, some bytes", side, when, st, data, zero)
		}
	}
	check("after Flush", p.send, "sender")
	check("after Flush", p.recv, "receiver")
	// The engine reports a migration's totals after closing the transport.
	p.closeBoth()
	check("after Close", p.send, "sender")
	check("after Close", p.recv, "receiver")
}
