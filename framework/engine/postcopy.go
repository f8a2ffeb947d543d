package engine

// Post-copy (docs/POSTCOPY.md): the source switches early, the VM runs on
// the destination, and the pages it still lacks arrive on request (a
// fault's page, on the transport's urgent path) and in the background.
//
//	source                                   destination
//	HELLO (flags: may switch) ────────────►
//	                          ◄──────────── READY (flags: post-copy ready, or why not)
//	pre-copy passes (pages) ──────────────►
//	pause; last zero/free runs, Flush ────►
//	POSTCOPY chunks (pages queued, absent runs) ►  landed lane drained to that count;
//	                                         register guest RAM (userfaultfd)
//	STATE chunks ─────────────────────────►  LoadState
//	                          ◄──────────── LOADED
//	[HASHES ... ◄── VERIFIED]                (page check: pages held now)
//	COMMIT ───────────────────────────────►  Resume: the VM runs, faults served
//	                          ◄──────────── RUNNING
//	urgent pages, background pages ───────►  ◄── REQUEST (urgent path)
//	                          ◄──────────── SETTLED (every page arrived)
//	                          ◄──────────── or BROKEN (reason) ──► BROKEN (heard)
//
// After a broken connection (post-copy only) the source opens the
// transport again and sends RESUME instead of HELLO, with its HELLO's
// migration tag; the destination answers MISSING, the pages it does not
// hold, and the source owes them again. Both name the tag to the
// transport too (OpenRequest.Tag: the destination's reconnect Open takes
// only its HELLO's), so the session of another migration's source is
// refused in the transport's handshake, before it could write a page into
// the running guest; through a transport that does not check, its RESUME
// with another tag is answered nothing (migrationTag). A
// destination whose stream broke before COMMIT arrived answers
// RESUME with ABORT instead, carrying the RESUME's tag (protocol 8): it
// never ran the VM and never will, so the source resumes it. An ABORT
// without that tag (a fresh destination's at the same address, which
// closed the session before it read the RESUME) is a failed try, never
// a resume: it cannot say whether COMMIT arrived. A destination whose post-copy broke for good after
// the VM ran there (its fault service failed) says BROKEN, on the
// session or in answer to RESUME: the source stops at once, its paused
// copy kept and never resumed.
//
// From its commit on (the source before it writes COMMIT, the
// destination as COMMIT arrives) neither side can be cancelled: the
// guest runs on the destination with pages only the source holds
// (hold.go).

// PostcopyMode says when the source switches to post-copy. "" is off.
type PostcopyMode string

// Options.Postcopy values.
const (
	// PostcopyOff: pre-copy only (the default), unless StartPostcopy.
	PostcopyOff PostcopyMode = "off"
	// PostcopyAuto: switch when pre-copy will not converge: the estimated
	// downtime did not fall for postcopyStall passes, MaxPasses was
	// reached, or the guest dirties pages that carry data faster than the
	// link moves them (after a pass, or at a probe in the middle of one:
	// sender.probe; pages written that travel as zero runs do not count,
	// dataOf).
	PostcopyAuto PostcopyMode = "auto"
	// PostcopyAlways: switch after the bulk pass.
	PostcopyAlways PostcopyMode = "always"
)

var postcopyModes = []PostcopyMode{PostcopyOff, PostcopyAuto, PostcopyAlways}

// String implements fmt.Stringer.
func (m PostcopyMode) String() string {
	if m == "" {
		return string(PostcopyOff)
	}
	return string(m)
}

// Valid reports whether m is "" or one of the modes.
func (m PostcopyMode) Valid() bool { return m == "" || oneOf(m, postcopyModes) }

// MarshalText implements encoding.TextMarshaler.
func (m PostcopyMode) MarshalText() ([]byte, error) {
	return marshalName(m, postcopyModes, "post-copy mode")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *PostcopyMode) UnmarshalText(b []byte) error {
	return unmarshalName(m, b, postcopyModes, "post-copy mode")
}
