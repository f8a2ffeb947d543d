package main

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// The control calls migrate makes to a VMM outside the resolver's own
// (resolve.go): one call (callControl), a migration's status
// (migrateStatus), a cancel that names the migration (cancelMigration,
// cancelNamed, cancelCall, cancelOurs), and how to read a call that failed (vmmGone,
// answered).

// callControl is one control call under ctx.
func callControl(ctx context.Context, sock, cmd string, args, res any) error {
	return control.Call(ctx, sock, cmd, args, res)
}

// cancelMigration asks sock to cancel migration id, which its last
// answer reported with control version control, and returns its answer
// (zero if it could not be asked; refused, because it holds another
// migration or cannot read the act, not cancelled with the VMM's
// refusal in Why); it is not cancelled by Ctrl-C, it is what Ctrl-C does. A
// VMM that does not honour the id (idsIgnored) is not asked: it says
// why on log, with its migrate-status (notSent), and returns that as an
// error (*errNotSent).
func cancelMigration(sock, id string, control uint16, log io.Writer) (api.CancelResult, error) {
	return cancelNamed(sock, api.IDArgs{ID: id}, control, log)
}

// cancelNamed is cancelMigration for the migration n names: its id, or
// its tag fingerprint (migrate -resolve's id-less pairs, named).
func cancelNamed(sock string, n api.IDArgs, version uint16, log io.Writer) (api.CancelResult, error) {
	if err := idsIgnored(sock, version); err != nil {
		return api.CancelResult{}, notSent(log, sock, "migrate-cancel", n.ID, version, err)
	}
	res, _ := cancelCall(sock, n)
	return res, nil
}

// cancelCall sends sock's VMM a migrate-cancel naming n (the caller
// checked that it honours the name: idsIgnored) and returns its answer,
// a refusal as one not cancelled with the VMM's reason in Why, and the
// call's failure where no answer came (the request never written:
// control.NotSent; or written, its answer lost). It is not cancelled by
// Ctrl-C, it is what Ctrl-C does.
func cancelCall(sock string, n api.IDArgs) (api.CancelResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res api.CancelResult
	var refused *control.RemoteError
	err := callControl(ctx, sock, "migrate-cancel", n, &res)
	if errors.As(err, &refused) {
		return api.CancelResult{Why: refused.Message}, nil
	}
	return res, err
}

// cancelOurs cancels sock's migration if it is the one migrate started
// (its migrate-status reports id): a VMM that refused migrate-send or
// migrate-incoming because it takes part in another migration keeps it.
// The cancel names id too, so a VMM that moved on to another migration
// after the look refuses it; a VMM from before migrate-cancel took an
// id, which would ignore it, is not asked (cancelMigration).
func cancelOurs(sock, id string, log io.Writer) error {
	if st, err := migrateStatus(sock); err == nil && st.ID == id {
		_, err := cancelMigration(sock, id, st.Control, log)
		return err
	}
	return nil
}

// vmmGone reports whether a control call found no VMM at the socket:
// nothing listens there any more, or the socket was removed (a VMM that
// exited). One that hangs is not gone.
func vmmGone(err error) bool {
	return control.NotSent(err) && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
}

// answered reports whether a control call's VMM answered, even if only
// to refuse (a control.RemoteError): it is there to be asked.
func answered(err error) bool {
	var re *control.RemoteError
	return err == nil || errors.As(err, &re)
}

// migrateStatus asks sock's VMM for its migrate-status. Each answer is
// decoded into a new value: JSON leaves a field the answer omits (an
// omitempty zero, as Progress.Reconnecting once a post-copy resumed)
// as it was, so reusing one would keep stale values.
func migrateStatus(sock string) (api.Migration, error) {
	return migrateStatusUnder(context.Background(), sock)
}

// migrateStatusUnder is migrateStatus, ended early when ctx ends
// (-start-postcopy's Ctrl-C).
func migrateStatusUnder(ctx context.Context, sock string) (api.Migration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st api.Migration
	err := callControl(ctx, sock, "migrate-status", nil, &st)
	return st, err
}
