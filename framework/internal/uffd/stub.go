//go:build !(linux && amd64)

package uffd

import (
	"fmt"
	"runtime"
	"time"
)

// Features and modes have no meaning here; they exist so callers build.
const (
	Needed              = 0
	FeatureMissingShmem = 0
	FeatureMinorShmem   = 0
	FeatureThreadID     = 0
	ModeMissing         = 0
	ModeMinor           = 0
	FlagWrite           = 0
	FlagMinor           = 0
	EventPagefault      = 0
)

var errPlatform = fmt.Errorf("%w on %s/%s (Linux amd64 only)", ErrNotSupported, runtime.GOOS, runtime.GOARCH)

// FD is never opened on this platform.
type FD struct{}

// Available always fails here.
func Available() error { return errPlatform }

// Open always fails here.
func Open(uint64) (*FD, error) { return nil, errPlatform }

func Populate(uintptr, uintptr, bool) error         { return errPlatform }
func Addr([]byte) uintptr                           { return 0 }
func (*FD) Features() uint64                        { return 0 }
func (*FD) Register(uintptr, uintptr, uint64) error { return errPlatform }
func (*FD) Unregister(uintptr, uintptr) error       { return errPlatform }
func (*FD) Copy(uintptr, []byte) error              { return errPlatform }
func (*FD) Zeropage(uintptr, uintptr) error         { return errPlatform }
func (*FD) Continue(uintptr, uintptr) error         { return errPlatform }
func (*FD) Wake(uintptr, uintptr) error             { return errPlatform }
func (*FD) Read([]Event) (int, error)               { return 0, errPlatform }
func (*FD) Wait(time.Duration) error                { return errPlatform }
func (*FD) Interrupt()                              {}
func (*FD) Close() error                            { return nil }
