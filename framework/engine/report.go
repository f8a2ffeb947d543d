package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Options tune one migration.
type Options struct {
	// MaxDowntime is the pause the source may take for the last pass and
	// the state: the engine switches over once its estimate is below it
	// (the last sync, the dirty pages at the measured rate, two round
	// trips as the link did them in the latest pass: rttMeter).
	MaxDowntime time.Duration
	// Bandwidth caps page traffic during the live passes, bytes per
	// second of page data; 0 means unlimited. The final pass is not capped.
	Bandwidth uint64
	// MaxPasses bounds the live passes; then the engine switches over
	// although the estimate is above MaxDowntime (a forced
	// stop-and-copy), unless post-copy takes over (Postcopy "auto"), or
	// the switch-over could not finish within SwitchoverTimeout by the
	// engine's own measure: the final dirty sync and the dirty pages
	// that carry data (at the last pass's share of data pages) at the
	// fastest rate a live pass measured. Then Send fails with an error
	// wrapping ErrNotConverged and the VM never paused. A forced switch
	// whose rate the last pass did not measure, or whose fastest rate
	// may be the Bandwidth cap's, goes on (forcedSwitchRefused), bounded
	// by its deadline.
	MaxPasses int
	// VerifyPages turns on the page-exact check (a test mode): before the
	// destination may run, it compares a hash of every page with the
	// paused source's; any difference aborts and the source resumes.
	VerifyPages bool
	// VerifyFree makes the page check strict (implies VerifyPages): pages
	// skipped on free or unused hints are compared too, instead of being
	// trusted (verify.go). Their contents differ from the zeros the
	// destination holds unless the guest zeroes the memory it frees, so
	// strict mode tests providers; it is not for production guests.
	VerifyFree bool
	// Hints are the configured hint providers, already Configured; the
	// engine asks them in every live pass and closes their windows (final)
	// when Send returns, whatever happened.
	Hints []HintSource
	// HintHold is how long a live pass may hold back its first page for
	// providers still answering its generation: it starts once every
	// provider's call ended, its deadline passed or HintHold passed. 0,
	// the default, sends at once; answers then apply to the pages the
	// pass has not reached yet. Worth it only where a pass is shorter
	// than the providers' answer (small guests, tests counting skips).
	// Nothing moves meanwhile: keep it well under the destination's
	// StallTimeout.
	HintHold time.Duration
	// SwitchoverTimeout bounds the switch-over: from the pause through
	// the final pass, its Flush, the state and the destination's LOADED.
	// When it passes, the source aborts and resumes. It also bounds the
	// wait for RUNNING after COMMIT (then the handover is unknown, never
	// resumed) and, on the destination, the wait for COMMIT after LOADED.
	// The page check (VerifyPages) is not under it. Default 5 s. A
	// forced switch at MaxPasses that could not finish within it is not
	// begun (ErrNotConverged: the VM is never paused for it).
	//
	// It is also the first bound on two waits for a message the peer
	// sends at once on a freshly opened session: the destination's for
	// HELLO (or RESUME on a post-copy reconnect), after which that
	// session is closed and another waited for; and a post-copy source's
	// for the answer to its RESUME, after which it dials again. Each
	// silent session in a row doubles the next one's bound, up to 64
	// times (quiet.go): a peer that is only slow, on every try, gets
	// through on a later one.
	SwitchoverTimeout time.Duration
	// IncomingTimeout bounds how long Receive waits for a source to
	// connect (the transport's Open; counted from Receive's start, so a
	// wait on after another migration's source does not extend it); the
	// transport then stops listening. 0 waits until ctx ends.
	IncomingTimeout time.Duration
	// Transport configures the transport (decoded from the job).
	Transport schema.Config
	// Credentials authenticate the two sides to each other (and encrypt
	// the session unless Plaintext: then only the handshake is
	// authenticated, see transport.Credentials, and Send and Receive
	// each log one Warn saying so as they start, as they do for
	// encryption with Transport's transport.CleartextPages set:
	// securityWarnings); the transport refuses to open without them.
	Credentials transport.Credentials
	// MigrationID names the migration, the same on both sides ("": none;
	// migrate gives both the same fresh one). Credentials say which host
	// speaks, not which migration: two migrations between the same two
	// hosts with an operator's certificates share them. With an ID, the
	// source's HELLO and RESUMEs carry a tag made from it, and a
	// destination with an ID takes only a source with the same one: its
	// transport refuses another migration's source in its own handshake
	// (transport.OpenRequest.Tag), or, through a transport that does not,
	// its HELLO is refused here; either way before any page of it is
	// written, that source is told before it paused anything, and this
	// destination waits on for its own within IncomingTimeout. Without
	// an ID the source draws a random tag, which binds its RESUMEs and
	// post-copy reconnects only.
	MigrationID string
	// Progress receives events one at a time, in order, from the
	// engine's goroutine (or, while that one waits in a Flush, from a
	// reporter it then joins); keep it quick. The source sends at most
	// one per 250 ms from its send loop plus one per pass and per phase
	// change; bytes on the wire are the transport's count from its last
	// poll (progress.go).
	Progress func(Progress)
	Log      *slog.Logger

	// Postcopy says when the source switches to post-copy (postcopy.go):
	// never (the default), when pre-copy will not converge, or after the
	// bulk pass. The destination needs no setting: it follows the source.
	Postcopy PostcopyMode
	// StartPostcopy, if set, switches an ongoing pre-copy to post-copy
	// when it receives or is closed (like QEMU's migrate-start-postcopy):
	// the pass in progress stops at its next batch and the switch-over
	// begins. It is honoured in every Postcopy mode, "off" included: the
	// operator asked.
	StartPostcopy <-chan struct{}
	// ReconnectTimeout bounds how long either side keeps trying to open
	// the transport again after the connection broke during post-copy
	// (the source dials, the destination listens). Until then the source
	// keeps its paused copy and the destination keeps the guest running
	// on the pages it holds. Default 10 minutes; when it passes, Send and
	// Receive return ErrPostcopyBroken and neither side resumes on its own.
	ReconnectTimeout time.Duration
	// StallTimeout bounds a session in which nothing moves. A peer whose
	// process stopped, or whose transport no longer makes progress, keeps
	// its connection up: nothing breaks and nothing times out.
	//
	// Before COMMIT (pre-copy, and post-copy's live passes and switch):
	// the source fails when a pass's SendPages or Flush waited this long
	// with no call returning and the transport's byte count (Stats)
	// standing still; the destination fails when, between HELLO and
	// LOADED, no message came and its transport's byte count stood still
	// for this long, and at least its SwitchoverTimeout (a source in its
	// switch-over sends nothing from the pause to its final pass, for up
	// to its own); in post-copy, the same bound holds while it runs
	// LoadState, which may wait in a fault on a page only the source
	// holds, with a page landing as progress too (its userfaultfd is then
	// closed to wake that fault). Either way the VM runs on the source
	// (its last pass resumes it, as any failure before COMMIT) and never
	// ran on the destination. The source sends nothing while it holds a
	// pass for hints (HintHold) nor between passes (a dirty sync): the
	// destination's StallTimeout must exceed both. The error names this
	// side's own transport plugin instead of the peer when that plugin
	// answered no Stats call for the whole StallTimeout either (stopped,
	// hung or gone; one that answers late is not); that side then calls
	// the plugin no more (no ABORT, no last Stats: selfStopped), and its
	// peer learns of the end when this side's transport closes, or at its
	// own stall bound.
	//
	// In post-copy, a session in which nothing moved for this long while
	// pages were still due (the source: no page handed over, no Flush
	// answered, no message; the destination: no page landed) is taken for
	// broken, closed and reconnected (a launched plugin is started
	// again): post-copy cannot be cancelled, and would wait for ever.
	//
	// Default 30 s, and never less than four times what the pusher's
	// Flush interval takes at Bandwidth.
	StallTimeout time.Duration
}

