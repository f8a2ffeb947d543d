package main

import (
	"fmt"
	"io"

	"github.com/ferryvm/ferry/vmm/api"
)

// Acts that an older VMM would not check. A VMM from before
// api.IDsHonoured refuses a migration's id by name in migrate-resolve
// and migrate-start-postcopy, but ignores it in migrate-cancel and quit:
// there a cancel or quit acts on whatever migration the VMM holds when
// it arrives, perhaps another job's that began after migrate's look.
// Every VMM reports its api.ControlVersion in the answers migrate looks
// at before it acts (migrate-status, migrate-resolve), so migrate learns
// from the same answer that gave it the id whether the id will be
// honoured:
//
//	look (migrate-status / migrate-resolve query) ─► id, control
//	  control >= api.IDsHonoured ──► act, naming id (a VMM that moved on refuses)
//	  otherwise (an older VMM)   ──► nothing sent; why, and the VMM's
//	                                 migrate-status; migrate exits 1 (errNotSent)
//
// What it cannot close: a VMM restarted at the socket between the look
// and the act is asked all the same, and an older one there would not
// check the id; nor can a VMM tell one caller from another.
//
// A tag fingerprint (migrate -resolve's name for a migration without an
// id) goes the other way: a VMM before api.TagsHonoured refuses the
// field by name in every act (it decodes arguments strictly), so
// migrate names it only to a VMM that reported at least that version
// (actName, resolvepair.go) and sends an older one the act as before, which
// names no migration there: the fingerprint is then checked only when
// migrate looks. The commands migrate prints for the operator name it
// by the same rule (lineName), and are printed only where the VMM checks
// the name (mayPrint, handline.go): notSent's below is not printed, as
// its VMM, from before api.IDsHonoured, ignores the id there and reports
// no fingerprint.

// idsIgnored says why an act naming a migration's id must not be sent
// to the VMM at sock, whose last answer reported control version
// control: nil when it honours the id.
func idsIgnored(sock string, control uint16) error {
	if control >= api.IDsHonoured {
		return nil
	}
	return fmt.Errorf("the VMM at %s reports no control version (it is from before version %d): it ignores a migration's id "+
		"in migrate-cancel and quit, and would act on whatever migration it holds by then, perhaps another job's", sock, api.IDsHonoured)
}

// errNotSent is the error of an act migrate did not send to an older
// VMM (idsIgnored), or to a destination whose migration nothing could
// name (resolver.leaveUnnamed): the operator must act by hand right
// after they checked what the VMM holds, or upgrade.
type errNotSent struct {
	cmd, sock string
	why       error
}

func (e *errNotSent) Error() string {
	return fmt.Sprintf("%s not sent to %s: %v", e.cmd, e.sock, e.why)
}

func (e *errNotSent) Unwrap() error { return e.why }

// notSent prints why cmd was not sent to sock, for migration id, whose
// VMM's last answer reported control version control (one that
// idsIgnored refuses), and returns the error that says so. It prints no
// command to run by hand (handCmd, mayPrint): that VMM ignores the id
// in cmd, so the line would act on whatever migration it holds when it
// is run; before, it printed that line naming nothing, to be run "only
// if migrate-status there still names" the migration
// (TestOlderVMMNotActed). It prints that VMM's migrate-status instead.
func notSent(w io.Writer, sock, cmd, id string, control uint16, why error) error {
	fmt.Fprintf(w, "migrate: %s not sent to %s: %v.\nUpgrade the VMMs with migrate.\n%s", cmd, sock, why,
		handCmd{sock: sock, cmd: cmd, what: cmd, name: api.IDArgs{ID: id}, control: control, answered: true}.text(
			fmt.Sprintf("Send it by hand only right after its migrate-status still names migration %s there.", idText(id))))
	return &errNotSent{cmd: cmd, sock: sock, why: why}
}
