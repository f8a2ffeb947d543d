package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Owed is post-copy's owed set on the source: one bit per guest page the
// destination lacks and nobody has queued yet. The engine's background
// pusher and a transport that answers page requests itself (Answerer)
// both take pages out of it, possibly from two processes: it lives in a
// small shared memory file that the transport's plugin maps too.
//
// Exactly once: a page is taken by whoever clears its bit first (an
// atomic and-not on its word, which returns the bits it found), so two
// takers racing for a page never both get it. Set makes pages owed again
// (the destination listed them missing after a reconnect).
//
// The file, little endian (version 1):
//
//	0   u64 magic "FRYOWED1"
//	8   u64 pages
//	16  u64 next: where the pusher goes on (the last request's end)
//	24  u64 answered: pages taken for requests (Claim)
//	32  u64 answered as zero runs (of answered)
//	40  u64 asked again: requested pages Claim found not owed
//	48  16 bytes zero
//	64  the bits: page p is bit p%64 of u64 word p/64
//
// The file is sealed against any change of size (F_SEAL_SHRINK,
// F_SEAL_GROW, F_SEAL_SEAL) before anyone else sees it, and MapOwed
// refuses one that is not: a process that shrank it under the other's
// mapping would kill that process with SIGBUS, and the engine's process
// is the VMM, which in post-copy holds the only copy of the pages not
// yet sent.
//
// A process that maps it trusts the other with it as it trusts it with
// guest RAM: a transport that sets bits makes the engine send pages
// twice, one that clears them without sending makes faults wait; neither
// is worse than what a transport can do to pages anyway. The counters
// are for the report only.
type Owed struct {
	pages uint64
	file  *os.File

	mu    sync.RWMutex // readers use words; Close unmaps under the write lock
	mem   []byte
	words []uint64 // the header's 8 words, then the bits
}

const (
	owedMagic  = 0x314445574f595246 // "FRYOWED1" read as a little-endian u64
	owedHeader = 8                  // words before the bits

	owedNext         = 2
	owedAnswered     = 3
	owedAnsweredZero = 4
	owedAgain        = 5
)

// NewOwed returns an empty owed set for a guest of pages pages, in a new
// memory file (memfd).
func NewOwed(pages uint64) (*Owed, error) {
	if pages == 0 || pages > maxOwedPages {
		return nil, fmt.Errorf("owed set for %d pages", pages)
	}
	fd, err := unix.MemfdCreate("ferry-owed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("owed set: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ferry-owed")
	if err := f.Truncate(int64(owedSize(pages))); err != nil {
		f.Close()
		return nil, fmt.Errorf("owed set: %w", err)
	}
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[0:], owedMagic)
	binary.LittleEndian.PutUint64(hdr[8:], pages)
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("owed set: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, owedSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("owed set: seal its size: %w", err)
	}
	o, err := mapOwed(f, pages)
	if err != nil {
		f.Close()
	}
	return o, err
}

// MapOwed maps the owed set in f (another process's NewOwed), checking
// its header and size against a guest of pages pages. The Owed keeps f
// and closes it with Close.
func MapOwed(f *os.File, pages uint64) (*Owed, error) {
	if pages == 0 || pages > maxOwedPages {
		return nil, fmt.Errorf("%w: owed set for %d pages", ErrProtocol, pages)
	}
	var hdr [16]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("owed set: %w", err)
	}
	if m := binary.LittleEndian.Uint64(hdr[0:]); m != owedMagic {
		return nil, fmt.Errorf("%w: owed set has magic %#x", ErrProtocol, m)
	}
	if n := binary.LittleEndian.Uint64(hdr[8:]); n != pages {
		return nil, fmt.Errorf("%w: owed set of %d pages for a guest of %d", ErrProtocol, n, pages)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: owed set is not a sealable memory file: %v", ErrProtocol, err)
	}
	if seals&owedSeals != owedSeals {
		return nil, fmt.Errorf("%w: owed set is not sealed against a change of size (seals %#x)", ErrProtocol, seals)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("owed set: %w", err)
	}
	if uint64(st.Size()) != owedSize(pages) {
		return nil, fmt.Errorf("%w: owed set file of %d bytes, want %d", ErrProtocol, st.Size(), owedSize(pages))
	}
	return mapOwed(f, pages)
}

