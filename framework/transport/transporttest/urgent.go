package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// The urgent path (transport API 3): post-copy's page requests and their
// answers, which must never wait behind bulk pages.

// Bounds of the overtaking test. The suite runs on loaded CI machines, so
// they are loose (and looser under the race detector: slowdown); the
// point is that an urgent round trip does not wait for the bulk data
// queued before it (transport.Transport's rule), which takes seconds at
// the rates the test keeps queued.
const (
	urgentP50 = slowdown * 100 * time.Millisecond
	urgentMax = slowdown * 2 * time.Second
)

// landedLog collects Landed's reports on the receiver in the background.
// A run that breaks the contract (transport.PageRun.Check for the
// suite's RAM: empty, of no kind, not inside guest RAM) ends the
// collection with an error that names it, and fails the test: the engine
// takes such a transport for faulty, and after post-copy's switch halts
// the guest for one that claims a write it may not make, or drops one
// that claims nothing it could act on, its pages arriving only after a
// stall and a reconnect (docs/POSTCOPY.md).
type landedLog struct {
	mu    sync.Mutex
	runs  []transport.PageRun
	err   error
	note  chan struct{}
	stop  context.CancelFunc
	ended chan struct{}
}

func (p *pair) collectLanded() *landedLog {
	c, cancel := context.WithCancel(context.Background())
	l := &landedLog{note: make(chan struct{}, 1), stop: cancel, ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		for {
			runs, err := p.recv.Landed(c)
			if bad := invalidRun(runs, p.ram.Pages()); bad != nil {
				err = bad
			}
			l.mu.Lock()
			l.runs = append(l.runs, runs...)
			if err != nil {
				l.err = err
			}
			l.mu.Unlock()
			select {
			case l.note <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	p.t.Cleanup(func() {
		cancel()
		<-l.ended
		l.mu.Lock()
		defer l.mu.Unlock()
		if errors.Is(l.err, errLandedRun) {
			p.t.Errorf("%v", l.err)
		}
	})
	return l
}

// errLandedRun marks a landed run that breaks the contract (invalidRun).
var errLandedRun = errors.New("the transport's Landed reported a run that breaks its contract")

// invalidRun returns an error naming the first of runs that is not a
// valid run of a guest of pages pages (transport.PageRun.Check), or nil.
func invalidRun(runs []transport.PageRun, pages uint64) error {
	for _, r := range runs {
		if err := r.Check(pages); err != nil {
			return fmt.Errorf("%w (%v): every run Landed returns must pass transport.PageRun.Check; "+
				"the engine takes a transport that reports another for faulty and, after post-copy's switch, halts the guest "+
				"or (for a run that claims nothing it could act on) drops the run and waits for its pages to be sent again",
				errLandedRun, err)
		}
	}
	return nil
}

// count returns how often page q of kind was reported.
func (l *landedLog) count(q uint64, kind transport.Kind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.runs {
		if q >= r.First && q-r.First < r.Count && r.Kind == kind {
			n++
		}
	}
	return n
}

// await waits until every page of runs was reported with its kind at
// least once more than before[i] (nil: zero times before).
func (l *landedLog) await(t *testing.T, runs []transport.PageRun, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		missing := -1
		for _, r := range runs {
			for q := r.First; q < r.First+r.Count; q++ {
				if l.count(q, r.Kind) == 0 {
					missing = int(q)
					break
				}
			}
			if missing >= 0 {
				break
			}
		}
		if missing < 0 {
			return
		}
		select {
		case <-l.note:
		case <-deadline:
			l.mu.Lock()
			err := l.err
			l.mu.Unlock()
			t.Fatalf("Landed never reported page %d within %v (Landed error: %v)", missing, within, err)
		}
	}
}

// prime makes sure Landed is armed (it records from its first call on):
// it sends page q urgently until Landed reported it.
func (p *pair) prime(l *landedLog, q uint64) {
	t := p.t
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for l.count(q, transport.KindData) == 0 {
		if time.Now().After(deadline) {
			l.mu.Lock()
			err := l.err
			l.mu.Unlock()
			t.Fatalf("Landed never reported page %d (Landed error: %v)", q, err)
		}
		if err := p.send.SendPagesUrgent(ctx(t), []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}}); err != nil {
			t.Fatalf("SendPagesUrgent: %v", err)
		}
		select {
		case <-l.note:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func testUrgentMessages(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	exchangeOn(t, p, 13, true)
	for _, m := range []transport.Message{
		{Kind: 1, Payload: make([]byte, transport.MaxMessage+1)},
		{Kind: 0, Payload: []byte("kind 0 is invalid")},
	} {
		err := p.recv.SendUrgent(ctx(t), m)
		if err == nil || errors.Is(err, transport.ErrPluginGone) {
			t.Errorf("SendUrgent(kind %d, %d bytes) = %v; want a rejection", m.Kind, len(m.Payload), err)
		}
	}
	// Urgent and ordinary messages are separate streams: each keeps its
	// own order, and neither is delivered by the other's Recv.
	for i := range 5 {
		if err := p.send.SendMessage(ctx(t), transport.Message{Kind: uint32(100 + i)}); err != nil {
			t.Fatal(err)
		}
		if err := p.send.SendUrgent(ctx(t), transport.Message{Kind: uint32(200 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		m, err := p.recv.RecvUrgent(ctx(t))
		if err != nil || m.Kind != uint32(200+i) {
			t.Errorf("RecvUrgent %d = kind %d, %v; want %d", i, m.Kind, err, 200+i)
		}
	}
	for i := range 5 {
		m, err := p.recv.RecvMessage(ctx(t))
		if err != nil || m.Kind != uint32(100+i) {
			t.Errorf("RecvMessage %d = kind %d, %v; want %d", i, m.Kind, err, 100+i)
		}
	}
}

func testUrgentPages(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	n := p.ram.Pages()
	l := p.collectLanded()
	d, z := transport.KindData, transport.KindZero
	runs := []transport.PageRun{
		{First: 5, Count: 1, Kind: d},
		{First: 2000, Count: 100, Kind: d}, // across the region boundary at 2048
		{First: 700, Count: 600, Kind: d},  // more than one frame
		{First: 300, Count: 20, Kind: z},
		{First: n - 1, Count: 1, Kind: d},
	}
	want := p.prepare(21, runs)
	p.prime(l, 5)
	if err := p.send.SendPagesUrgent(ctx(t), runs); err != nil {
		t.Fatalf("SendPagesUrgent: %v", err)
	}
	l.await(t, runs, opTimeout)
	p.ram.expect(t, want)

	for _, r := range []transport.PageRun{
		{First: n - 1, Count: 2, Kind: d},
		{First: n, Count: 1, Kind: z},
		{First: 0, Count: 0, Kind: d},
		{First: 0, Count: 1, Kind: 3},
	} {
		err := p.send.SendPagesUrgent(ctx(t), []transport.PageRun{r})
		if err == nil || errors.Is(err, transport.ErrPluginGone) {
			t.Errorf("SendPagesUrgent(%+v) = %v; want a rejection", r, err)
		}
	}
	// Each side refuses the other's calls, and the session goes on.
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.send.Landed(c); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Landed on the sender = %v; want a refusal", err)
	}
	if err := p.recv.SendPagesUrgent(c, []transport.PageRun{{First: 1, Count: 1, Kind: d}}); err == nil {
		t.Error("SendPagesUrgent on the receiver succeeded")
	}
	again := []transport.PageRun{{First: 9, Count: 3, Kind: d}}
	want = p.prepare(22, again)
	if err := p.send.SendPagesUrgent(ctx(t), again); err != nil {
		t.Fatalf("SendPagesUrgent after the rejects: %v", err)
	}
	l.await(t, again, opTimeout)
	for q := range want {
		if got := p.ram.page(t, p.ram.Recv, q); !bytes.Equal(got, want[q]) {
			t.Errorf("page %d differs after the second urgent send", q)
		}
	}
}

// testUrgentOvertakes is the urgent path's reason to exist: while bulk
// pages keep the sender's queue full, a request (urgent message from the
// receiver) and its answer (urgent page) make the round trip within
// urgentP50 (median) and urgentMax, and Landed reports the page.
func testUrgentOvertakes(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	const bulkPages = 2048 // region 0: the bulk transfer; requests go to region 1
	n := p.ram.Pages()
	p.ram.fill(t, p.ram.sendRW, random(31))
	l := p.collectLanded()
	p.prime(l, n-1)

	stop := make(chan struct{})
	bulkErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				bulkErr <- nil
				return
			default:
			}
			if err := p.send.SendPages(ctx(t), []transport.PageRun{{First: 0, Count: bulkPages, Kind: transport.KindData}}); err != nil {
				bulkErr <- err
				return
			}
		}
	}()
	// The source's fault server: each request names a page, answered urgently.
	served := make(chan error, 1)
	go func() {
		for {
			m, err := p.send.RecvUrgent(ctx(t))
			if err != nil {
				served <- err
				return
			}
			if m.Kind == 2 {
				served <- nil
				return
			}
			q := uint64(m.Payload[0]) | uint64(m.Payload[1])<<8
			if err := p.send.SendPagesUrgent(ctx(t), []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}}); err != nil {
				served <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the bulk queue fill
	before, _ := p.send.Stats(ctx(t))
	var rtts []time.Duration
	for i := range 40 {
		q := uint64(bulkPages + 10 + i*20)
		start := time.Now()
		if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: 1, Payload: []byte{byte(q), byte(q >> 8)}}); err != nil {
			t.Fatalf("SendUrgent: %v", err)
		}
		l.await(t, []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}}, urgentMax)
		rtts = append(rtts, time.Since(start))
		time.Sleep(10 * time.Millisecond) // the bulk path keeps moving between requests
	}
	after, _ := p.send.Stats(ctx(t))
	if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: 2}); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("the source's request server: %v", err)
	}
	close(stop)
	if err := <-bulkErr; err != nil {
		t.Fatalf("bulk SendPages: %v", err)
	}
	if err := p.send.Flush(ctx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	slices.Sort(rtts)
	p50, p99 := rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	moved := after.BytesWire - before.BytesWire
	t.Logf("request→page round trip while %d MiB of bulk pages moved: p50 %v, p99 %v, max %v", moved>>20, p50, p99, rtts[len(rtts)-1])
	if p50 > urgentP50 {
		t.Errorf("median round trip %v exceeds %v: urgent traffic waits behind bulk pages", p50, urgentP50)
	}
	if moved < 8<<20 {
		t.Errorf("only %d bytes of bulk pages moved during the round trips: the test did not load the bulk path", moved)
	}
	// Every requested page holds the sender's bytes.
	for i := range 40 {
		q := uint64(bulkPages + 10 + i*20)
		if !bytes.Equal(p.ram.page(t, p.ram.Recv, q), p.ram.page(t, p.ram.Send, q)) {
			t.Errorf("requested page %d differs from the sender's", q)
		}
	}
}

