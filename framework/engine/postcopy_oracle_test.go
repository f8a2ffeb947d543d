package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
)

// The guest-RAM oracle of FuzzPostcopyReceive: what the source held at
// the switch (pcFuzzSource), which pages the destination was given the
// means to check (an honest HASHES, pcFuzzOracle.received), what it
// held with other contents than the source's when COMMIT came, and what
// the guest read. It judges the destination by guest RAM, not by the
// engine's own page check: a path that skips the check, or runs the
// guest before it, fails here whatever the engine says.
//
//	script: ... HASHES(honest) ... land(wrong) ... COMMIT ... land ...
//	                  │                │            │
//	                  checked          written      wrongAtCommit: checked pages the
//	                                                destination holds (not absent, or
//	                                                landed after POSTCOPY) whose RAM
//	                                                differs from the source's
//
// What it cannot judge: pages no honest HASHES named (a transport that
// writes wrong bytes and reports them is all the engine can see), a
// wrong page that lands between COMMIT's arrival and Resume (the
// engine resumes, then reports ErrPostcopyCheck: accepted, as after
// Resume), and whether the source resumes (there is no source: an
// ABORT after Resume stands for it).

// pcFuzzZero is the source's zero pages at the switch: pages
// [pcFuzzZero[0], pcFuzzZero[1]); every other page holds the data
// pattern that the fuzz transport writes for a data run.
var pcFuzzZero = [2]uint64{14, 42}

// pcFuzzSource returns page p as the source held it at the switch: the
// seeds' honest sessions send [14, 42) as zero runs, the rest as data.
func pcFuzzSource(p uint64) []byte {
	pg := make([]byte, framework.PageSize)
	if p < pcFuzzZero[0] || p >= pcFuzzZero[1] {
		binary.LittleEndian.PutUint64(pg, p+1)
	}
	return pg
}

// pcFuzzOracle is what pcFuzz records for the oracle; pcFuzz.mu guards it.
type pcFuzzOracle struct {
	checked    *bitmap.Bitmap // pages an honest HASHES named, handed to Receive
	absent     []pageRun      // POSTCOPY's absent runs, decoded as the engine does
	pcAfter    uint64         // decodePostcopy's end of the chunks so far
	pcOn       bool           // the last POSTCOPY chunk was handed to Receive
	pcBad      bool           // a POSTCOPY chunk did not decode: Receive fails on it
	postLanded *bitmap.Bitmap // pages a data or zero run covered after the last POSTCOPY chunk
	// orderCommit turns commitHeld on (runPCFuzz): the tests that wrap
	// Landed to hold the lane order the script themselves.
	orderCommit bool
	// inflight: Landed returned a batch and was not called again since
	// (the landed lane calls it again only once it checked and handed
	// on the batch: commitHeld).
	inflight      bool
	commitSeen    bool
	wrongAtCommit []uint64 // checked pages held here with other contents than the source's as COMMIT came
	resumed       bool     // the VM's Resume was called
	abortResumed  bool     // an ABORT was sent after Resume: the source would resume too
	seenWrong     []uint64 // pages a touch returned with other contents than the source's
}

func newPCFuzzOracle(pages uint64) pcFuzzOracle {
	return pcFuzzOracle{checked: bitmap.New(pages), postLanded: bitmap.New(pages)}
}

// pcHonestHashes is a HASHES item the fuzz transport fills in with the
// source's hashes (pcFuzz.received): a HASHES of exactly 16 bytes that
// names pages [first, first+n) inside guest RAM, n > 0, and carries no
// hash. Any other HASHES goes to Receive as the script has it.
func pcHonestHashes(first, n uint64) pcFuzzItem {
	b := binary.LittleEndian.AppendUint64(nil, first)
	return pcMsg(msgHashes, binary.LittleEndian.AppendUint64(b, n))
}

// commitHeld reports whether item i, the session's next message, is a
// COMMIT of a post-copy to hold back: a landed batch or touch before it
// in the script was not taken yet, or the lane has not handed on the
// last batch it took. COMMIT then comes after every landing the script
// puts before it was checked and handed to the fault service, as a
// source that commits after its last page's report would have it, so
// that wrongAtCommit is what the destination knew. A lane that ended
// with a batch (a refusal) holds COMMIT until the engine cuts the
// receive (watchSetup), or the session closes; z.mu is held.
func (z *pcFuzz) commitHeld(i int) bool {
	if !z.orderCommit || z.items[i].msg.Kind != msgCommit || !z.pcOn || z.pcBad {
		return false
	}
	if z.inflight {
		return true
	}
	for j := z.pos; j < i; j++ {
		if z.items[j].op != pcItemMsg {
			return true
		}
	}
	return false
}

