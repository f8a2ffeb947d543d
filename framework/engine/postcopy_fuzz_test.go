package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/transport"
)

// FuzzPostcopyReceive drives a whole post-copy destination (Receive, a
// real userfaultfd) from a hostile source and a transport whose landed
// reports the fuzzer writes: messages, landed runs (inside guest RAM or
// not, overflowing, of any kind), guest touches through the Toucher,
// and session ends, after which the next session (a reconnect: RESUME,
// MISSING) begins. FuzzReceive never gets past READY into post-copy.
//
// What it checks, whatever arrives: no panic; Receive returns within
// pcFuzzBound; a landed run outside guest RAM taken in post-copy fails
// Receive; a landed run over a page the guest already owned (its touch
// returned while the Toucher was set), of no kind too, fails Receive
// (an empty run inside guest RAM, which the engine drops, is neither); a Receive that
// returns nil left the VM running, resumed once, never halted, every
// page here and the Toucher taken back; RUNNING goes out only for a VM
// that was resumed; a halted VM means an error. And guest RAM, against
// the source's at the switch (pcFuzzSource), whatever the engine's own
// page check says (judgeRAM, postcopy_oracle_test.go): no ABORT after
// Resume; no Resume once COMMIT found pages that an honest HASHES named
// held here with other contents than the source's; ErrPostcopyCheck
// only with the VM running here; a Receive that returns nil leaves
// every such page as the source held it, the guest having read none
// otherwise. A COMMIT in post-copy waits for the landings the script
// puts before it to be checked (commitHeld).
//
// What it does not check: the contents of pages no honest HASHES named
// (a transport that writes wrong bytes and reports them is all the
// engine sees), a wrong page landing between COMMIT's arrival and
// Resume, a Halt that fails, and the window between the fault
// service's Settle and Postcopy(nil): a landed run for an owned page
// reported there is not counted as one (see pcFuzz.land).
func FuzzPostcopyReceive(f *testing.F) {
	if err := uffd.Available(); err != nil {
		f.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	old := statsInterval
	statsInterval = 10 * time.Millisecond // the post-copy stall watch's tick
	f.Cleanup(func() { statsInterval = old })
	for _, seed := range pcFuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) { runPCFuzz(t, b, pcFuzzFast) })
}

// pcFuzzRegions: 64 pages in two regions, so that a page index of the
// guest's size falls on a bitmap word boundary.
var pcFuzzRegions = [][2]uint64{{0, 32 << 12}, {1 << 20, 32 << 12}}

// pcFuzzTag is the seeds' migration tag.
var pcFuzzTag = migrationTag{0xfe, 0x55, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}

// pcFuzzBound bounds one Receive: its timeouts are all well below it.
const pcFuzzBound = 20 * time.Second

// Items of a fuzzed session (pcFuzzItem.op).
const (
	pcItemMsg   = iota // a message from the source
	pcItemLand         // a batch of landed runs
	pcItemTouch        // the guest touches a page (through the Toucher)
	pcItemEnd          // the session ends; the next items are the next session's
	pcItemOps
)

// pcFuzzItem is one step of the script. A landed batch or touch is
// released once every message before it in its session was received.
type pcFuzzItem struct {
	op   int
	msg  transport.Message
	runs []transport.PageRun
	page uint64
}

