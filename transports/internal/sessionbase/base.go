package sessionbase

import (
	"context"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/inbox"
)

// Base is the engine-facing part of one open session; a transport's
// session embeds it. Make one with New. Every method may run
// concurrently with the others.
type Base struct {
	Role      transport.Role
	Msgs      inbox.Queue           // engine messages received (RecvMessage)
	Umsgs     inbox.Queue           // urgent messages received (RecvUrgent, PushUrgent)
	Answering transport.Armed       // requests the urgent reader answers (source; Answer)
	Landed    transport.LandedQueue // runs written into guest RAM (destination; Landed)

	done chan struct{} // closed by the first End
	mu   sync.Mutex    // guards err
	err  error
}

// New returns the Base of a session of role.
func New(role transport.Role) Base {
	return Base{Role: role, Msgs: inbox.New(), Umsgs: inbox.New(), done: make(chan struct{})}
}

// Done is closed once the session ended (End).
func (b *Base) Done() <-chan struct{} { return b.done }

// Err returns why the session ended, or nil while it runs.
func (b *Base) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// End records err (non-nil) as the session's error and closes Done,
// unless the session had already ended; it reports whether it did.
// Landed and Umsgs hear of the end after the lock is released: a
// pusher's sink (transport.Pusher) may write, and so call Err. It
// neither tells the peer nor closes anything: that is the caller's.
func (b *Base) End(err error) bool {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return false
	}
	b.err = err
	close(b.done)
	b.mu.Unlock()
	b.Landed.End(err)
	b.Umsgs.End(err)
	return true
}

// RecvMessage implements transport.Transport.RecvMessage for the
// session: messages that arrived before it ended are still delivered,
// then its error.
func (b *Base) RecvMessage(ctx context.Context) (transport.Message, error) {
	return b.Msgs.Recv(ctx, b.done, b.Err)
}

// RecvUrgent implements transport.Transport.RecvUrgent, as RecvMessage.
func (b *Base) RecvUrgent(ctx context.Context) (transport.Message, error) {
	return b.Umsgs.Recv(ctx, b.done, b.Err)
}

// WaitLanded implements transport.Transport.Landed; name ("tcp
// transport") leads the error on the sending side.
func (b *Base) WaitLanded(ctx context.Context, name string) ([]transport.PageRun, error) {
	if err := b.receiving(name); err != nil {
		return nil, err
	}
	return b.Landed.Wait(ctx)
}

// PushLanded implements transport.Pusher.PushLanded, as WaitLanded.
func (b *Base) PushLanded(name string, landed func([]transport.PageRun), ended func(error)) error {
	if err := b.receiving(name); err != nil {
		return err
	}
	b.Landed.Attach(landed, ended)
	return nil
}

func (b *Base) receiving(name string) error {
	if b.Role != transport.RoleReceive {
		return fmt.Errorf("%s: Landed on the sending side: %w", name, transport.ErrNotSupported)
	}
	return nil
}
