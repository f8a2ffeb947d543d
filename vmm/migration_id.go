package vmm

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/ferryvm/ferry/vmm/api"
)

// The commands that act on a migration take the id of the migration the
// caller means (api.IDArgs, api.ResolveArgs.ID; "" for any):
//
//	migrate-cancel {"id"}          ─┐ id == the migration mg holds
//	migrate-start-postcopy {"id"}   ├─ (running, or its last, ended) ──► act
//	migrate-resolve {"action","id"} │
//	quit {"id"}                    ─┘ otherwise (another, or none) ──► refused, nothing changed
//
// quit checks one more thing (checkQuit): that the guest has not run
// here since that migration ended (the VM's run generation, VM.runs,
// against the mark taken at the end, migration.ended). A VM that ran
// since holds the guest, not a copy the migration left behind.
//
// The check and the act are one step: under mg.mu for the first three
// (a new migration begins under it too), under the run lock for quit (a
// migration begins by claiming it). So a caller that looked
// (migrate-status) and then acts is refused when the VMM moved on to
// another migration in between, never acts on that one. A VMM cannot
// tell one caller from another: the id is what the caller says it means.

// decodeID decodes the optional argument of migrate-cancel,
// migrate-start-postcopy and quit, strictly.
func decodeID(raw json.RawMessage) (string, error) {
	var a api.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return "", err
	}
	return a.ID, checkIDText(a.ID)
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
func (mg *migration) checkID(cmd, id string) error {
	if id == "" {
		return nil
	}
	if mg == nil {
		return errNoMigrationFor(cmd, id)
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.checkIDLocked(cmd, id)
}

// checkIDLocked says why cmd, given the id of the migration its caller
// means, must not act here: the VMM holds another migration, or none.
// nil when id is "" (any) or names the migration mg holds. The caller
// holds mg.mu.
func (mg *migration) checkIDLocked(cmd, id string) error {
	switch {
	case id == "":
		return nil
	case mg.cur == nil:
		return errNoMigrationFor(cmd, id)
	case mg.cur.ID == id:
		return nil
	}
	held := fmt.Sprintf("migration %q", mg.cur.ID)
	if mg.cur.ID == "" {
		held = `a migration without an id ("")`
	}
	what := "running"
	if mg.cur.Done {
		what = "ended, side " + string(mg.cur.Side)
	}
	return fmt.Errorf("%s for migration %q refused: this VMM holds %s (%s, %s), not that one; nothing changed",
		cmd, id, held, mg.cur.Role, what)
}

// checkQuit is quit's check, given the id of the migration its caller
// means ("": any): checkID, and then that the guest has not run here
// since that migration ended (VM.ranSince of mg.ended): a source whose
// migration failed and resumed, or was resumed by migrate-resolve or by
// hand, or a destination that runs the guest, holds the guest, not a
// copy that migration left behind, and a quit naming the migration
// would stop its only copy. quit without an id still ends it. The
// caller holds the run lock, so no resume slips in between.
func (mg *migration) checkQuit(v *VM, id string) error {
	if err := mg.checkID("quit", id); err != nil || id == "" {
		return err
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if !mg.cur.Done || !v.ranSince(mg.ended) {
		return nil
	}
	return fmt.Errorf("quit for migration %q refused: the guest has run here since that migration ended (side %s, VM %s): "+
		"this VMM holds the guest, not a copy that migration left behind; nothing changed (quit without an id ends it all the same)",
		id, mg.cur.Side, v.Status().State)
}

// errNoMigrationFor is checkID's refusal on a VMM that holds no migration.
func errNoMigrationFor(cmd, id string) error {
	return fmt.Errorf("%s for migration %q refused: this VMM holds no migration (none has run here); nothing changed", cmd, id)
}