// parsePCFuzz splits b into sessions of items: op (1 byte, mod
// pcItemOps); a message is kind (1 byte), payload length (2 bytes LE,
// cut to what is left), payload; a landed batch is a run count (1 byte,
// mod 8), each run first and count (uvarints) and kind (1 byte); a touch
// is a page (uvarint). A HASHES of 16 bytes naming pages inside guest
// RAM is filled in with the source's hashes (pcHonestHashes).
func parsePCFuzz(b []byte) [][]pcFuzzItem {
	sessions := [][]pcFuzzItem{nil}
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	for len(b) > 0 {
		op := int(b[0]) % pcItemOps
		b = b[1:]
		cur := &sessions[len(sessions)-1]
		switch op {
		case pcItemMsg:
			if len(b) < 3 {
				return sessions
			}
			k, n := uint32(b[0]), int(binary.LittleEndian.Uint16(b[1:]))
			b = b[3:]
			n = min(n, len(b))
			*cur = append(*cur, pcFuzzItem{op: op, msg: transport.Message{Kind: k, Payload: b[:n:n]}})
			b = b[n:]
		case pcItemLand:
			if len(b) < 1 {
				return sessions
			}
			n := int(b[0]) % 8
			b = b[1:]
			var runs []transport.PageRun
			for range n {
				first, count := uv(), uv()
				var kind byte
				if len(b) > 0 {
					kind, b = b[0], b[1:]
				}
				runs = append(runs, transport.PageRun{First: first, Count: count, Kind: transport.Kind(kind)})
			}
			*cur = append(*cur, pcFuzzItem{op: op, runs: runs})
		case pcItemTouch:
			*cur = append(*cur, pcFuzzItem{op: op, page: uv()})
		case pcItemEnd:
			sessions = append(sessions, nil)
		}
	}
	return sessions
}

// pcFuzzRecord encodes items the way parsePCFuzz reads them.
func pcFuzzRecord(items ...pcFuzzItem) []byte {
	var b []byte
	for _, it := range items {
		b = append(b, byte(it.op))
		switch it.op {
		case pcItemMsg:
			b = append(b, byte(it.msg.Kind))
			b = binary.LittleEndian.AppendUint16(b, uint16(len(it.msg.Payload)))
			b = append(b, it.msg.Payload...)
		case pcItemLand:
			b = append(b, byte(len(it.runs)))
			for _, r := range it.runs {
				b = binary.AppendUvarint(b, r.First)
				b = binary.AppendUvarint(b, r.Count)
				b = append(b, byte(r.Kind))
			}
		case pcItemTouch:
			b = binary.AppendUvarint(b, it.page)
		}
	}
	return b
}

func pcMsg(kind uint32, payload []byte) pcFuzzItem {
	return pcFuzzItem{op: pcItemMsg, msg: transport.Message{Kind: kind, Payload: payload}}
}

func pcLand(runs ...transport.PageRun) pcFuzzItem { return pcFuzzItem{op: pcItemLand, runs: runs} }