// received records message m as Receive takes it, and returns it (an
// honest HASHES filled in); z.mu is held.
func (z *pcFuzz) received(m transport.Message) transport.Message {
	switch m.Kind {
	case msgHashes:
		if len(m.Payload) != 16 {
			break
		}
		first, n := binary.LittleEndian.Uint64(m.Payload), binary.LittleEndian.Uint64(m.Payload[8:])
		if n == 0 || first >= z.pages || n > z.pages-first {
			break
		}
		b := append([]byte(nil), m.Payload...)
		for p := first; p < first+n; p++ {
			b = binary.LittleEndian.AppendUint64(b, pageHash(pcFuzzSource(p)))
		}
		z.checked.SetRange(first, n)
		m.Payload = b
	case msgPostcopy:
		if z.pcOn || z.pcBad {
			break
		}
		runs, last, after, _, err := decodePostcopy(z.absent, m.Payload, z.pages, z.pcAfter)
		if err != nil {
			z.pcBad = true
			break
		}
		z.absent, z.pcAfter, z.pcOn = runs, after, last
	case msgCommit:
		if !z.commitSeen && !z.pcBad {
			z.commitSeen = true
			z.wrongAtCommit = z.wrongHeld()
		}
	}
	return m
}

// wrongHeld returns the checked pages this destination holds (every
// page in pre-copy; in post-copy those not absent at POSTCOPY or landed
// since) whose RAM differs from the source's; z.mu is held.
func (z *pcFuzz) wrongHeld() []uint64 {
	absent := bitmap.New(z.pages)
	if z.pcOn {
		for _, r := range z.absent {
			absent.SetRange(r.First, r.Count)
		}
	}
	var wrong []uint64
	for p := z.checked.NextSetIn(0, z.pages); p < z.pages; p = z.checked.NextSetIn(p+1, z.pages) {
		if (!absent.Test(p) || z.postLanded.Test(p)) && !z.holdsSource(p) {
			wrong = append(wrong, p)
		}
	}
	return wrong
}

// holdsSource reports whether guest RAM holds page p as the source did,
// read from the memfd (a hole reads as zeros; never through the
// registered mapping, which could fault).
func (z *pcFuzz) holdsSource(p uint64) bool {
	pg := make([]byte, framework.PageSize)
	reg, off, _ := z.vm.layout.Locate(p)
	if _, err := unix.Pread(z.fd, pg, int64(reg.Offset+off)); err != nil {
		z.t.Errorf("read page %d: %v", p, err)
		return false
	}
	return bytes.Equal(pg, pcFuzzSource(p))
}

// checkedOf returns the pages of ps an honest HASHES named.
func (z *pcFuzz) checkedOf(ps []uint64) []uint64 {
	var out []uint64
	for _, p := range ps {
		if z.checked.Test(p) {
			out = append(out, p)
		}
	}
	return out
}

// judgeRAM is the oracle's verdict on guest RAM, "" if it holds; z.mu
// is held and Receive returned (err, rep). In every case: no ABORT
// after Resume (the source would resume too: the guest would run
// twice); no Resume after COMMIT found checked pages held here wrong
// (the check had seen them: the destination must fail, the source
// resume, the guest never run on them); ErrPostcopyCheck only with
// the VM running here, resumed once. And a Receive that returns nil
// leaves every checked page as the source held it, the guest having
// read none otherwise.
func (z *pcFuzz) judgeRAM(rep Report, err error, resumed int) string {
	switch {
	case z.abortResumed:
		return "ABORT went out after the VM was resumed here: the source would resume too, the guest run twice"
	case len(z.wrongAtCommit) > 0 && resumed > 0:
		return fmt.Sprintf("the VM was resumed, though as COMMIT came this side held checked pages "+
			"with other contents than the source's (%d, first %d): the guest runs on them", len(z.wrongAtCommit), z.wrongAtCommit[0])
	case errors.Is(err, ErrPostcopyCheck) && (resumed != 1 || z.halted || rep.Handover != HandoverRunning):
		return "ErrPostcopyCheck without the VM running here"
	case err != nil:
		return ""
	}
	if seen := z.checkedOf(z.seenWrong); len(seen) > 0 {
		return fmt.Sprintf("Receive succeeded, and the guest read checked pages with other contents than the source's (first %d)", seen[0])
	}
	for p := z.checked.NextSetIn(0, z.pages); p < z.pages; p = z.checked.NextSetIn(p+1, z.pages) {
		if !z.holdsSource(p) {
			return fmt.Sprintf("Receive succeeded, and checked page %d differs from the source's", p)
		}
	}
	return ""
}