// owedSeals keep a set's size fixed for as long as it exists.
const owedSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// maxOwedPages bounds a set: 4 PiB of guest RAM, a 128 GiB set.
const maxOwedPages = 1 << 40

func owedSize(pages uint64) uint64 { return 8 * (owedHeader + (pages+63)/64) }

func mapOwed(f *os.File, pages uint64) (*Owed, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, int(owedSize(pages)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("owed set: mmap: %w", err)
	}
	return &Owed{pages: pages, file: f, mem: mem, words: owedWords(mem)}, nil
}

// File is the memory file behind the set, to hand to a plugin process.
func (o *Owed) File() *os.File { return o.file }

// Pages is the guest's size in pages.
func (o *Owed) Pages() uint64 { return o.pages }

// Close unmaps the set and closes its file; later calls see an empty set.
// Safe to call twice.
func (o *Owed) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mem == nil {
		return nil
	}
	err := unix.Munmap(o.mem)
	o.mem, o.words = nil, nil
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// Set makes pages [first, first+n) owed and returns how many were not.
func (o *Owed) Set(first, n uint64) uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var added uint64
	o.span(first, n, func(w *uint64, mask uint64) {
		added += uint64(bits.OnesCount64(^atomic.OrUint64(w, mask) & mask))
	})
	return added
}

// Take takes the owed pages among [first, first+n) out of the set and
// appends them to dst as runs (Kind unset); the count of pages it took
// is the sum of their Counts.
func (o *Owed) Take(first, n uint64, dst []PageRun) []PageRun {
	o.mu.RLock()
	defer o.mu.RUnlock()
	p := first
	o.span(first, n, func(w *uint64, mask uint64) {
		got := atomic.AndUint64(w, ^mask) & mask
		base := p &^ 63
		for got != 0 {
			b := uint64(bits.TrailingZeros64(got))
			run := uint64(bits.TrailingZeros64(^(got >> b)))
			dst = appendPages(dst, base+b, run)
			if b+run == 64 {
				break
			}
			got &^= (1<<run - 1) << b
		}
		p = base + 64
	})
	return dst
}

// appendPages appends [first, first+n) to dst, merged with the last run
// when it ends at first.
func appendPages(dst []PageRun, first, n uint64) []PageRun {
	if k := len(dst) - 1; k >= 0 && dst[k].First+dst[k].Count == first {
		dst[k].Count += n
		return dst
	}
	return append(dst, PageRun{First: first, Count: n})
}

// Next returns the first owed page at or after p, wrapping around to the
// start; Pages() if none is owed. A page another taker clears meanwhile
// may still be returned: Take decides.
func (o *Owed) Next(p uint64) uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.words == nil {
		return o.pages
	}
	if p >= o.pages {
		p = 0
	}
	bitmap := o.words[owedHeader:]
	for pass, start := 0, p; pass < 2; pass, start = pass+1, 0 {
		for i := start / 64; i < uint64(len(bitmap)); i++ {
			w := atomic.LoadUint64(&bitmap[i])
			if i == start/64 {
				w &= ^uint64(0) << (start % 64)
			}
			if w != 0 {
				if q := i*64 + uint64(bits.TrailingZeros64(w)); q < o.pages {
					return q
				}
			}
		}
	}
	return o.pages
}

// Count is the number of pages owed now (a scan of the set).
func (o *Owed) Count() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var n uint64
	if o.words == nil {
		return 0
	}
	for i := owedHeader; i < len(o.words); i++ {
		n += uint64(bits.OnesCount64(atomic.LoadUint64(&o.words[i])))
	}
	return n
}

// span calls f for each word of the bits covering [first, first+n), with
// the mask of those pages in it; pages past the guest's end are ignored.
func (o *Owed) span(first, n uint64, f func(w *uint64, mask uint64)) {
	if o.words == nil || first >= o.pages {
		return
	}
	end := min(first+n, o.pages)
	bitmap := o.words[owedHeader:]
	for p := first; p < end; {
		i, b := p/64, p%64
		k := min(64-b, end-p)
		mask := ^uint64(0) >> (64 - k) << b
		f(&bitmap[i], mask)
		p += k
	}
}

// OwedCounts are the set's counters of answered requests (Claim, by a
// transport or by the engine's request server), for the report.
type OwedCounts struct {
	Answered     uint64 // pages taken for requests and sent
	AnsweredZero uint64 // of Answered, sent as zero runs
	Again        uint64 // requested pages that were not owed any more
}