// pcFuzzSeeds: a valid post-copy session, one that reconnects, one where
// the guest touches an absent page, one with a second copy of a page the
// guest owns, one whose reconnect finds every page here; with the page
// check: a clean one, one whose owed pages land wrong after the check,
// before COMMIT (refused: the source still holds them, and resumes), one
// whose pages landed wrong before POSTCOPY (refused too), one whose
// owed pages land wrong after COMMIT (ErrPostcopyCheck, the VM
// running), and a second copy, wrong, of pages held at POSTCOPY before
// COMMIT (refused) and after it (ErrPostcopyCheck). The lying
// transport's runs (beyond guest RAM, wrapping, empty past its end)
// are in testdata/fuzz/FuzzPostcopyReceive.
func pcFuzzSeeds() [][]byte {
	var layout framework.Layout
	for _, r := range pcFuzzRegions {
		layout = append(layout, framework.Region{GPA: r[0], Size: r[1]})
	}
	pages := layout.Pages()
	hello := pcMsg(msgHello, encodeHello(layout, helloMaySwitch|helloTransportTag, pcFuzzTag))
	// Pages 10-13 and 40-41 are owed; the rest landed before POSTCOPY.
	pre := pcLand(transport.PageRun{First: 0, Count: 10, Kind: transport.KindData},
		transport.PageRun{First: 14, Count: 26, Kind: transport.KindZero},
		transport.PageRun{First: 42, Count: pages - 42, Kind: transport.KindData})
	absent := []pageRun{{10, 4}, {40, 2}}
	postcopy := pcMsg(msgPostcopy, encodePostcopy(pages-6, absent, true))
	state := pcMsg(msgState, encodeStateChunk(3, 0, []byte("abc")))
	commit := pcMsg(msgCommit, nil)
	owed1 := pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindData})
	owed2 := pcLand(transport.PageRun{First: 40, Count: 2, Kind: transport.KindZero})
	settled := pcMsg(msgSettled, nil)
	resume := pcMsg(msgResume, encodeResume(pages, pcFuzzTag))
	end := pcFuzzItem{op: pcItemEnd}
	touch := func(p uint64) pcFuzzItem { return pcFuzzItem{op: pcItemTouch, page: p} }
	half := []pageRun{{10, 2}}
	// The page check (pcHonestHashes: the source's hashes) and pages
	// landed with other contents than the source's (pcFuzzSource).
	hashes := pcHonestHashes(0, pages)
	owed1Zero := pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindZero})
	preWrong := pcLand(transport.PageRun{First: 0, Count: 10, Kind: transport.KindData},
		transport.PageRun{First: 14, Count: 26, Kind: transport.KindData},
		transport.PageRun{First: 42, Count: pages - 42, Kind: transport.KindData})
	second := pcLand(transport.PageRun{First: 0, Count: 2, Kind: transport.KindZero}) // pages held at POSTCOPY, again
	return [][]byte{
		pcFuzzRecord(hello, pre, postcopy, state, commit, owed1, owed2, settled),
		pcFuzzRecord(hello, pre, pcMsg(msgPostcopy, encodePostcopy(pages-6, half, false)),
			pcMsg(msgPostcopy, encodePostcopy(pages-6, []pageRun{{12, 2}, {40, 2}}, true)), state, commit, owed1, end,
			resume, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, commit, touch(11), touch(20), owed1, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, commit, owed1, touch(12), owed1, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, commit, owed1, owed2, end, resume, settled),
		pcFuzzRecord(hello, pre, postcopy, state, hashes, commit, owed1, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, hashes, owed1Zero, commit, owed2, settled),
		pcFuzzRecord(hello, preWrong, postcopy, state, hashes, commit, owed1, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, hashes, commit, owed1Zero, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, hashes, second, commit, owed1, owed2, settled),
		pcFuzzRecord(hello, pre, postcopy, state, hashes, commit, owed1, second, owed2, settled),
	}
}

// pcFuzz is one fuzzed destination: the Target (a fakeVM over memfd
// RAM with its own guest mapping, a PostcopyTarget) and the transport's
// sessions, under one lock so that touches and landed reports are
// ordered.
type pcFuzz struct {
	t     *testing.T
	vm    *fakeVM
	fd    int      // the memfd of guest RAM
	guest [][]byte // the guest mapping of each region (GuestMemory)
	pages uint64

	mu      sync.Mutex
	cond    *sync.Cond
	toucher framework.Toucher
	halted  bool
	owned   *bitmap.Bitmap // pages whose touch returned while the Toucher was set
	touches sync.WaitGroup
	// waiting holds each touch under way with the REQUESTs sent when it
	// began: Landed hands on no batch while a touch that sent none since
	// runs (it resolves locally), so that a touch of a held page is
	// over before the runs behind it in the script land.
	waiting  map[*int]uint64
	requests uint64 // REQUEST messages sent

	sessions [][]pcFuzzItem
	next     int  // the next session to open
	open     bool // a session is open (Open succeeded, no Close since)
	ended    bool // its messages ran out: RecvMessage and, once drained, Landed say ErrClosed
	items    []pcFuzzItem
	msgsGot  int // messages of the session received so far
	pos      int // the next landed or touch item of the session
	moved    uint64
	sent     []uint32 // kinds of the messages Receive sent

	// afterAnswer holds the landed batches and touches that the script
	// puts after a COMMIT (in their session) until answered: the
	// destination sent RUNNING or ABORT, its answer to COMMIT (or an
	// ABORT of its own), so that they come after it acted on COMMIT.
	// Once the session's messages ran out they go on all the same
	// (Landed), whether or not it answered.
	afterAnswer bool
	answered    bool

	badRun      bool // a landed run outside guest RAM (or empty past its end) was reported
	overwritten bool // a landed run (of any kind, or none) covered a page the guest owned while the Toucher was set

	pcFuzzOracle // guest RAM against the source's (postcopy_oracle_test.go)
}

