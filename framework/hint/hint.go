package hint

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
)

// APIVersion is the hint plugin protocol version (go-plugin's
// ProtocolVersion); host and plugin must agree. The rule and its tests:
// docs/ARCHITECTURE.md#versions.
const APIVersion = 1

// Meaning says what a provider's ranges promise about their pages. 0 is
// invalid. Whatever the meaning, the engine sends skipped pages to the
// destination as zero runs, never their contents.
type Meaning int

const (
	// MeaningFree: the guest does not care about the contents (free
	// pages); they may differ from zero on the source.
	MeaningFree Meaning = 1
	// MeaningZero: the pages read as zero on the source right now.
	MeaningZero Meaning = 2
	// MeaningUnused: the platform marks the pages unused (s390 CMMA);
	// like MeaningFree for migration.
	MeaningUnused Meaning = 3
)

func (m Meaning) String() string {
	switch m {
	case MeaningFree:
		return "free"
	case MeaningZero:
		return "zero"
	case MeaningUnused:
		return "unused"
	}
	return "invalid"
}

// Info describes a provider.
type Info struct {
	Name    string // as used in the job file: hint "<name>" { ... }
	Version string
	Meaning Meaning
}

// Schema is the provider's configuration block (framework/schema, as for
// transports; the job parser decodes it). Every provider's block also
// accepts `deadline`, which the engine handles; providers do not declare it.
type Schema = schema.Schema

// Config is a decoded configuration block (see schema.Config).
type Config = schema.Config

// Region is one region of guest RAM as a provider sees it.
type Region struct {
	GPA      uint64
	Size     uint64
	HostAddr uint64 // where the VMM (PID) maps it: for /proc/PID/pagemap
	File     int    // index into VM.Files
	Offset   uint64 // offset of GPA in that file
}

// VM identifies the virtual machine whose pages are hinted.
type VM struct {
	ID    string     // a name for logs
	PID   int        // the VMM process
	RAM   []Region   // in page-index order (framework.Layout)
	Files []*os.File // guest RAM, opened read-only by the VMM's session
}

// Range is Count pages from page index First (framework page indices:
// the RAM regions laid end to end).
type Range struct {
	First uint64
	Count uint64
}

// GPARange is a range of guest physical addresses, as the VMM reports
// balloon hints.
type GPARange struct {
	GPA  uint64
	Size uint64
}

// Host is what the VMM offers providers: capabilities they call back into
// (through go-plugin's broker when out of process). A VMM without a
// capability returns an error wrapping ErrNotSupported; the provider then
// says so once and yields no hints. Out of process, the VMM sees a
// plugin's calls one at a time (a BalloonDone ends a BalloonHint in
// flight first, as DONE ends a running session), and when the hint
// window ends it gets BalloonDone if a BalloonHint came after the last
// BalloonDone, whatever the plugin did; a plugin's BalloonHint calls
// begin no more sessions than one per Hints call plus a few (window.go).
type Host interface {
	// BalloonHint runs one virtio-balloon free page hint session: a fresh
	// command id, the guest's hinted blocks until its STOP or ctx's end,
	// then STOP. The guest keeps the blocks until BalloonDone. Over
	// gRPC the plugin side takes at most one range per page of guest RAM
	// (balloonLimit); a session of more is an error, with no ranges.
	BalloonHint(ctx context.Context) ([]GPARange, error)
	// BalloonDone lets the guest take every hinted block back.
	BalloonDone(ctx context.Context) error
	// CMMABits reads s390 CMMA values from guest frame startGFN on
	// (KVM_S390_GET_CMMA_BITS in migration mode): the first frame it
	// reports and one byte per frame.
	CMMABits(ctx context.Context, startGFN uint64, count int) (first uint64, values []byte, err error)
}

// Request asks for the hints of one generation.
type Request struct {
	// Generation numbers the dirty-log epoch the hints are for: the
	// engine asks right after its dirty sync number Generation.
	Generation uint64
	// Deadline is when the engine stops listening for this generation.
	Deadline time.Time
}

// Provider reports pages that need not travel.
//
// Calls come from one engine goroutine, one at a time, except Close,
// which may interrupt a running Hints. Every call honours its context; the
// engine bounds Hints by the request's deadline and abandons a provider
// that overruns (its late answers are dropped and counted). Over gRPC,
// while a Hints is still running 250 ms past its deadline (or past a
// cancel that came later), the plugin side refuses the next Hints at
// once with an error of the deadline class (the engine counts it hung);
// a call cancelled before its deadline has until then, and the 250 ms.
type Provider interface {
	// Info and Schema describe the provider; they need no Configure.
	Info(ctx context.Context) (Info, error)
	Schema(ctx context.Context) (Schema, error)
	// Configure starts a migration's hint window: the VM and its RAM,
	// the provider's decoded block, and the host's capabilities.
	Configure(ctx context.Context, cfg Config, vm VM, host Host) error
	// Hints reports skippable ranges for req through emit (any number of
	// calls, each at most a few thousand ranges) and returns when it has
	// no more, or when ctx ends. Ranges must lie inside RAM; the engine
	// drops and counts those that do not.
	Hints(ctx context.Context, req Request, emit func([]Range) error) error
	// Close ends the hint window. final is true when the migration is
	// over (completed, failed or cancelled): a balloon provider then lets
	// the guest take its pages back.
	Close(ctx context.Context, final bool) error
}

// Error classes that cross the plugin boundary (errors.Is).
var (
	ErrNotSupported = errors.New("not supported")
	ErrPluginGone   = errors.New("hint plugin process is gone")
	ErrBadConfig    = schema.NewErrBadConfig("bad hint provider configuration")
)
