package postcopy

import (
	"errors"
	"fmt"
)

// Error classes (errors.Is).
var (
	// ErrTransition: an event not allowed in a page's state (state.go),
	// such as data landing on a page the guest already owns.
	ErrTransition = errors.New("page state: event not allowed")
	// ErrRange: pages outside guest RAM, or an address outside the
	// registered mapping.
	ErrRange = errors.New("page outside guest RAM")
)

// Op is one action on a run of consecutive pages.
type Op struct {
	Action Action
	First  uint64
	Count  uint64
}

// machine holds every page's state; the caller serialises access.
type machine struct {
	pages []State
}

func newMachine(pages uint64) machine {
	m := machine{pages: make([]State, pages)}
	for i := range m.pages {
		m.pages[i] = Absent
	}
	return m
}

// apply moves pages [first, first+count) on e and appends the actions to
// take, merged into runs (None is left out). On a transition that is not
// allowed it stops there: the pages before have moved, the ops for them
// are returned with the error.
func (m *machine) apply(e Event, first, count uint64, ops []Op) ([]Op, error) {
	if first > uint64(len(m.pages)) || count > uint64(len(m.pages))-first {
		return ops, fmt.Errorf("%w: pages %d+%d, guest has %d", ErrRange, first, count, len(m.pages))
	}
	for p := first; p < first+count; p++ {
		t, err := step(m.pages[p], e)
		if err != nil {
			return ops, fmt.Errorf("page %d: %w", p, err)
		}
		m.pages[p] = t.next
		if t.act == None {
			continue
		}
		if n := len(ops); n > 0 && ops[n-1].Action == t.act && ops[n-1].First+ops[n-1].Count == p {
			ops[n-1].Count++
			continue
		}
		ops = append(ops, Op{Action: t.act, First: p, Count: 1})
	}
	return ops, nil
}

// count returns how many pages are in each state.
func (m *machine) count() [numStates]uint64 {
	var n [numStates]uint64
	for _, s := range m.pages {
		n[s]++
	}
	return n
}
