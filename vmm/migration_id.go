package vmm

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// The commands that act on a migration take the id of the migration the
// caller means (api.IDArgs, api.ResolveArgs.ID; "" for any), and from
// control version 3 (api.TagsHonoured) its tag fingerprint, which names
// a migration without an id ("" for any):
//
//	migrate-cancel {"id","tag_fingerprint"}          ─┐ id == the migration mg holds, and
//	migrate-start-postcopy {"id","tag_fingerprint"}   ├─ fingerprint == the one it reports
//	migrate-resolve {"action","id","tag_fingerprint"} │ (running, or its last, ended) ──► act
//	quit {"id","tag_fingerprint"}                    ─┘ otherwise (another, or none) ──► refused, nothing changed
//
// quit checks one more thing (checkQuit): that the guest has not run
// here since that migration ended (the VM's run generation, VM.runs,
// against the mark taken at the end, migration.ended). A VM that ran
// since holds the guest, not a copy the migration left behind.
//
// The check and the act are one step: under mg.mu for the first three
// (a new migration begins under it too, and the engine's progress and
// report, which carry the fingerprint, are recorded under it), under
// the run lock for quit (a migration begins by claiming it). So a
// caller that looked (migrate-status) and then acts is refused when the
// VMM moved on to another migration in between, never acts on that one.
// A VMM cannot tell one caller from another: the id and the fingerprint
// are what the caller says it means. A fingerprint is the migration's
// as the engine last reported it (tagFingerprint): "" on a source until
// its first progress after HELLO, so a caller that names one it saw
// elsewhere (on the other side) is refused until then.

// decodeID decodes the optional argument of migrate-cancel,
// migrate-start-postcopy and quit, strictly, and checks what it names
// (checkNamed).
func decodeID(raw json.RawMessage) (api.IDArgs, error) {
	var a api.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return api.IDArgs{}, err
	}
	return a, checkNamed(a)
}

// checkNamed checks the migration an act names: its id (checkIDText),
// and its tag fingerprint, "" or engine.TagFingerprintLen lower-case
// hex digits (engine.ValidTagFingerprint), so that whatever a refusal
// prints of it is bounded and printable.
func checkNamed(n api.IDArgs) error {
	if err := checkIDText(n.ID); err != nil {
		return err
	}
	if n.TagFingerprint != "" && !engine.ValidTagFingerprint(n.TagFingerprint) {
		return fmt.Errorf("tag_fingerprint %.40q: a tag fingerprint is %d lower-case hex digits", n.TagFingerprint, engine.TagFingerprintLen)
	}
	return nil
}

// resolveNamed is the migration a's migrate-resolve names.
func resolveNamed(a api.ResolveArgs) api.IDArgs {
	return api.IDArgs{ID: a.ID, TagFingerprint: a.TagFingerprint}
}

// checkIDText checks an id a caller gives (migrate-send,
// migrate-incoming, and the commands that name one): at most
// api.MaxIDLen bytes, and no control or format character (a newline, an
// escape sequence, U+202E): ids reach logs, statuses and the lines
// migrate prints for an operator. It cannot see bytes that were not
// UTF-8: the JSON decoder already replaced them with U+FFFD.
func checkIDText(id string) error {
	if len(id) > api.MaxIDLen {
		return fmt.Errorf("id of %d bytes: at most %d", len(id), api.MaxIDLen)
	}
	if i := strings.IndexFunc(id, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }); i >= 0 {
		return fmt.Errorf("id %q: a control or format character at byte %d; an id is printable text", id, i)
	}
	return nil
}

// checkID is checkIDLocked under mg.mu; a nil mg holds no migration.
func (mg *migration) checkID(cmd string, n api.IDArgs) error {
	if unnamed(n) {
		return nil
	}
	if mg == nil {
		return errNoMigrationFor(cmd, n)
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.checkIDLocked(cmd, n)
}

// unnamed reports whether n names no migration (any: an operator by
// hand, or a client of an older VMM).
func unnamed(n api.IDArgs) bool { return n.ID == "" && n.TagFingerprint == "" }

// checkIDLocked says why cmd, given the migration its caller means (n:
// its id, its tag fingerprint, or both), must not act here: the VMM
// holds another migration (another id, or another fingerprint or none
// yet), or none. nil when n names none (any) or the migration mg holds.
// The caller holds mg.mu.
func (mg *migration) checkIDLocked(cmd string, n api.IDArgs) error {
	switch {
	case unnamed(n):
		return nil
	case mg.cur == nil:
		return errNoMigrationFor(cmd, n)
	case (n.ID == "" || mg.cur.ID == n.ID) && (n.TagFingerprint == "" || tagFingerprint(mg.cur) == n.TagFingerprint):
		return nil
	}
	held := fmt.Sprintf("migration %q", mg.cur.ID)
	if mg.cur.ID == "" {
		held = `a migration without an id ("")`
	}
	if n.TagFingerprint != "" {
		held += " with " + tagText(tagFingerprint(mg.cur))
	}
	what := "running"
	if mg.cur.Done {
		what = "ended, side " + string(mg.cur.Side)
	}
	return fmt.Errorf("%s for %s refused: this VMM holds %s (%s, %s), not that one; nothing changed",
		cmd, namedText(n), held, mg.cur.Role, what)
}

// namedText is the migration n names, as a refusal says it (n passed
// checkNamed).
func namedText(n api.IDArgs) string {
	switch {
	case n.TagFingerprint == "":
		return fmt.Sprintf("migration %q", n.ID)
	case n.ID == "":
		return "the migration with " + tagText(n.TagFingerprint)
	}
	return fmt.Sprintf("migration %q with %s", n.ID, tagText(n.TagFingerprint))
}

// tagText is a tag fingerprint as a refusal says it.
func tagText(fp string) string {
	if fp == "" {
		return "no tag fingerprint (yet)"
	}
	return "tag fingerprint " + fp
}

// checkQuit is quit's check, given the migration its caller means (n;
// none: any): checkID, and then that the guest has not run here
// since that migration ended (VM.ranSince of mg.ended): a source whose
// migration failed and resumed, or was resumed by migrate-resolve or by
// hand, or a destination that runs the guest, holds the guest, not a
// copy that migration left behind, and a quit naming the migration
// (by id or by tag fingerprint) would stop its only copy. quit that
// names none still ends it. The caller holds the run lock, so no resume
// slips in between.
func (mg *migration) checkQuit(v *VM, n api.IDArgs) error {
	if err := mg.checkID("quit", n); err != nil || unnamed(n) {
		return err
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if !mg.cur.Done || !v.ranSince(mg.ended) {
		return nil
	}
	return fmt.Errorf("quit for %s refused: the guest has run here since that migration ended (side %s, VM %s): "+
		"this VMM holds the guest, not a copy that migration left behind; nothing changed (quit naming no migration ends it all the same)",
		namedText(n), mg.cur.Side, v.Status().State)
}

// errNoMigrationFor is checkID's refusal on a VMM that holds no migration.
func errNoMigrationFor(cmd string, n api.IDArgs) error {
	return fmt.Errorf("%s for %s refused: this VMM holds no migration (none has run here); nothing changed", cmd, namedText(n))
}