func (o *Options) defaults() {
	if o.MaxDowntime <= 0 {
		o.MaxDowntime = 300 * time.Millisecond
	}
	if o.SwitchoverTimeout <= 0 {
		o.SwitchoverTimeout = DefaultSwitchoverTimeout
	}
	if o.MaxPasses <= 0 {
		o.MaxPasses = 30
	}
	if o.VerifyFree {
		o.VerifyPages = true
	}
	if o.ReconnectTimeout <= 0 {
		o.ReconnectTimeout = DefaultReconnectTimeout
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Bandwidth > 0 { // a Flush interval at the cap must never look like a stall
		o.StallTimeout = max(o.StallTimeout, 4*time.Duration(float64(pushFlushBytes)/float64(o.Bandwidth)*float64(time.Second)))
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(Progress) {}
	}
}

// DefaultSwitchoverTimeout is Options.SwitchoverTimeout when unset.
const DefaultSwitchoverTimeout = 5 * time.Second

// DefaultReconnectTimeout is Options.ReconnectTimeout when unset.
const DefaultReconnectTimeout = 10 * time.Minute

// DefaultStallTimeout is Options.StallTimeout when unset.
const DefaultStallTimeout = 30 * time.Second

// Progress is a snapshot of a migration in flight.
type Progress struct {
	Phase        Phase         `json:"phase"`
	Pass         int           `json:"pass"`
	Remaining    uint64        `json:"remaining_pages"` // still to send in this pass (or dirty after it)
	PagesSent    uint64        `json:"pages_sent"`
	PagesZero    uint64        `json:"pages_zero"`
	PagesSkipped uint64        `json:"pages_skipped"`
	BytesWire    uint64        `json:"bytes_wire"`
	Throughput   float64       `json:"throughput_bps"`  // page data bytes per second now: over the last statsInterval of this pass (timing.go); while the pass's Flush waits, what the transport wrote since it began
	EstDowntime  time.Duration `json:"est_downtime_ns"` // the pause a switch-over would take, as estimated after the last live pass (estimateDowntime: zero pages and holes charged their reading, not the data rate; pages a "free" or "unused" hint skipped charged as data)
	Elapsed      time.Duration `json:"elapsed_ns"`
	TotalPages   uint64        `json:"total_pages"`
	// Handover is this side's handover state as of the event. A
	// destination reports its move to failed in an event of its own at
	// once (receiver.fail), also while Receive still tells the source
	// (its ABORT, which in post-copy may linger for minutes): from then
	// on it never runs the VM. Its other moves show in the next event.
	Handover Handover `json:"handover,omitempty"`
	// Mode is "postcopy" from the moment the source decided to switch
	// (and on the destination from the last POSTCOPY chunk), else
	// "precopy". In post-copy, from the commit on, the engine ignores its
	// context: a VMM must neither cancel nor shut down a side whose
	// Progress says postcopy until the migration ended (hold.go).
	Mode string `json:"mode,omitempty"`
	// Reconnecting is, in post-copy, how long this side has been trying
	// to resume over a new connection since the last one broke (the
	// guest waits on the destination for the pages it lacks meanwhile);
	// 0 while connected. It gives up at ReconnectTimeout.
	Reconnecting time.Duration `json:"reconnecting_ns,omitempty"`
	// TagFingerprint is Report.TagFingerprint as of the event: the
	// source's from its first event after it began to send HELLO (its
	// bulk phase's, or its last), the destination's from the event of
	// the HELLO it took (its bulk phase's).
	TagFingerprint string `json:"tag_fingerprint,omitempty"`
}

// Report is the outcome of one migration, on either side.
type Report struct {
	Status     Status   `json:"status"` // completed, failed, cancelled, handover-unknown, postcopy-broken
	Error      string   `json:"error,omitempty"`
	Handover   Handover `json:"handover,omitempty"` // this side's last handover state
	TotalMS    int64    `json:"total_ms"`           // the engine's run: ConnectMS + BulkMS + DirtyMS + SwitchoverMS (+ PostcopyMS) + TeardownMS (docs/JOBS.md)
	DowntimeMS int64    `json:"downtime_ms"`        // pause until the destination loaded the state
	// SetupMS is the time before the engine ran, not in TotalMS: plugin
	// processes started, schemas checked, providers configured (set by
	// framework/session; in migrate's report also migrate's own checks
	// and the destination's start).
	SetupMS      int64 `json:"setup_ms"`
	ConnectMS    int64 `json:"connect_ms"`    // the engine's setup phase: transport open, handshake (destination: waiting for the source and its pages)
	BulkMS       int64 `json:"bulk_ms"`       // the bulk pass (destination: pages arriving)
	DirtyMS      int64 `json:"dirty_ms"`      // every dirty pass
	SwitchoverMS int64 `json:"switchover_ms"` // stop-and-copy and the state, through the handover's answer
	// TeardownMS is the end of TotalMS: after the handover was decided
	// (or the migration failed), closing hint windows, the last counters
	// and the transport's session. Plugin processes exit after the report.
	TeardownMS int64 `json:"teardown_ms"`
	// BytesWire is the migration's own traffic: every session of it (a
	// post-copy's reconnects too), as the transport counts it.
	BytesWire uint64 `json:"bytes_wire"`
	// BytesWireRefused (destination only) is the traffic of the sessions
	// it closed before its own source came (receiver.waitAgain: another
	// migration's HELLO, a stranger's RESUME, a session silent past its
	// bound or ended before its first message), as their transport
	// counted it after the close; not in BytesWire, which is this
	// migration's alone, as the source's is. What a refused Open moved
	// (a transport that refuses another migration's tag in its own
	// handshake) is in neither: no session opened.
	BytesWireRefused uint64            `json:"bytes_wire_refused,omitempty"`
	PagesSent        uint64            `json:"pages_sent"` // data pages
	PagesZero        uint64            `json:"pages_zero"`
	PagesSkipped     uint64            `json:"pages_skipped"`
	SkippedBy        map[string]uint64 `json:"pages_skipped_by,omitempty"`
	Passes           int               `json:"passes"`
	ThroughputMB     float64           `json:"throughput_mbps"` // average MB/s of bytes on the wire
	TotalPages       uint64            `json:"total_pages"`
	StateBytes       int               `json:"state_bytes"`
	PagesChecked     uint64            `json:"pages_checked,omitempty"` // page-exact check: pages covered
	PagesFree        uint64            `json:"pages_free,omitempty"`    // of those, free at switch-over: compared only when VerifyStrict
	VerifyStrict     bool              `json:"verify_strict,omitempty"` // the page check compared free pages too (Options.VerifyFree)
	VerifyMS         int64             `json:"verify_ms,omitempty"`     // time the page check added to the pause (not in DowntimeMS)
	Hints            []HintStats       `json:"hints,omitempty"`
	Encryption       string            `json:"encryption,omitempty"` // EncryptionTLS, EncryptionControl or EncryptionOff, once the transport was opened
	// TagFingerprint names the migration without its tag
	// (fingerprint.go): set on the source once it began to send HELLO,
	// on the destination once it took a HELLO (one it refused, another
	// migration's, leaves it unset); "" before. Both sides of one
	// migration report the same, with or without a MigrationID.
	TagFingerprint string `json:"tag_fingerprint,omitempty"`

	// Post-copy (postcopy.go). Mode is set on both sides once the
	// handshake ran: ModePrecopy, or ModePostcopy from the switch on.
	Mode       string `json:"mode,omitempty"`
	PostcopyMS int64  `json:"postcopy_ms"` // from RUNNING (the VM runs on the destination) until the last page arrived
	// Pages that went over the network after the switch: asked for by a
	// fault (both sides count them: the destination its requests, the
	// source the pages it answered urgently, each time: a page whose
	// answer did not land counts again when answered again after the
	// reconnect, and here and in PagesPushed when pushed instead) and
	// pushed in the background.
	PagesRequested uint64 `json:"pages_requested"`
	// PagesPushed (source): pages pushed in the background that the
	// destination did not name missing on a later reconnect, each page
	// once (pushedPages): a page pushed again after a reconnect counts
	// once; one whose push failed counts only if a later push delivered
	// it (not if a request did). Pages of the last session count once
	// the pusher sent them, so after a post-copy that broke for good
	// some may not have landed. PagesSent and PagesZero, by contrast,
	// count every copy handed to the transport after the switch, also
	// of a call that failed.
	PagesPushed uint64 `json:"pages_pushed"`
	// Destination: faults resolved without the network (a zero or free
	// run, or data that landed before the fault), and the fault latency
	// from reading the fault to placing the page.
	PagesZeroLocal uint64 `json:"pages_zero_local"`
	PagesLandLocal uint64 `json:"pages_landed_local"`
	FaultP50US     int64  `json:"fault_p50_us"`
	FaultP99US     int64  `json:"fault_p99_us"`
	FaultMaxUS     int64  `json:"fault_max_us"`
	// The same for the faults that went over the network only.
	FaultNetP50US int64 `json:"fault_net_p50_us"`
	FaultNetP99US int64 `json:"fault_net_p99_us"`
	FaultNetMaxUS int64 `json:"fault_net_max_us"`
	Reconnects    int   `json:"reconnects"` // times post-copy resumed over a new connection
	// PagesMissing (a post-copy destination only, nil elsewhere): the
	// pages it still lacked when the migration ended, absent or asked
	// for. A destination left handover-unknown with none missing holds
	// the whole guest, like a pre-copy one, and may be resumed once the
	// source is known not to run (docs/HANDOVER.md).
	PagesMissing *uint64 `json:"pages_missing,omitempty"`
	// LandedRunsDropped (a post-copy destination only): runs its
	// transport reported landed that break the transport's contract but
	// claim no write the engine may refuse, dropped instead of halting
	// the guest: empty ones, and ones of no kind over pages not arrived
	// yet (docs/POSTCOPY.md). Any is a faulty transport plugin.
	LandedRunsDropped uint64 `json:"landed_runs_dropped,omitempty"`
}

// Report.Mode values.
const (
	ModePrecopy  = "precopy"
	ModePostcopy = "postcopy"
)

// Report.Encryption values: how the session's stream was protected.
// EncryptionControl: the job accepted (transport.CleartextPages) that
// the transport moves page contents in the clear; only its control
// channel (messages, the VM state) is encrypted. EncryptionOff
// (Credentials.Plaintext): only the handshake authenticated the peer;
// the frames after it were neither encrypted nor integrity-protected.
// Its text is kept as it is for whoever parses reports; what it means is
// in docs/JOBS.md, "The report".
const (
	EncryptionTLS     = "tls1.3"
	EncryptionControl = "tls1.3 control channel only; pages in cleartext"
	EncryptionOff     = "off (authenticated only)"
)

// securityWarnings logs once, at Send's or Receive's start, what a
// session in which anything travels in plaintext gives up: with
// Credentials.Plaintext, everything after the handshake
// (transport.PlaintextRisk); with encryption on and the transport's
// transport.CleartextPages set, the pages (transport.CleartextPagesRisk;
// implied by the first, so not said with it), as migrate's
// securityWarnings says of its job. The report's Encryption
// (EncryptionOff, EncryptionControl) comes only at the end, and an
// embedder's or a hand-driven VMM's caller may never read it. Until
// TestCleartextPagesWarned, cleartext pages were warned of by migrate
// only. It cannot tell whether the link is in fact trusted; it goes by
// the setting, as the report's Encryption does (encryption), not by
// what the transport then does with it.
func securityWarnings(opt Options) {
	cleartext, _ := opt.Transport[transport.CleartextPages].(bool)
	switch {
	case opt.Credentials.Plaintext:
		opt.Log.Warn("encryption off (Credentials.Plaintext): " + transport.PlaintextRisk)
	case cleartext:
		opt.Log.Warn("encryption on, but " + transport.CleartextPages + " = true: " + transport.CleartextPagesRisk)
	}
}

// openTransport opens tr with req and records in rep how the session
// is protected.
func openTransport(ctx context.Context, tr transport.Transport, req transport.OpenRequest, rep *Report) error {
	if err := tr.Open(ctx, req); err != nil {
		return err
	}
	rep.Encryption = encryption(req)
	return nil
}

// encryption says how a session opened with req is protected.
func encryption(req transport.OpenRequest) string {
	switch cleartext, _ := req.Config[transport.CleartextPages].(bool); {
	case req.Credentials.Plaintext:
		return EncryptionOff
	case cleartext:
		return EncryptionControl
	}
	return EncryptionTLS
}