// testUrgentOrdering: the per-page rule across the two paths. A bulk copy
// queued after an urgent one is written after it (the later queueing
// wins); a bulk copy queued before an urgent one never overwrites it,
// however the two race; and Landed reports every write.
func testUrgentOrdering(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	l := p.collectLanded()
	p.prime(l, 0)
	d := transport.KindData
	gen := random(41)

	// Later bulk wins.
	q := uint64(77)
	p.ram.setPage(t, p.ram.sendRW, q, gen(0))
	if err := p.send.SendPagesUrgent(ctx(t), []transport.PageRun{{First: q, Count: 1, Kind: d}}); err != nil {
		t.Fatal(err)
	}
	l.await(t, []transport.PageRun{{First: q, Count: 1, Kind: d}}, opTimeout)
	later := gen(0)
	p.ram.setPage(t, p.ram.sendRW, q, later)
	p.sendAndFlush([]transport.PageRun{{First: q, Count: 1, Kind: d}})
	if !bytes.Equal(p.ram.page(t, p.ram.Recv, q), later) {
		t.Errorf("page %d: a bulk copy queued after the urgent one did not win", q)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.count(q, d) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if c := l.count(q, d); c != 2 {
		t.Errorf("page %d written twice (urgent, then bulk) was reported %d times", q, c)
	}

	// Earlier bulk never overwrites a later urgent copy: every round
	// queues a large bulk transfer ending in the round's pages with old
	// contents, changes them, and sends them urgently.
	for round := range 5 {
		pages := []uint64{uint64(2100 + 50*round), uint64(2900 - 30*round), uint64(1000 + round)}
		for _, q := range pages {
			p.ram.setPage(t, p.ram.sendRW, q, gen(q))
		}
		bulk := []transport.PageRun{{First: 0, Count: 2048, Kind: d}}
		for _, q := range pages {
			bulk = append(bulk, transport.PageRun{First: q, Count: 1, Kind: d})
		}
		want := p.overtake(t, l, gen, bulk, pages, uint64(3050+round))
		for q, w := range want {
			if !bytes.Equal(p.ram.page(t, p.ram.Recv, q), w) {
				t.Errorf("round %d: page %d does not hold the urgent copy queued last", round, q)
			}
		}
	}

	// The same with a long zero run queued before the urgent copies: it
	// covers them and many pages around them, across both regions, and
	// must clear all of those but the urgent ones.
	zero := make([]byte, pageSize)
	for round := range 3 {
		pages := []uint64{uint64(2100 + 50*round), uint64(900 + round), uint64(1500 - 7*round)}
		for q := uint64(800); q < 2900; q++ {
			p.ram.setPage(t, p.ram.sendRW, q, zero)
		}
		bulk := []transport.PageRun{{First: 0, Count: 2048, Kind: d}, {First: 800, Count: 2100, Kind: transport.KindZero}}
		want := p.overtake(t, l, gen, bulk, pages, uint64(3060+round))
		for q := uint64(800); q < 2900; q++ {
			w, ok := want[q]
			if !ok {
				w = zero
			}
			if !bytes.Equal(p.ram.page(t, p.ram.Recv, q), w) {
				t.Fatalf("zero round %d: page %d holds %x..., want %x... (urgent copy: %v)", round, q, p.ram.page(t, p.ram.Recv, q)[:8], w[:8], ok)
			}
		}
	}
}

// overtake queues bulk, then gives pages new contents (from gen) and
// sends them urgently, then page marker; it returns the new contents
// once the bulk runs are flushed and the marker landed (urgent pages
// land in order, so the round's pages have too).
func (p *pair) overtake(t *testing.T, l *landedLog, gen func(uint64) []byte, bulk []transport.PageRun, pages []uint64, marker uint64) map[uint64][]byte {
	t.Helper()
	if err := p.send.SendPages(ctx(t), bulk); err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]byte{}
	var urgent []transport.PageRun
	for _, q := range pages {
		want[q] = gen(q)
		p.ram.setPage(t, p.ram.sendRW, q, want[q])
		urgent = append(urgent, transport.PageRun{First: q, Count: 1, Kind: transport.KindData})
	}
	m := []transport.PageRun{{First: marker, Count: 1, Kind: transport.KindData}}
	if err := p.send.SendPagesUrgent(ctx(t), append(urgent, m...)); err != nil {
		t.Fatal(err)
	}
	if err := p.send.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	l.await(t, m, opTimeout)
	return want
}

