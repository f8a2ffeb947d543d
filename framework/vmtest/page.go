package vmtest

import (
	"encoding/binary"
	"fmt"
)

// A page the guest owns holds a record:
//
//	0        8        16                                   4096
//	┌────────┬────────┬─────────────────────────────────────┐
//	│ page   │ seq    │ pattern(page, seq): 510 words        │
//	└────────┴────────┴─────────────────────────────────────┘
//
// seq 0 is the content New gives every page; a write makes seq the VM's
// next write sequence. A free page holds poisonByte everywhere.

// poisonByte fills free pages on the source: it shows if one is sent.
const poisonByte = 0xFD

// mix is splitmix64's finaliser: a cheap, well-spread pattern.
func mix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// fill writes page p's record for sequence seq.
func fill(pg []byte, p, seq uint64) {
	binary.LittleEndian.PutUint64(pg[0:], p)
	binary.LittleEndian.PutUint64(pg[8:], seq)
	w := mix(p<<20 ^ seq)
	for off := 16; off < len(pg); off += 8 {
		binary.LittleEndian.PutUint64(pg[off:], w)
		w += 0x2545F4914F6CDD1D
	}
}

// poison fills a free page.
func poison(pg []byte) {
	for i := range pg {
		pg[i] = poisonByte
	}
}

// recordSeq is the write sequence page record pg carries.
func recordSeq(pg []byte) uint64 { return binary.LittleEndian.Uint64(pg[8:]) }

// checkPage reports whether pg holds a valid record of page p.
func checkPage(pg []byte, p uint64) error {
	got := binary.LittleEndian.Uint64(pg[0:])
	seq := binary.LittleEndian.Uint64(pg[8:])
	if got != p {
		return fmt.Errorf("page %d holds page %d's header (seq %d)", p, got, seq)
	}
	w := mix(p<<20 ^ seq)
	for off := 16; off < len(pg); off += 8 {
		if binary.LittleEndian.Uint64(pg[off:]) != w {
			return fmt.Errorf("page %d (seq %d): word at offset %d is wrong", p, seq, off)
		}
		w += 0x2545F4914F6CDD1D
	}
	return nil
}
