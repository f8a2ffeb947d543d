package vmm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/control"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
)

// Serve registers the VM's control commands on s:
//
//	status                         → Status
//	pause, resume, quit            → Status after the change; refused while
//	                                 a migration owns the VM (runlock.go)
//	quit [api.IDArgs]              → given an id or a tag fingerprint, only on
//	                                 the VMM that holds that migration, and
//	                                 whose guest has not run since it ended
//	                                 (migration_id.go)
//	balloon [{"target_mib": N}]    → balloon target and actual size (a new
//	                                 target: refused as balloon-stats is)
//	balloon-wait [{"timeout_ms"}]  → waits until the guest reached the target
//	                                 (balloon without a target, balloon-wait,
//	                                 hint-wait and balloon-stats's wait fail at
//	                                 their deadline while a vCPU holds the device,
//	                                 as one waiting for a page in post-copy does:
//	                                 devices/balloon/lock.go; the commands that
//	                                 change the device are refused there, and
//	                                 where they are not, they fail at their
//	                                 deadline too)
//	balloon-stats [{"timeout_ms"}] → asks the guest for fresh memory statistics
//	                                 (refused while a migration owns the VM, but
//	                                 in a source's live pass: requestStats)
//	hint-start                     → {"cmd_id"}: a new free page hint session
//	hint-wait [{"timeout_ms"}]     → waits for the guest's STOP; the session summary
//	hint-stop, hint-done           → the session summary after STOP / DONE
//	                                 (hint-start, -stop, -done: refused while
//	                                 a migration owns the VM)
//	state-save, state-load         → see serveState (state_commands.go)
//
// Serve may be called for several servers (several control sockets):
// they share the VM's one migration record, so each sees, cancels and
// resolves a migration started through another (serveMigration).
func (v *VM) Serve(s *control.Server) {
	s.Handle("status", func(context.Context, json.RawMessage) (any, error) {
		return v.Status(), nil
	})
	s.Handle("pause", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := v.Pause(ctx); err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
	s.Handle("resume", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := v.outside(ctx, "resume", func(context.Context) error { return v.resume() }); err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
	s.Handle("quit", func(ctx context.Context, raw json.RawMessage) (any, error) {
		n, err := decodeID(raw)
		if err != nil {
			return nil, err
		}
		quit := func(context.Context) error {
			// Under the run lock: no migration can begin, and the VM
			// cannot resume, in between.
			if err := v.migration().checkQuit(v, n); err != nil {
				return err
			}
			v.Stop()
			return nil
		}
		if err := v.outside(ctx, "quit", quit); err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
	v.serveBalloon(s)
	v.serveMigration(s)
	v.serveState(s)
}

// timeoutArgs is the optional argument of the waiting commands.
type timeoutArgs struct {
	TimeoutMS int64 `json:"timeout_ms"`
}

// decodeArgs decodes a command's arguments strictly; absent args leave dst alone.
func decodeArgs(raw json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}

// maxTimeoutMS bounds timeout_ms (an hour; the control server's handler
// deadline is shorter anyway), so the duration cannot overflow.
const maxTimeoutMS = 3600 * 1000

// withTimeout bounds ctx by the request's timeout_ms (default def).
func withTimeout(ctx context.Context, raw json.RawMessage, def time.Duration) (context.Context, context.CancelFunc, error) {
	var a timeoutArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	d := def
	if a.TimeoutMS < 0 || a.TimeoutMS > maxTimeoutMS {
		return nil, nil, fmt.Errorf("timeout_ms %d out of range: 0 (the default, %v) to %d", a.TimeoutMS, def, int64(maxTimeoutMS))
	} else if a.TimeoutMS > 0 {
		d = time.Duration(a.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

func (v *VM) serveBalloon(s *control.Server) {
	dev := func() (*balloon.Device, error) {
		if v.balloon == nil {
			return nil, errors.New("this VM has no balloon device (started with -no-balloon)")
		}
		return v.balloon, nil
	}
	s.Handle("balloon", func(ctx context.Context, raw json.RawMessage) (any, error) {
		b, err := dev()
		if err != nil {
			return nil, err
		}
		var a struct {
			TargetMiB *uint64 `json:"target_mib"`
		}
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		if a.TargetMiB == nil {
			return b.TargetContext(ctx) // bounded: a vCPU may wait in the device (post-copy)
		}
		if *a.TargetMiB > v.cfg.Memory>>20 {
			return nil, fmt.Errorf("target_mib %d is more than the guest's %d MiB", *a.TargetMiB, v.cfg.Memory>>20)
		}
		var res balloon.Target
		err = v.balloonChange(ctx, "balloon", "a new target is device state, which a migration saves at its source's pause "+
			"and a destination replaces with the state it loads", func() error {
			var err error
			res, err = b.SetTargetContext(ctx, uint32(*a.TargetMiB<<8)) // bounded: a vCPU may hold the device
			return err
		})
		if err != nil {
			return nil, err
		}
		return res, nil
	})
	s.Handle("balloon-wait", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return waitOn(ctx, raw, dev, func(ctx context.Context, b *balloon.Device) (any, error) { return b.WaitActual(ctx) })
	})
	s.Handle("balloon-stats", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return waitOn(ctx, raw, dev, func(ctx context.Context, b *balloon.Device) (any, error) {
			since, err := v.requestStats(ctx, b)
			if err != nil {
				return nil, err
			}
			return b.AwaitStats(ctx, since) // outside the run lock: the guest answers when it runs
		})
	})
	// By hand, while no migration owns the VM: its balloon provider drives
	// the sessions then (through the hint window, which owes the guest its
	// DONE), and a session started, stopped or ended by hand cut the
	// provider's short: its hints were lost, and the guest got its DONE
	// from someone the window does not know of. Pages are never at stake
	// (invariant 1: a page written after its hint travels). Checked and
	// done under the run lock, so no migration starts in between; call
	// waits for the device under the command's deadline (a vCPU may hold
	// it: devices/balloon/lock.go), so the run lock is let go by then.
	byHand := func(cmd string, call func(context.Context, *balloon.Device) (any, error)) func(context.Context, json.RawMessage) (any, error) {
		return func(ctx context.Context, _ json.RawMessage) (any, error) {
			b, err := dev()
			if err != nil {
				return nil, err
			}
			var res any
			lerr := v.runLocked(ctx, func(ctx context.Context, owner *migrationOwner) error {
				if owner != nil {
					return owner.refuse(cmd)
				}
				res, err = call(ctx, b)
				return nil
			})
			if lerr != nil {
				return nil, lerr
			}
			return res, err
		}
	}
	s.Handle("hint-start", byHand("hint-start", func(ctx context.Context, b *balloon.Device) (any, error) {
		id, err := b.StartHintContext(ctx)
		return map[string]uint32{"cmd_id": id}, err
	}))
	s.Handle("hint-wait", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return waitOn(ctx, raw, dev, func(ctx context.Context, b *balloon.Device) (any, error) { return b.WaitHint(ctx) })
	})
	s.Handle("hint-stop", byHand("hint-stop", func(ctx context.Context, b *balloon.Device) (any, error) {
		return b.StopHintContext(ctx)
	}))
	s.Handle("hint-done", byHand("hint-done", func(ctx context.Context, b *balloon.Device) (any, error) {
		return b.DoneHintContext(ctx)
	}))
}

// requestStats asks the guest for fresh statistics (balloon-stats:
// balloon.Device.RequestStatsContext, which hands the statistics buffer
// back, a write to guest RAM) through balloonChange. Until an audit found
// it (TestBalloonStatsNotAfterFinalSync) it was never refused.
func (v *VM) requestStats(ctx context.Context, b *balloon.Device) (since time.Time, err error) {
	err = v.balloonChange(ctx, "balloon-stats", "handing the guest its statistics buffer back writes guest RAM "+
		"that this migration would not carry", func() error {
		var err error
		since, err = b.RequestStatsContext(ctx) // bounded: a vCPU may hold the device
		return err
	})
	return since, err
}

// balloonChange runs fn, a host-side balloon call that changes what a
// migration carries (balloon-stats: guest RAM; balloon: the target, in
// the device's state), under the run lock. So on a source the change
// lands before its migration's pause: the sync after the pause sends
// the page, the state saved after it has the device as fn left it, and
// the save never reads the device in the middle of fn (savestate.go).
// While the migration holds the VM paused (its switch-over, or
// post-copy) fn is refused (cmd names it, why says what it would
// change): after the final sync a write, and after the save a new
// target, would reach no destination, while the command said it was
// done. A destination refuses it, saying why there, while its
// migration owns the VM: before
// the load the loaded state replaces it, before COMMIT the guest may
// never run there, and in post-copy the device could wait in a fault
// for a page the source owes (it holds the device's lock) while fn
// holds the run lock. fn must not block, but for the device's lock,
// which it waits for under ctx (a vCPU may hold it:
// devices/balloon/lock.go); ctx bounds the wait for the run lock too.
// Until an audit found it (TestBalloonTargetNotAfterPause), the balloon
// target was set whatever a migration did.
func (v *VM) balloonChange(ctx context.Context, cmd, why string, fn func() error) error {
	var err error
	lerr := v.runLocked(ctx, func(_ context.Context, owner *migrationOwner) error {
		if owner != nil && !owner.live() {
			role, phase := owner.doing()
			if role == transport.RoleReceive.String() {
				why = "this destination's migration owns the VM: the state it loads replaces the device's, " +
					"and the guest is this VMM's only once the migration completed"
			}
			err = fmt.Errorf("the VM is migrating (%s, phase %s, VM %s): %s is refused (%s); "+
				"ask again once the migration ended (migrate-status), on the side that runs the guest then",
				role, phase, v.Status().State, cmd, why)
			return nil
		}
		err = fn()
		return nil
	})
	if lerr != nil {
		return fmt.Errorf("%s: %w", cmd, lerr)
	}
	return err
}

// waitOn runs a waiting balloon call under the request's timeout (10 s by
// default, bounded by the server's own deadline).
func waitOn(ctx context.Context, raw json.RawMessage, dev func() (*balloon.Device, error),
	call func(context.Context, *balloon.Device) (any, error)) (any, error) {
	b, err := dev()
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := withTimeout(ctx, raw, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return call(ctx, b)
}
