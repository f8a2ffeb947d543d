package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ferryvm/ferry/vmm/api"
)

// Watching a migration: the source followed to its end (follow, with
// its one cancel on Ctrl-C and its check of a post-copy's destination,
// checkPeer), the destination waited for (waitDone), and the errors that
// end a follow early (movedOn, stoppedAnswering).

// statusPoll is how often migrate asks a VMM for its migration's status:
// a report is seen at most this late.
const statusPoll = 20 * time.Millisecond

// movedOn is follow's error when the VMM it follows reports another
// migration than the one followed: it ended that one and took another
// between two polls. The report of the one followed is gone with it.
type movedOn struct{ err error }

func (e movedOn) Error() string { return e.err.Error() }
func (e movedOn) Unwrap() error { return e.err }

// stoppedAnswering is follow's error when the VMM it follows stopped
// answering its control socket (it exited, or hangs).
type stoppedAnswering struct{ err error }

func (e stoppedAnswering) Error() string { return e.err.Error() }
func (e stoppedAnswering) Unwrap() error { return e.err }

// waitDone polls migrate-status of the destination's VMM at sock until
// migration id ("": any) is done, for at most d; unlike follow it never
// cancels anything. A VMM that reports another migration fails at
// once, and so does one that reports it in a role other than receive
// (statusReceives: not its destination).
func waitDone(sock, id string, d time.Duration) (api.Migration, error) {
	var st api.Migration
	for end := time.Now().Add(d); ; time.Sleep(statusPoll) {
		next, err := migrateStatus(sock)
		switch {
		case err != nil:
			return st, fmt.Errorf("%s: %w", sock, err)
		case id != "" && next.ID != id:
			return next, fmt.Errorf("%s reports another migration (id %q, not %q)", sock, next.ID, id)
		case statusReceives(sock, next) != nil:
			return next, statusReceives(sock, next)
		case next.Done:
			return next, nil
		case time.Now().After(end):
			return next, fmt.Errorf("%s: the migration is not done after %v", sock, d)
		}
		st = next
	}
}

// follow polls migrate-status until migration id ("": whatever the VMM
// runs) is done; a VMM that reports another migration ends it with a
// movedOn error and the last status of migration id, and one that
// reports it in a role other than send (statusSends: not its source)
// with that *errNotSource, before any cancel. When ctx ends
// it cancels the migration (id: a VMM that holds another by then
// refuses) once and keeps following for at most grace
// (0: until done); a VMM that refuses the cancel because the migration
// is in post-copy is followed to the end, with a line on log saying so.
// While a post-copy reconnects, it asks the peer (the destination's
// control socket) now and then whether its VMM still answers
// (checkPeer).
//
// A VMM that does not honour the id in migrate-cancel (idsIgnored, from
// the last poll's answer) is not asked: follow says so on log with its
// migrate-status (notSent), hands that error to undone (nil: dropped), and
// follows the migration to its end, as after a refused cancel.
func follow(ctx context.Context, sock, peer, id string, prog *progress, grace time.Duration, log io.Writer, undone func(error) error) (api.Migration, error) {
	var st api.Migration
	check := checkPeer{sock: peer}
	cancelled := false
	var deadline time.Time
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		next, err := migrateStatus(sock)
		if err != nil {
			return st, stoppedAnswering{fmt.Errorf("%s: %w", sock, err)}
		}
		if id != "" && next.ID != id {
			// It ended migration id and took another between two polls:
			// that one's progress and report are not this one's, and
			// this one's end was not seen (conclude asks both sides).
			return st, movedOn{fmt.Errorf("%s moved on to another migration (id %q) before the end of migration %q was seen", sock, next.ID, id)}
		}
		if err := statusSends(sock, next); err != nil {
			// Not the source of migration id (a VMM that took that id in
			// another role): none of its progress, report or a cancel
			// (conclude asks both sides).
			return st, err
		}
		st = next
		if prog != nil {
			prog.update(st.Progress)
		}
		if st.Done {
			return st, nil
		}
		check.reconnecting(st.Progress.Reconnecting, prog, log)
		if ctx.Err() != nil && !cancelled {
			cancelled, deadline = true, time.Now().Add(grace)
			if prog != nil {
				prog.finish() // what follows stands on its own lines
			}
			res, nerr := cancelMigration(sock, id, st.Control, log)
			if nerr != nil && undone != nil {
				undone(nerr)
			}
			if nerr != nil || res.Postcopy || res.Committing {
				if nerr == nil {
					fmt.Fprintf(log, "migrate: %s: %s.\n", sock, res.Why)
				}
				fmt.Fprintln(log, "migrate: following it to the end; Ctrl-C again stops only this command (the VMMs finish the migration on their own).")
				grace = 0
			}
		}
		if cancelled && grace > 0 && time.Now().After(deadline) {
			return st, fmt.Errorf("%s: the migration did not stop within %v of the cancel", sock, grace)
		}
		done := ctx.Done()
		if cancelled {
			done = nil // cancelled once; now only the ticker paces the polls
		}
		select {
		case <-tick.C:
		case <-done:
		}
	}
}

// checkPeer tells the operator, once, when a post-copy has been
// reconnecting for a while and the destination VMM does not answer its
// control socket: it has most likely died, and the guest with it. The
// source cannot tell a dead destination from a cut network, so it keeps
// trying until reconnect_timeout; migrate can ask.
type checkPeer struct {
	sock   string // the destination's control socket; "" to never ask
	last   time.Time
	warned bool
}

// Asked after peerAfter of reconnecting, then at most every peerEvery.
const (
	peerAfter = 5 * time.Second
	peerEvery = 5 * time.Second
)

// reconnecting is called with the source's Progress.Reconnecting at every
// status poll.
func (c *checkPeer) reconnecting(d time.Duration, prog *progress, log io.Writer) {
	if c.sock == "" || c.warned || d < peerAfter || time.Since(c.last) < peerEvery {
		return
	}
	c.last = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st api.Migration
	err := callControl(ctx, c.sock, "migrate-status", nil, &st)
	if err == nil {
		return
	}
	c.warned = true
	if prog != nil {
		prog.finish()
	}
	fmt.Fprintf(log, "migrate: post-copy has been reconnecting for %v, and the destination VMM %s does not answer (%v).\n"+
		"migrate: if it is gone, the guest is lost with it. The source keeps its paused copy (never resumed) and keeps\n"+
		"migrate: trying until reconnect_timeout; if the destination VMM is only unreachable from here, the migration may still resume.\n",
		d.Round(time.Second), c.sock, err)
}
