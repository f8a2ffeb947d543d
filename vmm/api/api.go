package api

import (
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
)

// MigrateArgs is the argument of migrate-send and migrate-incoming.
type MigrateArgs struct {
	// Plugin is the absolute path of the transport plugin binary.
	Plugin string `json:"plugin"`
	// Transport is the job's transport block; it is checked against the
	// schema the plugin reports.
	Transport     map[string]any `json:"transport"`
	MaxDowntimeMS int64          `json:"max_downtime_ms,omitempty"`
	Bandwidth     uint64         `json:"bandwidth,omitempty"` // bytes per second, 0 unlimited
	MaxPasses     int            `json:"max_passes,omitempty"`
	// VerifyPages turns on the engine's page-exact check (a test mode).
	VerifyPages bool `json:"verify_pages,omitempty"`
	// VerifyFree makes the page check strict (engine.Options.VerifyFree):
	// pages skipped on free hints are compared too. Implies VerifyPages.
	VerifyFree bool `json:"verify_free,omitempty"`
	// SwitchoverTimeoutMS bounds the switch-over (engine.Options.SwitchoverTimeout);
	// both sides need the same value. 0: the engine's default.
	SwitchoverTimeoutMS int64 `json:"switchover_timeout_ms,omitempty"`
	// IncomingTimeoutMS bounds how long migrate-incoming waits for the
	// source to connect; 0 waits until migrate-cancel.
	IncomingTimeoutMS int64 `json:"incoming_timeout_ms,omitempty"`
	// Postcopy says when the source switches to post-copy
	// (engine.Options.Postcopy: "off", "auto", "always"; "" is off). The
	// destination follows its source and ignores it.
	Postcopy engine.PostcopyMode `json:"postcopy,omitempty"`
	// ReconnectTimeoutMS bounds how long both sides try to reconnect after
	// the connection broke in post-copy (engine.Options.ReconnectTimeout).
	// 0: the engine's default.
	ReconnectTimeoutMS int64 `json:"reconnect_timeout_ms,omitempty"`
	// StallTimeoutMS bounds a session in which nothing moves
	// (engine.Options.StallTimeout): before COMMIT the migration fails,
	// in post-copy the session is reconnected. Both sides need the same
	// value. 0: the engine's default (30 s).
	StallTimeoutMS int64 `json:"stall_timeout_ms,omitempty"`
	// Hints are the hint providers (migrate-send only).
	Hints []HintArgs `json:"hints,omitempty"`
	// Credentials are this side's trust material for the session (its
	// key, the peer's roots); without them the transport refuses to open.
	Credentials *transport.Credentials `json:"credentials,omitempty"`
	// ID names the migration (at most MaxIDLen bytes of printable text:
	// a control or format character is refused; "" for none):
	// migrate gives its two sides the same fresh one, and resolves a
	// handover only between two sides that report the same ID
	// (Migration.ID, ResolveResult.ID), so that a VMM at one of the job's
	// sockets that took part in another migration is never taken for
	// this one's other side. The engine binds the session to it too
	// (engine.Options.MigrationID): a destination given an ID takes only
	// a source given the same one.
	ID string `json:"id,omitempty"`
}

// MaxIDLen bounds MigrateArgs.ID.
const MaxIDLen = 64

// HintArgs configures one hint provider of a migration (migrate-send).
type HintArgs struct {
	Name       string         `json:"name"`
	Plugin     string         `json:"plugin"` // absolute path of the provider binary
	Config     map[string]any `json:"config,omitempty"`
	DeadlineMS int64          `json:"deadline_ms,omitempty"`
}

// State is where a VM is in its life (vmm.State*: running, paused,
// migrated, handover-unknown, ...), as status and migrate-resolve report it.
type State string

