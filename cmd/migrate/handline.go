package main

import (
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/vmm/api"
)

// Commands printed for the operator to run by hand: manual's resumes,
// the quits of a post-copy that broke, a cancel or quit not sent to an
// older VMM, the cancel of a destination that took no HELLO, and the
// switch -start-postcopy prints for an id-less migration. Such a line
// runs later, perhaps long after migrate looked, on whatever VMM
// answers at its socket by then. So each is printed only where it names
// the migration in a way that VMM checks (mayPrint): a VMM holding
// another migration by then refuses it and changes nothing. In its
// place migrate prints why none is printed, what to do instead, and
// that VMM's migrate-status, which shows the migration it holds
// (handCmd.text). migrate-status and migrate -resolve act on nothing
// unchecked, and are printed as they are.
//
//	command, its name of the migration, the VMM's control version
//	  ─► mayPrint ─┬─ nil:   "    echo '{"cmd":...,"args":{"id":...}}' | socat - UNIX-CONNECT:sock"
//	               └─ error: "(no <cmd> printed for sock: why. ...)" and
//	                         "    echo '{"cmd":"migrate-status"}' | socat - UNIX-CONNECT:sock"
//
// What it cannot close: the rule reads the control version the VMM
// reported at migrate's look; a VMM from before api.IDsHonoured started
// anew at that socket by the time a line is run would ignore an id in
// quit or migrate-cancel. Nor can a printed line tell one caller from
// another: the operator who runs it must know it is this job's.

// mayPrint says whether a command cmd naming n (lineName's) may be
// printed for the operator to run by hand on a VMM whose last answer
// reported control version control (answered false: it did not answer,
// so its version is not known): nil when that VMM checks the name and
// so refuses the command if it holds another migration by then; else
// why not. No VMM acts on an id it does not check in migrate-resolve
// and migrate-start-postcopy, and one from api.IDsHonoured on checks it
// there; one from before refuses it by name (its strict decoder), so a
// command naming it never acts there: such a VMM that answered is
// printed none (until TestPrintedCommandsNamed's older-source case, it
// was printed a resume that VMM refused whenever it was run). One that
// did not answer, of unknown version, is printed it: run on an older
// VMM it is refused, and changes nothing. From api.IDsHonoured on a VMM
// checks the id in migrate-cancel and quit too; a tag fingerprint, one
// from api.TagsHonoured on.
func mayPrint(cmd string, n api.IDArgs, control uint16, answered bool) error {
	idNamedOnly := cmd == "migrate-resolve" || cmd == "migrate-start-postcopy" // refused by name before api.IDsHonoured
	idChecked := idNamedOnly && !answered || control >= api.IDsHonoured
	switch {
	case n.TagFingerprint != "" && control >= api.TagsHonoured, n.ID != "" && idChecked:
		return nil
	case n.ID != "" && idNamedOnly:
		return fmt.Errorf("that VMM reports no control version: it is from before version %d and refuses a migration's id by "+
			"name in %s, so a command naming it is refused there, and one naming nothing would act on whatever migration it holds",
			api.IDsHonoured, cmd)
	case n.ID != "" && !answered:
		return fmt.Errorf("that VMM did not answer, so migrate does not know whether it checks a migration's id in %s "+
			"(one from before control version %d ignores it there)", cmd, api.IDsHonoured)
	case n.ID != "":
		return fmt.Errorf("that VMM reports no control version: it is from before version %d and ignores a migration's id in %s",
			api.IDsHonoured, cmd)
	case !answered:
		return errors.New("that VMM did not answer, so migrate cannot name the migration to it (it knows no id, " +
			"and names a tag fingerprint only to a VMM that said it honours one)")
	case control < api.TagsHonoured:
		return fmt.Errorf("the migration has no id, and that VMM (control version %d) takes no tag fingerprint in a command "+
			"(one of version %d or later does)", control, api.TagsHonoured)
	}
	return errors.New("its migration has no id, and that VMM reports no tag fingerprint a command can name " +
		"(none: it sent or took no HELLO, or not yet; or a malformed one)")
}

// handCmd is one command migrate would print for the VMM at sock.
type handCmd struct {
	sock     string
	cmd      string     // the control command
	what     string     // what the text calls it ("resume", "quit")
	args     any        // its arguments (nil: none), which name name
	name     api.IDArgs // what args name of the migration (lineName)
	control  uint16     // the control version the VMM's last answer reported
	answered bool       // the VMM answered migrate's last look (else control is not known)
}

// text is c as printed: its line, indented, where mayPrint allows it;
// else why none is printed, then next (what to do instead, one or more
// sentences; "": nothing), and the VMM's migrate-status line.
func (c handCmd) text(next string) string {
	why := mayPrint(c.cmd, c.name, c.control, c.answered)
	if why == nil {
		return "    " + controlLine(requestJSON(c.cmd, c.args), c.sock) + "\n"
	}
	if next != "" {
		next += "\n"
	}
	return fmt.Sprintf(`(no %s printed for %s: %v.
A %s that names nothing that VMM checks would act on whatever migration it holds when it is run.
%sIts migrate-status shows the migration it holds, its id, and without one its tag_fingerprint:)
    %s
`, c.what, c.sock, why, c.what, next, controlLine(requestJSON("migrate-status", nil), c.sock))
}
