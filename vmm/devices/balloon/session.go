package balloon

import "fmt"

// Reserved free-page-hint command ids.
const (
	CmdIDStop  = 0
	CmdIDDone  = 1
	CmdIDFirst = 0x8000_0000
)

// SessionState is where a free-page-hint session is.
type SessionState int

const (
	// Idle: no session since the device started, or DONE was sent.
	Idle SessionState = iota
	// Requested: the host published a new id; the guest has not echoed it.
	Requested
	// Active: the guest echoed the id; hints are being accepted.
	Active
	// Stopped: the guest sent STOP or the host stopped; the guest still
	// holds the hinted pages until DONE.
	Stopped
)

func (s SessionState) String() string {
	switch s {
	case Idle:
		return "idle"
	case Requested:
		return "requested"
	case Active:
		return "active"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("SessionState(%d)", int(s))
}

// HintSummary describes the current or last hint session.
type HintSummary struct {
	CmdID        uint32 `json:"cmd_id"`
	State        string `json:"state"`
	Ranges       uint64 `json:"ranges"`
	Bytes        uint64 `json:"bytes"`
	GuestStopped bool   `json:"guest_stopped"` // the guest sent STOP for this id
	Stale        uint64 `json:"stale"`         // buffers ignored: wrong id or not active
	// Dropped counts ranges past MaxHintRanges in this session: the
	// guest kept hinting after it had hinted more blocks than any guest
	// RAM this VMM runs can hold. Not saved with the device state.
	Dropped uint64 `json:"dropped,omitempty"`
}

// MaxHintRanges bounds the ranges one hint session accepts, so that a
// guest that hints endlessly cannot grow the VMM's memory without bound
// (each accepted range is kept until the session's hints are taken).
// Linux hints free blocks of 4 MiB (pageblock order on x86-64): 1<<18
// of them cover 1 TiB of guest RAM, and keep about 6 MiB on the host.
const MaxHintRanges = 1 << 18

// session is the host's side of the free page hint protocol. It is pure
// state, driven by the device under its lock, so it can be table-tested.
type session struct {
	state        SessionState
	id           uint32 // current id, valid unless state == Idle at start
	lastID       uint32 // last id handed out, 0 before the first
	config       uint32 // what the config field shows
	ranges       uint64
	bytes        uint64
	guestStopped bool
	stale        uint64
	dropped      uint64 // ranges refused by the cap
	max          uint64 // the cap on ranges; 0: MaxHintRanges (tests lower it)
}

func newSession() session { return session{config: CmdIDDone} }

// start publishes a fresh id. It refuses while a session is requested or
// active: stop it first.
func (s *session) start() (uint32, error) {
	if s.state == Requested || s.state == Active {
		return 0, fmt.Errorf("hint session %#x is %s: stop it first", s.id, s.state)
	}
	id := s.lastID + 1
	if id < CmdIDFirst { // first session, or wrapped past 0xffffffff
		id = CmdIDFirst
	}
	s.lastID, s.id, s.config, s.state = id, id, id, Requested
	s.ranges, s.bytes, s.guestStopped, s.stale, s.dropped = 0, 0, false, 0, 0
	return id, nil
}

// stop makes the guest stop hinting (config STOP); pages stay held.
func (s *session) stop() {
	if s.state == Requested || s.state == Active {
		s.state = Stopped
	}
	if s.config != CmdIDDone {
		s.config = CmdIDStop
	}
}

// done lets the guest take its hinted pages back (config DONE).
func (s *session) done() {
	s.state, s.config = Idle, CmdIDDone
}

// outBuf handles a 4-byte command the guest put on the hint queue. A
// STOP while Requested ends an older round (the guest starts every round
// by echoing its id) and is stale: it must not end the new session.
func (s *session) outBuf(id uint32) {
	switch {
	case id == CmdIDStop && s.state == Requested:
		s.stale++
	case id == CmdIDStop:
		if s.state == Active || s.state == Stopped {
			s.guestStopped = true
			s.state = Stopped
		}
	case s.state == Requested && id == s.id:
		s.state = Active
	default:
		s.stale++ // an echo of an old id, or DONE/garbage from a confused driver
	}
}

// inBuf reports whether a hinted range may be used, counting it, and
// whether it was refused by the MaxHintRanges cap.
func (s *session) inBuf(n uint64) (ok, dropped bool) {
	switch {
	case s.state != Active:
		s.stale++
		return false, false
	case s.ranges >= s.limit():
		s.dropped++
		return false, true
	}
	s.ranges++
	s.bytes += n
	return true, false
}

// limit is the cap on accepted ranges per session.
func (s *session) limit() uint64 {
	if s.max == 0 {
		return MaxHintRanges
	}
	return s.max
}

func (s *session) summary() HintSummary {
	return HintSummary{CmdID: s.id, State: s.state.String(), Ranges: s.ranges, Bytes: s.bytes,
		GuestStopped: s.guestStopped, Stale: s.stale, Dropped: s.dropped}
}