// Migration is the state of the VM's current or last migration
// (migrate-status).
type Migration struct {
	Role string `json:"role"` // send or receive
	Done bool   `json:"done"`
	// Side is where this VMM stands: migrating until the engine is done,
	// then running, migrated, discarded, failed, handover-unknown or
	// postcopy-broken; migrate-resolve moves handover-unknown on, and
	// postcopy-broken refuses everything but quit (docs/HANDOVER.md).
	Side     Side            `json:"side"`
	Progress engine.Progress `json:"progress"`
	Report   *engine.Report  `json:"report,omitempty"`
	ID       string          `json:"id,omitempty"` // MigrateArgs.ID
	// Control is the answering VMM's ControlVersion (0, left out: a VMM
	// from before it).
	Control uint16 `json:"control,omitempty"`
	// TagFingerprint is the migration's tag fingerprint (engine
	// Report.TagFingerprint: its report's once it ended, else its last
	// progress's), the same on both sides of one migration, with or
	// without an ID; "" until HELLO was taken (destination) or, on the
	// source, until its first progress after it began to send HELLO
	// (its bulk phase's, once READY came and its dirty log started) or
	// its end: a source still migrating may report none while its
	// destination reports the fingerprint. "" too from a VMM older than
	// TagsReported.
	TagFingerprint string `json:"tag_fingerprint,omitempty"`
}

// ControlVersion is the version of the control commands a VMM speaks,
// which it reports in every migrate-status and migrate-resolve answer
// (Migration.Control, ResolveResult.Control), so that a client learns,
// from the same answer that gave it a migration's id, whether an act
// naming that id is honoured. Versions only grow, and each keeps what
// the ones before it promised; a uint16, so a client's decoder refuses
// a value out of range (a negative one, or one above 65535) as a
// malformed answer.
//
//	0 (left out)  a VMM from before: it refuses the id by name in
//	              migrate-resolve and migrate-start-postcopy, and
//	              ignores it in migrate-cancel and quit, acting on
//	              whatever migration it holds
//	1             every act honours the id it is given (IDArgs,
//	              ResolveArgs.ID): another migration, or none, is
//	              refused and nothing changes; quit given an id also
//	              refuses a VM whose guest ran since that migration ended
//	2             migrate-status and migrate-resolve report the
//	              migration's tag fingerprint (Migration.TagFingerprint,
//	              ResolveResult.TagFingerprint) once its HELLO was
//	              taken (destination) or its bulk phase began or it
//	              ended (source), so that a client tells two
//	              migrations without an id apart
//	3             every act honours the tag fingerprint it is given
//	              (IDArgs.TagFingerprint, ResolveArgs.TagFingerprint) as
//	              it honours an id: a migration that reports another
//	              fingerprint (or none yet), or none, is refused and
//	              nothing changes
const ControlVersion uint16 = 3

// IDsHonoured is the first ControlVersion whose VMM honours an id in
// every act: a client sends migrate-cancel or quit naming an id only to
// a VMM that reported at least this one.
const IDsHonoured uint16 = 1

// TagsReported is the first ControlVersion whose VMM reports a
// migration's tag fingerprint: from such a VMM an empty one means that
// its migration never sent or took a HELLO (it holds no copy that came
// from, or went to, another VMM), except on a source still migrating,
// whose HELLO may have been taken already (Migration.TagFingerprint);
// from an older one nothing.
const TagsReported uint16 = 2

// TagsHonoured is the first ControlVersion whose VMM honours a tag
// fingerprint in every act (IDArgs.TagFingerprint,
// ResolveArgs.TagFingerprint): a client names one only to a VMM that
// reported at least this one, since an older VMM refuses the field by
// name (it decodes arguments strictly).
const TagsHonoured uint16 = 3

