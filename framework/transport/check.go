package transport

import (
	"fmt"
	"math/bits"

	"github.com/ferryvm/ferry/framework"
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindZero:
		return "zero"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Pages is the number of guest pages in ram (page indices run from 0 to
// Pages-1 across the regions in order).
func Pages(ram []RAMRegion) uint64 {
	var n uint64
	for _, r := range ram {
		n += r.Size / framework.PageSize
	}
	return n
}

// Check reports whether the run is valid for a guest of pages pages: a
// valid kind, at least one page, and every page inside RAM. Transports
// call it in SendPages (and on the destination for every run that
// arrives).
func (r PageRun) Check(pages uint64) error {
	end, carry := bits.Add64(r.First, r.Count, 0)
	switch {
	case r.Kind != KindData && r.Kind != KindZero:
		return fmt.Errorf("page run at %d: invalid kind %d", r.First, int(r.Kind))
	case r.Count == 0:
		return fmt.Errorf("page run at %d is empty", r.First)
	case carry != 0 || end > pages:
		return fmt.Errorf("page run %d+%d lies outside guest RAM (%d pages)", r.First, r.Count, pages)
	}
	return nil
}

// Check reports whether m may be sent: a kind other than 0 and at most
// MaxMessage payload bytes. Transports call it in SendMessage and
// SendUrgent before anything is written.
func (m Message) Check() error {
	if m.Kind == 0 || len(m.Payload) > MaxMessage {
		return fmt.Errorf("kind %d with %d bytes (kind 0 is invalid, at most %d bytes)", m.Kind, len(m.Payload), MaxMessage)
	}
	return nil
}