func newPCFuzz(t *testing.T, sessions [][]pcFuzzItem) *pcFuzz {
	vm := newFakeVM(t, pcFuzzRegions...)
	z := &pcFuzz{t: t, vm: vm, fd: vm.layout[0].Fd, pages: vm.layout.Pages(), sessions: sessions}
	z.cond = sync.NewCond(&z.mu)
	z.owned, z.waiting = bitmap.New(z.pages), map[*int]uint64{}
	z.pcFuzzOracle = newPCFuzzOracle(z.pages)
	vm.onResume = func() { z.mu.Lock(); z.resumed = true; z.mu.Unlock() }
	for _, r := range vm.layout {
		m, err := unix.Mmap(z.fd, int64(r.Offset), int(r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(m) })
		z.guest = append(z.guest, m)
	}
	return z
}

// pcFuzzTarget is the fakeVM as a framework.PostcopyTarget.
type pcFuzzTarget struct {
	*fakeVM
	z *pcFuzz
}

var _ framework.PostcopyTarget = pcFuzzTarget{}

// GuestMemory implements framework.PostcopyTarget.
func (p pcFuzzTarget) GuestMemory(i int) []byte { return p.z.guest[i] }

// Postcopy implements framework.PostcopyTarget.
func (p pcFuzzTarget) Postcopy(t framework.Toucher) {
	p.z.mu.Lock()
	p.z.toucher = t
	p.z.mu.Unlock()
}

// Halt implements framework.PostcopyTarget.
func (p pcFuzzTarget) Halt() error {
	p.z.mu.Lock()
	p.z.halted = true
	p.z.mu.Unlock()
	return nil
}

// touch is the guest reading page p through the Toucher, if one is set
// (a device thread: it may wait for the page). Called with z.mu held.
func (z *pcFuzz) touch(p uint64) {
	if z.toucher == nil || p >= z.pages || z.halted {
		return
	}
	tc := z.toucher
	reg, off, _ := z.vm.layout.Locate(p)
	idx := 0
	for i := range z.vm.layout {
		if z.vm.layout[i].GPA == reg.GPA {
			idx = i
		}
	}
	pg := z.guest[idx][off : off+framework.PageSize]
	z.touches.Add(1)
	key := new(int)
	z.waiting[key] = z.requests
	go func() {
		defer z.touches.Done()
		err := tc.Touch(pg, false)
		z.mu.Lock()
		defer z.mu.Unlock()
		delete(z.waiting, key)
		z.cond.Broadcast()
		if err == nil && z.toucher != nil {
			z.owned.Set(p)
			if !z.holdsSource(p) {
				z.seenWrong = append(z.seenWrong, p)
			}
		}
	}()
}

// touching reports whether a touch that sent no REQUEST is under way;
// z.mu is held.
func (z *pcFuzz) touching() bool {
	for _, since := range z.waiting {
		if since == z.requests {
			return true
		}
	}
	return false
}

// release starts the touches now due (up to the next landed batch,
// which Landed takes); z.mu is held.
func (z *pcFuzz) release() {
	for z.pos < len(z.items) && z.items[z.pos].op != pcItemLand && z.due(z.pos) {
		if z.items[z.pos].op == pcItemTouch {
			z.touch(z.items[z.pos].page)
		}
		z.pos++
	}
	z.cond.Broadcast()
}

