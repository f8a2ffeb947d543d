package fabric

import (
	"errors"
	"fmt"
)

// ErrNotSupported is the error of every call in a build without cgo or
// libfabric.
var ErrNotSupported = errors.New("not supported: built without cgo/libfabric (install libfabric-dev and build with CGO_ENABLED=1)")

// ErrAgain means the endpoint's queue is full: poll completions and post again.
var ErrAgain = errors.New("fabric: queue full, try again")

// Access says how a registration may be used.
type Access uint64

// Caps is what the opened provider offers.
type Caps struct {
	Provider, Domain string
	MRMode           uint64 // FI_MR_* bits the provider requires
	Local            bool   // FI_MR_LOCAL: local buffers need a registration
	VirtAddr         bool   // FI_MR_VIRT_ADDR: targets are addressed by virtual address
	ProvKey          bool   // FI_MR_PROV_KEY: the provider picks keys
	SAW              bool   // send after write ordering
	DeliveryComplete bool   // writes complete only once visible at the target
	TxSize, RxSize   int
	KeySize          int
}

// Completion is one finished operation.
type Completion struct {
	Ctx   uint64
	Len   uint64
	Flags uint64
}

// OpError is a failed operation, with the context it was posted with.
type OpError struct {
	Ctx  uint64
	Code int
	Msg  string
}

func (e *OpError) Error() string { return fmt.Sprintf("fabric operation %d failed: %s", e.Ctx, e.Msg) }
