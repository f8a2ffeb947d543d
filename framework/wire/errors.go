package wire

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
)

// Decoding errors. Each wraps transport.ErrProtocol, so errors.Is works
// with both the specific error and the class.
var (
	ErrBadMagic   = fmt.Errorf("%w: bad frame magic", transport.ErrProtocol)
	ErrBadVersion = fmt.Errorf("%w: unsupported frame version", transport.ErrProtocol)
	ErrBadType    = fmt.Errorf("%w: bad frame type", transport.ErrProtocol)
	ErrTooLong    = fmt.Errorf("%w: frame length out of bounds", transport.ErrProtocol)
	ErrTruncated  = fmt.Errorf("%w: truncated frame", transport.ErrProtocol)
	ErrMalformed  = fmt.Errorf("%w: malformed frame", transport.ErrProtocol)
)