// testLandedCountsBulk: Landed reports every page queued with SendPages,
// data and zero runs alike, exactly once, once a Flush returned: the
// engine counts on it (at post-copy's switch the destination waits until
// its Landed reported as many pages as the source queued before POSTCOPY,
// and takes everything after as post-copy's).
func testLandedCountsBulk(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	l := p.collectLanded()
	p.prime(l, 0)
	time.Sleep(200 * time.Millisecond) // a second priming copy, if any, reported by now
	total := func() uint64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		var n uint64
		for _, r := range l.runs {
			n += r.Count
		}
		return n
	}
	base := total()
	d, z := transport.KindData, transport.KindZero
	runs := []transport.PageRun{{First: 1, Count: 100, Kind: d}, {First: 200, Count: 50, Kind: z}, {First: 300, Count: 1, Kind: d},
		{First: 301, Count: 3, Kind: z}, {First: 1000, Count: 700, Kind: d}, {First: 1700, Count: 1300, Kind: z},
		{First: p.ram.Pages() - 2, Count: 2, Kind: d}} // the last pages: a report ending at guest RAM's end is its
	var queued uint64
	for _, r := range runs {
		queued += r.Count
	}
	p.sendAndFlush(runs)
	deadline := time.Now().Add(opTimeout)
	for total()-base < queued && time.Now().Before(deadline) {
		select {
		case <-l.note:
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond) // anything reported twice would show by now
	if got := total() - base; got != queued {
		t.Fatalf("Landed reported %d pages for the %d queued with SendPages and flushed (zero runs count too, each page once)", got, queued)
	}
	l.await(t, runs, time.Second) // each page with its kind
}