// CancelResult answers migrate-cancel. The engine decides, under its
// hold (engine.Cancel): a cancel is either applied (Cancelled) or not
// applied at all (Postcopy or Committing), never answered one way and
// acted on the other.
type CancelResult struct {
	// Cancelled: the running migration was cancelled: it ends cancelled
	// (failed if its engine had failed a moment before), also when its
	// session was still starting its plugins (migrate-send and
	// migrate-incoming then fail too; until 2026-12-06 that ended
	// failed), never completed, and the guest runs on the source; except on
	// a destination whose stream broke after LOADED (a post-copy one
	// waiting for its source to reconnect, or one whose engine had just
	// returned): it ends handover-unknown (the source may have written
	// COMMIT), and migrate -resolve decides.
	Cancelled bool `json:"cancelled"`
	// Postcopy: refused because the migration is in post-copy, or about
	// to run the guest on the destination in post-copy (cancelling would
	// lose it). Follow it to its end instead. On a destination whose
	// post-copy already ended (every page arrived, or it broke) and that
	// only waits to tell its source how, the VMM ends that wait and Why
	// says so: the migration then ends at once as it would have.
	Postcopy bool `json:"postcopy,omitempty"`
	// Committing: refused because the source is writing COMMIT or has
	// written it and waits for RUNNING (pre-copy); the engine ignores a
	// cancel from then on, which could only leave the handover unknown.
	// The migration ends within switchover_timeout: completed, failed
	// (the destination's ABORT: the source resumed), or handover-unknown.
	// On a pre-copy destination: COMMIT arrived and the guest runs, or is
	// being resumed, here. On a destination of either mode: COMMIT
	// arrived but the guest could not be resumed there (it never ran
	// there): the migration ends failed within seconds, the source told
	// to run the guest on (until 2026-12-07 a post-copy one answered
	// Postcopy, as if the guest ran there); in post-copy the refused
	// cancel ends the destination's wait for a source that lost that
	// ABORT, which then ends handover-unknown (Why says so).
	Committing bool `json:"committing,omitempty"`
	// Why it was not cancelled, in words.
	Why string `json:"why,omitempty"`
}

// Side is where this VMM stands after its last migration.
type Side string

// Sides reported by migrate-status and migrate-resolve.
const (
	SideNone      Side = "none"      // no migration has run
	SideMigrating Side = "migrating" // a migration is running
	// SideRunning: the guest runs here. A source whose migration failed
	// says so also when its VM stopped after the engine resumed it (the
	// guest powered off or failed, or the VMM's shutdown): the guest ran
	// here after the pause, so no other copy is current.
	SideRunning   Side = "running"
	SideUnknown   Side = "handover-unknown" // paused; waiting for migrate-resolve
	SideMigrated  Side = "migrated"         // source: the guest runs on the destination; paused here for good
	SideDiscarded Side = "discarded"        // destination: will never run; quit it
	// SideFailed: destination: failed before it could run; the VMM
	// exits. Source: the migration failed and the VM was stopped (the
	// VMM's shutdown, or the guest powered off) before the engine could
	// resume it: the guest did not run here after the pause, and the VMM
	// exits.
	SideFailed Side = "failed"
	// SidePostcopyBroken: post-copy could not finish (engine
	// StatusPostcopyBroken). Source: paused for good with a copy older
	// than what the guest ran on; never resumed. Destination: its vCPUs
	// were stopped for good; the VMM exits. A reference VMM whose vCPUs
	// could not all be stopped (its report's error wraps
	// engine.ErrNotHalted; its status says not_halted) stays instead,
	// the guest frozen, answering, until quit (vmm/halt_failed.go).
	SidePostcopyBroken Side = "postcopy-broken"
)

// Resolve actions (ResolveArgs.Action).
const (
	ResolveQuery    = "query"    // report the side, change nothing
	ResolveResume   = "resume"   // either side: run the guest here
	ResolveDiscard  = "discard"  // destination: never run it (then quit it)
	ResolveMigrated = "migrated" // source: the guest runs on the destination; stay paused for good
)

// ResolveArgs is the argument of migrate-resolve.
type ResolveArgs struct {
	Action string `json:"action"`
	// ID, if not empty, is the migration the caller resolves, as IDArgs.ID.
	ID string `json:"id,omitempty"`
	// TagFingerprint, if not empty, is that migration's tag
	// fingerprint, as IDArgs.TagFingerprint (only to a VMM of at least
	// TagsHonoured).
	TagFingerprint string `json:"tag_fingerprint,omitempty"`
}