// due reports whether item i (a landed batch or touch) is released:
// every message before it in the session was received, and, with
// afterAnswer, the destination answered a COMMIT among them.
func (z *pcFuzz) due(i int) bool {
	msgs, commit := 0, false
	for _, it := range z.items[:i] {
		if it.op == pcItemMsg {
			msgs++
			commit = commit || it.msg.Kind == msgCommit
		}
	}
	return msgs <= z.msgsGot && (!z.afterAnswer || !commit || z.answered)
}

// sending records a message the destination sends: RUNNING or ABORT
// releases what afterAnswer held back; z.mu is held.
func (z *pcFuzz) sending(m transport.Message) {
	z.abortResumed = z.abortResumed || m.Kind == msgAbort && z.resumed
	if (m.Kind == msgRunning || m.Kind == msgAbort) && !z.answered {
		z.answered = true
		if z.open {
			z.release()
		}
	}
}

// nextMsg returns the index of the session's next message, -1 if
// none is left; z.mu is held.
func (z *pcFuzz) nextMsg() int {
	msgs := 0
	for i, it := range z.items {
		if it.op != pcItemMsg {
			continue
		}
		if msgs++; msgs > z.msgsGot {
			return i
		}
	}
	return -1
}

// wait waits on z.cond until ctx ends; z.mu is held.
func (z *pcFuzz) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { z.mu.Lock(); z.cond.Broadcast(); z.mu.Unlock() })
	defer stop()
	z.cond.Wait()
	return ctx.Err()
}

// land writes the runs into guest RAM as a transport would (a pattern
// for data, zeros for zero runs; nothing for a run outside guest RAM)
// and records what they claim; z.mu is held.
func (z *pcFuzz) land(runs []transport.PageRun) {
	for _, r := range runs {
		switch claimOf(r, z.pages) {
		case claimOutside:
			z.badRun = true
			continue
		case claimNothing:
			continue
		}
		// A run of no kind is written as zeros: whatever it wrote, the
		// guest must never read it (the engine drops it only over
		// pages not arrived, refuses it over others).
		// Settle places every page before Postcopy(nil): a run reported
		// in between is not counted here (FuzzPostcopyReceive).
		if z.toucher != nil && z.owned.NextSetIn(r.First, r.First+r.Count) < r.First+r.Count {
			z.overwritten = true
		}
		if z.pcOn && (r.Kind == transport.KindData || r.Kind == transport.KindZero) {
			z.postLanded.SetRange(r.First, r.Count)
		}
		pg := make([]byte, framework.PageSize)
		for p := r.First; p < r.First+r.Count; p++ {
			if r.Kind == transport.KindData {
				binary.LittleEndian.PutUint64(pg, p+1)
			}
			reg, off, _ := z.vm.layout.Locate(p)
			if _, err := unix.Pwrite(z.fd, pg, int64(reg.Offset+off)); err != nil {
				z.t.Errorf("write page %d: %v", p, err)
			}
		}
	}
}

