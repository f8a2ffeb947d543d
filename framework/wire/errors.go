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

// MagicError is ParseHeader's error for a header that does not begin
// with Magic; errors.Is matches it with ErrBadMagic (and ErrProtocol).
// Got lets a caller name what the peer speaks instead (a TLS record, say).
type MagicError struct{ Got [4]byte }

func (e *MagicError) Error() string {
	return fmt.Sprintf("%v %q (want %q)", ErrBadMagic, e.Got[:], Magic)
}

func (e *MagicError) Unwrap() error { return ErrBadMagic }

// TLSRecord reports whether Got begins like a TLS record: a content
// type of 20-23 (change_cipher_spec, alert, handshake, application
// data), then major version 3.
func (e *MagicError) TLSRecord() bool { return e.Got[0] >= 20 && e.Got[0] <= 23 && e.Got[1] == 3 }
