package sessionbase

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
)

// Slot holds a Transport's one open session, a *S of role Role: Open
// puts it, Close takes it, every other call gets it. Make one with
// NewSlot; its methods may run concurrently.
//
// It does not keep two Opens from racing: CheckOpen and Put are
// separate calls, as transport.Transport allows no Open beside another
// call.
type Slot[S any] struct {
	name    string // the transport's, leading errors: "tcp transport"
	notOpen error

	mu   sync.Mutex
	s    *S
	role transport.Role
}

// NewSlot returns an empty Slot of the transport called name ("tcp
// transport").
func NewSlot[S any](name string) Slot[S] {
	return Slot[S]{name: name, notOpen: errors.New(name + ": no session is open")}
}

// CheckOpen returns the error of an Open of role that must not go on:
// a session is open, or role is neither RoleSend nor RoleReceive.
func (sl *Slot[S]) CheckOpen(role transport.Role) error {
	sl.mu.Lock()
	busy := sl.s != nil
	sl.mu.Unlock()
	if busy {
		return errors.New(sl.name + ": a session is already open; Close it first")
	}
	if role != transport.RoleSend && role != transport.RoleReceive {
		return fmt.Errorf("%s: open with role %v", sl.name, role)
	}
	return nil
}

// Put makes s, of role, the open session.
func (sl *Slot[S]) Put(s *S, role transport.Role) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.s, sl.role = s, role
}

// Take empties the slot and returns what it held (nil: nothing).
func (sl *Slot[S]) Take() *S {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	s := sl.s
	sl.s = nil
	return s
}

// Get returns the open session, or an error that says none is.
func (sl *Slot[S]) Get() (*S, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.s == nil {
		return nil, sl.notOpen
	}
	return sl.s, nil
}

// Sender returns the open session if it sends; what (the call:
// "SendPages") names it in the error of a receiving one, which wraps
// transport.ErrNotSupported. Without a session it returns Get's error.
func (sl *Slot[S]) Sender(what string) (*S, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.s == nil {
		return nil, sl.notOpen
	}
	if sl.role != transport.RoleSend {
		return sl.s, fmt.Errorf("%s: %s on the receiving side: %w", sl.name, what, transport.ErrNotSupported)
	}
	return sl.s, nil
}