// transport is the fuzzed destination's transport.
func (z *pcFuzz) transport() *transport.Mock {
	return &transport.Mock{
		OpenFunc: func(ctx context.Context, _ transport.OpenRequest) error {
			z.mu.Lock()
			defer z.mu.Unlock()
			if z.next >= len(z.sessions) {
				return errors.New("fuzz: no source connects again")
			}
			z.items, z.msgsGot, z.pos, z.ended, z.inflight = z.sessions[z.next], 0, 0, false, false
			z.next++
			z.open = true
			z.release()
			return nil
		},
		RecvMessageFunc: func(ctx context.Context) (transport.Message, error) {
			z.mu.Lock()
			defer z.mu.Unlock()
			for {
				if !z.open || z.ended {
					return transport.Message{}, transport.ErrClosed
				}
				i := z.nextMsg()
				if i < 0 {
					z.ended = true // the peer ended the session: what landed is still reported
					z.cond.Broadcast()
					return transport.Message{}, transport.ErrClosed
				}
				if !z.commitHeld(i) {
					z.msgsGot++
					z.moved++
					z.release()
					return z.received(z.items[i].msg), nil
				}
				if err := z.wait(ctx); err != nil {
					return transport.Message{}, err
				}
			}
		},
		LandedFunc: func(ctx context.Context) ([]transport.PageRun, error) {
			z.mu.Lock()
			defer z.mu.Unlock()
			z.inflight = false // the lane handed on its last batch
			z.cond.Broadcast()
			for {
				if !z.open {
					return nil, transport.ErrClosed
				}
				for z.pos < len(z.items) && z.items[z.pos].op == pcItemMsg {
					z.pos++
				}
				if z.pos < len(z.items) && (z.due(z.pos) || z.ended) && !z.touching() {
					it := z.items[z.pos]
					z.pos++
					z.release()
					if it.op == pcItemLand {
						z.moved++
						z.land(it.runs)
						z.inflight = true
						return it.runs, nil
					}
					z.touch(it.page)
					continue
				}
				if z.pos >= len(z.items) && z.ended {
					return nil, transport.ErrClosed
				}
				if err := z.wait(ctx); err != nil {
					return nil, err
				}
			}
		},
		SendMessageFunc: func(ctx context.Context, m transport.Message) error {
			z.mu.Lock()
			defer z.mu.Unlock()
			z.sending(m)
			if !z.open {
				return transport.ErrClosed
			}
			z.sent = append(z.sent, m.Kind)
			return nil
		},
		SendUrgentFunc: func(ctx context.Context, m transport.Message) error {
			z.mu.Lock()
			defer z.mu.Unlock()
			z.sending(m)
			if !z.open || z.ended {
				return transport.ErrClosed
			}
			if m.Kind == msgRequest {
				z.requests++
				z.cond.Broadcast()
			}
			return nil
		},
		StatsFunc: func(context.Context) (transport.Stats, error) {
			z.mu.Lock()
			defer z.mu.Unlock()
			return transport.Stats{BytesWire: z.moved * framework.PageSize}, nil
		},
		CloseFunc: func() error {
			z.mu.Lock()
			defer z.mu.Unlock()
			z.open, z.inflight = false, false
			z.cond.Broadcast()
			return nil
		},
	}
}

// pcFuzzRun is how runPCFuzz runs one destination: its Options, and
// whether the script's landed batches and touches after a COMMIT wait
// for the destination's answer to it (pcFuzz.afterAnswer).
type pcFuzzRun struct {
	opt         Options
	afterAnswer bool
}

// pcFuzzFast is the fuzzer's run: bounds short enough that a script
// that makes a wait time out (no source reconnects, nothing lands)
// ends in well under a second, and a landed batch after COMMIT may
// come before the destination acted on it. Under load a bound may fire
// where the script meant none to (a switch's wait for the landed
// reports of pre-copy, 100 ms), and such a batch may be checked before
// COMMIT is: the fuzzer's checks hold for either end, but not the
// seeds' verdicts (TestPCFuzzSeeds: pcFuzzSeedRun).
var pcFuzzFast = pcFuzzRun{opt: Options{SwitchoverTimeout: 100 * time.Millisecond, StallTimeout: 100 * time.Millisecond,
	ReconnectTimeout: 300 * time.Millisecond, IncomingTimeout: time.Second}}

// pcFuzzSeedRun is TestPCFuzzSeeds' run, whose verdicts hold on a
// loaded machine: a landed batch after COMMIT comes once the
// destination answered it (afterAnswer: seeds 8 and 10 land their
// wrong pages after Resume, as they say, where under load the lane
// could check one before the receive loop acted on COMMIT, which it
// then refused), and
// no bound fires that the seed does not mean to (pcFuzzFast's 100 ms
// SwitchoverTimeout ended seed 6's switch while the landed reports of
// pre-copy were still being handed on). The waits the seeds end on
// still end: seed 1 reconnects once its first session stalled
// (StallTimeout: nothing reads its messages after COMMIT, so it never
// says it ended), seeds 3, 6, 7 and 9 stop listening for a source to
// come back to be told (ReconnectTimeout), a second each.
var pcFuzzSeedRun = pcFuzzRun{afterAnswer: true, opt: Options{SwitchoverTimeout: 5 * time.Second, StallTimeout: time.Second,
	ReconnectTimeout: time.Second, IncomingTimeout: 5 * time.Second}}