// IDArgs is the optional argument of migrate-cancel,
// migrate-start-postcopy and quit: the migration the caller acts on.
type IDArgs struct {
	// ID, if not empty, is that migration's MigrateArgs.ID (at most
	// MaxIDLen bytes, printable text as there). A VMM that holds
	// another migration (its running one, or its last: ended, resolved
	// or not), or none, refuses the
	// command with an error that names both, and changes nothing; so a
	// caller that looked at a VMM (migrate-status) and then acts on what
	// it saw is refused when the VMM moved on to another migration in
	// between. quit given an ID also refuses, changing nothing, a VM
	// whose guest has run there since that migration ended (resumed by
	// migrate-resolve or by hand, or never paused for good): it holds
	// the guest, not a copy the migration left behind. "" acts on
	// whatever the VMM holds (an operator by hand).
	// A VMM from before the field ignores migrate-cancel's and quit's
	// arguments altogether (docs/ARCHITECTURE.md, "Job files and the
	// control socket").
	ID string `json:"id,omitempty"`
	// TagFingerprint, if not empty, names the migration by its tag
	// fingerprint (Migration.TagFingerprint: engine.TagFingerprintLen
	// lower-case hex digits), which a migration without an ID has too
	// once its HELLO went out or was taken. A VMM of at least
	// TagsHonoured refuses, changing nothing, a command whose
	// fingerprint is not the one its migration reports (another, or
	// none yet), or that names one while it holds no migration, as it
	// refuses another ID; quit so named also refuses a VM whose guest
	// has run there since. Given both, both must match. "" names none.
	// A VMM of version 1 or 2 refuses the field by name (`bad
	// arguments: json: unknown field "tag_fingerprint"`), and one from
	// before ignores migrate-cancel's and quit's arguments: a client
	// sends it only to a VMM that reported at least TagsHonoured. The
	// VMM cannot tell who asks: the fingerprint, like the ID, is what
	// the caller says it means.
	TagFingerprint string `json:"tag_fingerprint,omitempty"`
}

// ResolveResult is what migrate-resolve answers: this side after the action.
type ResolveResult struct {
	Role string `json:"role,omitempty"` // send or receive; empty if no migration ran
	Side Side   `json:"side"`
	// Handover is the engine's last handover state: its report's once
	// the migration ended, else its last progress's. A destination's
	// move to failed shows at once (it never runs the guest from then
	// on, though its migration may still run, telling its source: migrate
	// takes it for failing), its other moves with its next event or its
	// end (engine Progress.Handover).
	Handover engine.Handover `json:"handover,omitempty"`
	// VM is the VM's state; every VMM reports it. Empty, and left out,
	// only where no VMM answered: migrate -resolve -json's look at a side
	// that did not (side "unreachable"), whose state is unknown (until
	// TestResolveJSONUnreachableLookHasNoVMState it said "vm_state": "").
	VM      State  `json:"vm_state,omitempty"`
	ID      string `json:"id,omitempty"`      // the migration's MigrateArgs.ID
	Control uint16 `json:"control,omitempty"` // the answering VMM's ControlVersion
	// TagFingerprint is Migration.TagFingerprint: migrate -resolve pairs
	// two sides without an ID only when both report the same.
	TagFingerprint string `json:"tag_fingerprint,omitempty"`
}

// StartPostcopyResult is what migrate-start-postcopy answers (source
// only): it switches the running outgoing migration to post-copy
// (engine.Options.StartPostcopy), like QEMU's migrate-start-postcopy.
type StartPostcopyResult struct {
	// Requested is true when this call asked for the switch, false when
	// an earlier call already had: nothing changed.
	Requested bool `json:"requested"`
	// Phase is the migration's phase when the call came.
	Phase engine.Phase `json:"phase"`
	// Message says what happened, in a sentence for the operator.
	Message string `json:"message"`
}
