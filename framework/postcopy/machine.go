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
	n     [numStates]uint64 // pages per state, kept by every move
}

func newMachine(pages uint64) machine {
	m := machine{pages: make([]State, pages)}
	for i := range m.pages {
		m.pages[i] = Absent
	}
	m.n[Absent] = pages
	return m
}

// hold moves pages [first, first+count), all Absent, to s (Landed or
// ZeroKnown) without actions: the pages the destination already holds
// when post-copy begins. It fills the run in one step (no per-page
// table lookup) and fails, moving nothing, if a page is not Absent.
func (m *machine) hold(first, count uint64, s State) error {
	if s != Landed && s != ZeroKnown {
		return fmt.Errorf("%w: hold as %v", ErrTransition, s)
	}
	if first > uint64(len(m.pages)) || count > uint64(len(m.pages))-first {
		return fmt.Errorf("%w: pages %d+%d, guest has %d", ErrRange, first, count, len(m.pages))
	}
	run := m.pages[first : first+count]
	for i, st := range run {
		if st != Absent {
			return fmt.Errorf("page %d: %w: hold in state %v", first+uint64(i), ErrTransition, st)
		}
	}
	for i := range run {
		run[i] = s
	}
	m.n[Absent] -= count
	m.n[s] += count
	return nil
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
		m.n[m.pages[p]]--
		m.n[t.next]++
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
func (m *machine) count() [numStates]uint64 { return m.n }
