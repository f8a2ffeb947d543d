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
//	  otherwise (an older VMM)   ──► nothing sent; the command to run by hand,
//	                                 and why; migrate exits 1 (errNotSent)
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
// by the same rule (lineName); notSent's below names nothing: its VMM,
// from before api.IDsHonoured, reports no fingerprint and would refuse
// the field by name.

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
// name (resolver.leaveUnnamed): the operator must run it by hand once
// they checked what the VMM holds, or upgrade.
type errNotSent struct {
	cmd, sock string
	why       error
}

func (e *errNotSent) Error() string {
	return fmt.Sprintf("%s not sent to %s: %v", e.cmd, e.sock, e.why)
}

func (e *errNotSent) Unwrap() error { return e.why }

// notSent prints why cmd was not sent to sock, for migration id, and
// the line to run by hand once the operator checked that the VMM still
// holds that migration (the line names no id: that VMM ignores it), and
// returns the error that says so.
func notSent(w io.Writer, sock, cmd, id string, why error) error {
	fmt.Fprintf(w, "migrate: %s not sent to %s: %v.\n"+
		"Upgrade the VMMs with migrate. Until then, only if migrate-status there still names migration %s, run by hand:\n    %s\n",
		cmd, sock, why, idText(id), controlLine(requestJSON(cmd, nil), sock))
	return &errNotSent{cmd: cmd, sock: sock, why: why}
}
