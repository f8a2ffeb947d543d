//go:build !linux || !cgo || nolibfabric

package fabric

import (
	"context"
	"time"
)

// Supported reports whether this build can open a fabric.
const Supported = false

// Registration access bits (unused without libfabric).
const (
	AccessSend Access = 1 << iota
	AccessRecv
	AccessWrite
	AccessRemoteWrite
)

// warmUp does nothing: there is no libfabric to initialise.
func warmUp(string) {}

// Listener is a passive endpoint; without libfabric it cannot be opened.
type Listener struct{}

// Listen returns ErrNotSupported.
func Listen(prov, host string) (*Listener, error) { return nil, ErrNotSupported }

// ListenShared returns ErrNotSupported.
func ListenShared(*Listener, string) (*Listener, error) { return nil, ErrNotSupported }

// Port returns ErrNotSupported.
func (l *Listener) Port() (int, error) { return 0, ErrNotSupported }

// Accept returns ErrNotSupported.
func (l *Listener) Accept(context.Context, func([]byte) bool, func(*Endpoint) error) (*Endpoint, error) {
	return nil, ErrNotSupported
}

// Close does nothing.
func (l *Listener) Close() {}

// Endpoint is a connected endpoint; without libfabric it cannot be opened.
type Endpoint struct{}

// Connect returns ErrNotSupported.
func Connect(context.Context, string, string, int, []byte) (*Endpoint, error) {
	return nil, ErrNotSupported
}

// ConnectShared returns ErrNotSupported.
func ConnectShared(context.Context, *Endpoint, string, int, []byte) (*Endpoint, error) {
	return nil, ErrNotSupported
}

// Caps returns nothing.
func (e *Endpoint) Caps() Caps { return Caps{} }

// MR is a registration.
type MR struct{}

// Key returns 0.
func (m *MR) Key() uint64 { return 0 }

// Base returns 0.
func (m *MR) Base(bool) uint64 { return 0 }

// Register returns ErrNotSupported.
func (e *Endpoint) Register([]byte, Access, uint64) (*MR, error) { return nil, ErrNotSupported }

// Write returns ErrNotSupported.
func (e *Endpoint) Write([]byte, *MR, uint64, uint64, uint64) error { return ErrNotSupported }

// Send returns ErrNotSupported.
func (e *Endpoint) Send([]byte, *MR, uint64) error { return ErrNotSupported }

// Recv returns ErrNotSupported.
func (e *Endpoint) Recv([]byte, *MR, uint64) error { return ErrNotSupported }

// Poll returns ErrNotSupported.
func (e *Endpoint) Poll([]Completion, time.Duration) (int, error) { return 0, ErrNotSupported }

// StopListening does nothing.
func StopListening(...*Endpoint) int { return 0 }

// Close does nothing.
func (e *Endpoint) Close() {}

// ForceDeliveryComplete does nothing.
func ForceDeliveryComplete(bool) {}

// Providers reports every name as not supported.
func Providers(host string, names ...string) map[string]error {
	out := map[string]error{}
	for _, n := range names {
		out[n] = ErrNotSupported
	}
	return out
}