// Counts reads the counters.
func (o *Owed) Counts() OwedCounts {
	return OwedCounts{o.load(owedAnswered), o.load(owedAnsweredZero), o.load(owedAgain)}
}

// AddCounts adds c to the counters.
func (o *Owed) AddCounts(c OwedCounts) {
	o.add(owedAnswered, c.Answered)
	o.add(owedAnsweredZero, c.AnsweredZero)
	o.add(owedAgain, c.Again)
}

// Resume is where the pusher goes on: after the last request's end.
func (o *Owed) Resume() uint64 { return o.load(owedNext) }

// SetResume moves where the pusher goes on.
func (o *Owed) SetResume(p uint64) { o.store(owedNext, p) }

func (o *Owed) load(i int) uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.words == nil {
		return 0
	}
	return atomic.LoadUint64(&o.words[i])
}

func (o *Owed) add(i int, n uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.words != nil && n != 0 {
		atomic.AddUint64(&o.words[i], n)
	}
}

func (o *Owed) store(i int, v uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.words != nil {
		atomic.StoreUint64(&o.words[i], v)
	}
}

// Claim answers a page request (PageRequest's format) from the set, as
// an Answerer does (and the engine, for the requests it answers): it
// takes the requested pages that are owed and appends them to dst, a
// page that page(p) shows all zero as a KindZero run and the others as
// KindData, merged where they touch; counts them (AddCounts) and moves
// the resume point past each requested run. A malformed request
// (ErrProtocol) takes nothing.
func (o *Owed) Claim(req []byte, page func(p uint64) []byte, dst []PageRun) ([]PageRun, error) {
	runs, err := PageRequest(req, o.pages, nil)
	if err != nil {
		return dst, err
	}
	var c OwedCounts
	var got []PageRun
	for _, r := range runs {
		got = o.Take(r.First, r.Count, got[:0])
		for _, g := range got {
			c.Answered += g.Count
			for p := g.First; p < g.First+g.Count; p++ {
				k := KindData
				if isZeroPage(page(p)) {
					k = KindZero
					c.AnsweredZero++
				}
				dst = appendKind(dst, p, k)
			}
		}
		o.SetResume((r.First + r.Count) % o.pages)
	}
	var requested uint64
	for _, r := range runs {
		requested += r.Count
	}
	c.Again = requested - c.Answered
	o.AddCounts(c)
	return dst, nil
}

// appendKind appends page p of kind k to dst, merged with the last run
// when it is of that kind and ends at p.
func appendKind(dst []PageRun, p uint64, k Kind) []PageRun {
	if n := len(dst) - 1; n >= 0 && dst[n].Kind == k && dst[n].First+dst[n].Count == p {
		dst[n].Count++
		return dst
	}
	return append(dst, PageRun{First: p, Count: 1, Kind: k})
}

var zeroPage [4096]byte

func isZeroPage(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

// Armed is what Answerer.Answer armed, kept by a transport for its
// urgent reader: Arm from the Answer call, Answers and Claim from the
// one goroutine that reads urgent messages.
type Armed struct {
	p    atomic.Pointer[armed]
	runs []PageRun // Claim's, the reader's
}

type armed struct {
	kind uint32
	owed *Owed
}

// Arm arms kind and owed for a guest of pages pages (ErrBadConfig if
// owed is another guest's).
func (a *Armed) Arm(kind uint32, owed *Owed, pages uint64) error {
	if owed.Pages() != pages {
		return fmt.Errorf("%w: an owed set of %d pages for a guest of %d", ErrBadConfig, owed.Pages(), pages)
	}
	a.p.Store(&armed{kind, owed})
	return nil
}

// Answers reports whether urgent messages of kind are page requests to
// answer (Claim) instead of messages for RecvUrgent.
func (a *Armed) Answers(kind uint32) bool {
	p := a.p.Load()
	return p != nil && p.kind == kind
}

// Claim is Owed.Claim on the armed set; the runs are valid until the
// next call.
func (a *Armed) Claim(req []byte, page func(p uint64) []byte) ([]PageRun, error) {
	var err error
	a.runs, err = a.p.Load().owed.Claim(req, page, a.runs[:0])
	return a.runs, err
}