// runPCFuzz runs one fuzzed destination, checks what it did and
// returns what Receive did.
func runPCFuzz(t *testing.T, b []byte, run pcFuzzRun) (Report, error) {
	z := newPCFuzz(t, parsePCFuzz(b))
	z.orderCommit, z.afterAnswer = true, run.afterAnswer
	opt := run.opt
	ctx, cancel := context.WithTimeout(context.Background(), pcFuzzBound)
	defer cancel()
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, z.transport(), opt)
		done <- result{rep, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(pcFuzzBound + 5*time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Receive did not return within %v:\n%s", pcFuzzBound+5*time.Second, buf[:runtime.Stack(buf, true)])
	}
	touched := make(chan struct{})
	go func() { z.touches.Wait(); close(touched) }()
	select {
	case <-touched:
	case <-time.After(5 * time.Second):
		t.Fatal("a guest touch still waits 5 s after Receive returned")
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	rep, err := res.rep, res.err
	running := 0
	for _, k := range z.sent {
		if k == msgRunning {
			running++
		}
	}
	resumed := z.vm.resumed
	what := fmt.Sprintf("Receive: %v; report: mode %s handover %s status %s; resumed %d, halted %v, sent %v",
		err, rep.Mode, rep.Handover, rep.Status, resumed, z.halted, z.sent)
	if why := z.judgeRAM(rep, err, resumed); why != "" {
		t.Fatalf("%s: %s", why, what)
	}
	switch {
	case z.badRun && rep.Mode == ModePostcopy && err == nil:
		t.Fatalf("a landed run outside guest RAM was reported in post-copy and taken: %s", what)
	case z.overwritten && err == nil:
		t.Fatalf("a landed run covered a page the guest owned, and post-copy ran on: %s", what)
	case resumed > 1 || running > 1 || running == 1 && resumed != 1:
		t.Fatalf("RUNNING and Resume disagree: %s", what)
	case z.halted && err == nil:
		t.Fatalf("the VM was halted, yet Receive succeeded: %s", what)
	case err != nil:
		return rep, err
	case rep.Handover != HandoverRunning || resumed != 1 || z.halted:
		t.Fatalf("Receive succeeded without a running VM: %s", what)
	case rep.Mode == ModePostcopy && (rep.PagesMissing == nil || *rep.PagesMissing != 0 || z.toucher != nil):
		t.Fatalf("post-copy succeeded with pages missing (%s) or the Toucher still set: %s", missingCount(rep.PagesMissing), what)
	}
	return rep, err
}

// The seeds do what they say: the valid sessions complete in post-copy
// (after a reconnect, after the guest waited on an owed page), the
// second copy of a page the guest owns breaks it.
func TestPCFuzzSeeds(t *testing.T) {
	needUffd(t)
	seeds := pcFuzzSeeds()
	for i, want := range []string{"", "", "", ErrPostcopyBroken.Error(), "",
		"", errCommitRefused.Error(), errCommitRefused.Error(), ErrPostcopyCheck.Error(),
		errCommitRefused.Error(), ErrPostcopyCheck.Error()} {
		rep, err := runPCFuzz(t, seeds[i], pcFuzzSeedRun)
		if rep.Mode != ModePostcopy || (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("seed %d: mode %s, %v; want %q", i, rep.Mode, err, want)
		}
		if i == 1 && rep.Reconnects != 1 {
			t.Errorf("seed 1: %d reconnects", rep.Reconnects)
		}
	}
}
