package vmm

import (
	"encoding/json"
	"fmt"

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
	return a.ID, checkIDLen(a.ID)
}

// checkIDLen bounds an id a caller gives, as migrate-send's.
func checkIDLen(id string) error {
	if len(id) > api.MaxIDLen {
		return fmt.Errorf("id of %d bytes: at most %d", len(id), api.MaxIDLen)
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

// errNoMigrationFor is checkID's refusal on a VMM that holds no migration.
func errNoMigrationFor(cmd, id string) error {
	return fmt.Errorf("%s for migration %q refused: this VMM holds no migration (none has run here); nothing changed", cmd, id)
}