// testUrgentClosed: an urgent message sent before Close still arrives;
// then RecvUrgent and the receiver's Landed end with ErrClosed; a call
// blocked on the closing side returns.
func testUrgentClosed(t *testing.T, p *pair) {
	for _, dir := range []struct {
		name          string
		closer, other transport.Transport
	}{{"sender closes", p.send, p.recv}, {"receiver closes", p.recv, p.send}} {
		p.open()
		p.skipWithoutUrgent()
		var l *landedLog
		if dir.closer == p.send {
			l = p.collectLanded()
			p.prime(l, 3)
		}
		blocked := make(chan error, 1)
		go func() {
			_, err := dir.closer.RecvUrgent(ctx(t))
			blocked <- err
		}()
		if err := dir.closer.SendUrgent(ctx(t), transport.Message{Kind: 9, Payload: []byte("last words")}); err != nil {
			t.Fatalf("%s: SendUrgent: %v", dir.name, err)
		}
		time.Sleep(50 * time.Millisecond) // RecvUrgent is waiting
		if err := dir.closer.Close(); err != nil {
			t.Fatalf("%s: Close: %v", dir.name, err)
		}
		bounded(t, dir.name+": RecvUrgent blocked on the closing side", 10*time.Second, func() {
			if err := <-blocked; err == nil {
				t.Errorf("%s: RecvUrgent blocked across Close returned no error", dir.name)
			}
		})
		m, err := dir.other.RecvUrgent(ctx(t))
		if err != nil || m.Kind != 9 {
			t.Errorf("%s: the urgent message sent before Close: kind %d, %v", dir.name, m.Kind, err)
		}
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = dir.other.RecvUrgent(c)
		cancel()
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("%s: RecvUrgent on the other side = %v; want ErrClosed", dir.name, err)
		}
		if l != nil {
			bounded(t, "Landed after the sender closed", 10*time.Second, func() { <-l.ended })
			if !errors.Is(l.err, transport.ErrClosed) {
				t.Errorf("%s: Landed on the receiver ended with %v; want ErrClosed", dir.name, l.err)
			}
		}
		c, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		err = dir.other.SendUrgent(c, transport.Message{Kind: 1})
		for i := 0; err == nil && i < 100; i++ { // a write may still reach the kernel once
			time.Sleep(20 * time.Millisecond)
			err = dir.other.SendUrgent(c, transport.Message{Kind: 1})
		}
		cancel()
		if err == nil {
			t.Errorf("%s: SendUrgent to a peer that closed keeps succeeding", dir.name)
		}
		p.closeBoth()
	}
}

