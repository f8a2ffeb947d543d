package wire

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// ErrProtocol is the class of every decoding error: the same error value
// as transport.ErrProtocol (both are framework/internal/errclass's), so
// errors.Is(err, ErrProtocol) holds for them too.
var ErrProtocol = errclass.ErrProtocol

// Decoding errors. Each wraps ErrProtocol, so errors.Is works with both
// the specific error and the class.
var (
	ErrBadMagic   = fmt.Errorf("%w: bad frame magic", ErrProtocol)
	ErrBadVersion = fmt.Errorf("%w: unsupported frame version", ErrProtocol)
	ErrBadType    = fmt.Errorf("%w: bad frame type", ErrProtocol)
	ErrTooLong    = fmt.Errorf("%w: frame length out of bounds", ErrProtocol)
	ErrTruncated  = fmt.Errorf("%w: truncated frame", ErrProtocol)
	ErrMalformed  = fmt.Errorf("%w: malformed frame", ErrProtocol)
)