// exchangeOn is exchange on ordinary (urgent false) or urgent messages.
func exchangeOn(t *testing.T, p *pair, n int, urgent bool) {
	t.Helper()
	sendFn := func(tr transport.Transport, m transport.Message) error {
		if urgent {
			return tr.SendUrgent(ctx(t), m)
		}
		return tr.SendMessage(ctx(t), m)
	}
	recvFn := func(tr transport.Transport) (transport.Message, error) {
		if urgent {
			return tr.RecvUrgent(ctx(t))
		}
		return tr.RecvMessage(ctx(t))
	}
	errs := make(chan error, 4)
	send := func(tr transport.Transport, ms []transport.Message) {
		for _, m := range ms {
			if err := sendFn(tr, m); err != nil {
				errs <- fmt.Errorf("send kind %d (urgent %v): %w", m.Kind, urgent, err)
				return
			}
		}
		errs <- nil
	}
	recv := func(tr transport.Transport, ms []transport.Message) {
		for i, want := range ms {
			got, err := recvFn(tr)
			if err != nil {
				errs <- fmt.Errorf("receive %d (urgent %v): %w", i, urgent, err)
				return
			}
			if got.Kind != want.Kind || !bytes.Equal(got.Payload, want.Payload) {
				errs <- fmt.Errorf("message %d (urgent %v): kind %d, %d bytes; want kind %d, %d bytes (out of order or corrupt)",
					i, urgent, got.Kind, len(got.Payload), want.Kind, len(want.Payload))
				return
			}
		}
		errs <- nil
	}
	down, up := messages('d', n), messages('u', n)
	go send(p.send, down)
	go recv(p.recv, down)
	go send(p.recv, up)
	go recv(p.send, up)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// skipWithoutUrgent skips the test, loudly, when the open sender's
// transport has no urgent path: the contract lets a transport return
// ErrNotSupported there. The probe is a message SendUrgent must refuse
// anyway (kind 0), so a transport with the path sees nothing.
func (p *pair) skipWithoutUrgent() {
	p.t.Helper()
	err := p.send.SendUrgent(ctx(p.t), transport.Message{Kind: 0})
	if errors.Is(err, transport.ErrNotSupported) {
		p.t.Skipf("SKIPPED: this transport has no urgent path: %v", err)
	}
}
