package balloon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/vmm/virtio"
)

// The host's side: balloon target, statistics and hint sessions. These are
// called from the control socket and the migration code, never from vCPUs.
// Each takes the device's lock under a context (the ...Context calls, and
// the waits): lock.go. There is no form without one.

// ErrNoFreePageHint is StartHintContext's error while the guest's driver has not
// negotiated FREE_PAGE_HINT.
var ErrNoFreePageHint = errors.New("the guest driver has not negotiated FREE_PAGE_HINT")

// StartHintContext publishes a fresh command id and raises a config
// interrupt; hints flow to the sink once the guest echoes it. It fails
// when ctx ends before the device's lock is free (lock.go).
func (d *Device) StartHintContext(ctx context.Context) (uint32, error) {
	if err := d.lockContext(ctx); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	if d.q.hint == nil {
		return 0, ErrNoFreePageHint
	}
	id, err := d.hint.start()
	if err != nil {
		return 0, err
	}
	d.sig.ConfigChanged()
	d.changedLocked()
	return id, nil
}

// WaitHint blocks until the guest sent STOP for the current session (it
// ran out of free blocks) or ctx ends, also while a vCPU holds the
// device (lock.go); it returns the session summary either way (as last
// seen: the zero summary if the device was never free), with ctx's error
// in the second case.
func (d *Device) WaitHint(ctx context.Context) (HintSummary, error) {
	var sum HintSummary
	err := d.await(ctx, func() bool {
		sum = d.hint.summary()
		return d.hint.guestStopped || d.hint.state == Idle || d.q.hint == nil
	})
	return sum, err
}

// StopHintContext ends the session: the guest stops hinting but keeps the
// blocks. Hints still in flight are ignored from here on. It fails, and
// changes nothing, when ctx ends before the device's lock is free.
func (d *Device) StopHintContext(ctx context.Context) (HintSummary, error) {
	if err := d.lockContext(ctx); err != nil {
		return HintSummary{}, err
	}
	defer d.mu.Unlock()
	old := d.hint.config
	d.hint.stop()
	if d.hint.config != old && d.sig != nil {
		d.sig.ConfigChanged()
	}
	d.changedLocked()
	return d.hint.summary(), nil
}

// DoneHintContext tells the guest to take every hinted block back. Call
// it when migration no longer needs the hints: at the end, on cancel, on
// errors, and on the destination after restore. It fails, and changes
// nothing, when ctx ends before the device's lock is free.
func (d *Device) DoneHintContext(ctx context.Context) (HintSummary, error) {
	if err := d.lockContext(ctx); err != nil {
		return HintSummary{}, err
	}
	defer d.mu.Unlock()
	sum := d.hint.summary()
	old := d.hint.config
	d.hint.done()
	if d.hint.config != old && d.sig != nil {
		d.sig.ConfigChanged()
	}
	d.changedLocked()
	sum.State = d.hint.state.String()
	return sum, nil
}

// HintStatusContext returns the current session's summary, or fails when
// ctx ends before the device's lock is free.
func (d *Device) HintStatusContext(ctx context.Context) (HintSummary, error) {
	if err := d.lockContext(ctx); err != nil {
		return HintSummary{}, err
	}
	defer d.mu.Unlock()
	return d.hint.summary(), nil
}

// Target is the balloon size the host asked for and the size the guest
// reports, in 4 KiB pages, and the pages inflation punched out.
type Target struct {
	TargetPages uint32 `json:"target_pages"`
	ActualPages uint32 `json:"actual_pages"`
	Inflated    uint64 `json:"inflated_pages"`
	Reported    uint64 `json:"reported_bytes"`
	Features    uint64 `json:"features"`
}

// SetTargetContext asks the guest to grow or shrink the balloon to pages
// and returns the balloon's size. It fails, and changes nothing, when ctx
// ends before the device's lock is free.
func (d *Device) SetTargetContext(ctx context.Context, pages uint32) (Target, error) {
	if err := d.lockContext(ctx); err != nil {
		return Target{}, err
	}
	defer d.mu.Unlock()
	if d.target != pages {
		d.target = pages
		if d.sig != nil {
			d.sig.ConfigChanged()
		}
		d.changedLocked() // a WaitActual may be done now
	}
	return d.targetLocked(), nil
}

// TargetContext returns the balloon's size (the target asked for, the
// size the guest reports, what inflation and reporting punched out), or
// fails when ctx ends before the device's lock is free (a vCPU may hold
// it in a post-copy fault: lock.go).
func (d *Device) TargetContext(ctx context.Context) (Target, error) {
	if err := d.lockContext(ctx); err != nil {
		return Target{}, err
	}
	defer d.mu.Unlock()
	return d.targetLocked(), nil
}

func (d *Device) targetLocked() Target {
	return Target{TargetPages: d.target, ActualPages: d.actual, Inflated: d.inflated,
		Reported: d.reported, Features: d.features}
}

// WaitActual blocks until the guest reports actual == target or ctx
// ends, also while a vCPU holds the device (lock.go); it returns the
// balloon's size as last seen (zero if the device was never free).
func (d *Device) WaitActual(ctx context.Context) (Target, error) {
	var t Target
	err := d.await(ctx, func() bool {
		t = d.targetLocked()
		return d.actual == d.target
	})
	return t, err
}

// Stats is the last memory statistics report from the guest.
type Stats struct {
	Updated time.Time         `json:"updated"`
	Values  map[string]uint64 `json:"values"`
}

var statNames = []string{"swap-in", "swap-out", "major-faults", "minor-faults", "free-memory",
	"total-memory", "available-memory", "disk-caches", "hugetlb-allocations", "hugetlb-failures"}

// takeStats pops the guest's stats buffer, parses it and keeps it, so the
// next refresh can hand it back. A buffer arrives whether or not the host
// asked: Linux's driver primes the queue in probe, before DRIVER_OK, and
// the transport's notification of every ready queue at activation
// (virtio's kick.go) brings that one here; it is then held until a
// request. It reads at most maxStats entries (Linux
// sends 10 to 16): the rest of a longer buffer is ignored, so that
// neither the values kept, which a saved state must carry, nor the work
// of one kick grows with what the guest sends.
func (d *Device) takeStats() error {
	q := d.q.stats
	c, ok, err := q.Pop(d.mem)
	if err != nil || !ok {
		return err
	}
	if d.statsReq != nil { // a second buffer: give the old one back
		if err := q.Push(d.mem, d.statsReq.Head, 0); err != nil {
			return err
		}
	}
	d.statsReq = &c
	vals := map[string]uint64{}
	left := uint64(maxStats)
	for _, desc := range c.Descs {
		if desc.Write || left == 0 {
			continue
		}
		n := min(uint64(desc.Len)/10, left)
		left -= n
		b, err := d.mem.Slice(desc.Addr, 10*n)
		if err != nil {
			return err
		}
		for i := 0; i+10 <= len(b); i += 10 {
			tag, val := binary.LittleEndian.Uint16(b[i:]), binary.LittleEndian.Uint64(b[i+2:])
			name := fmt.Sprintf("tag-%d", tag) // unknown tags are kept, by number
			if int(tag) < len(statNames) {
				name = statNames[tag]
			}
			vals[name] = val
		}
	}
	d.stats = Stats{Updated: time.Now(), Values: vals}
	return nil
}

// LastStatsContext returns the newest statistics without asking for
// more, or fails when ctx ends before the device's lock is free.
func (d *Device) LastStatsContext(ctx context.Context) (Stats, error) {
	if err := d.lockContext(ctx); err != nil {
		return Stats{}, err
	}
	defer d.mu.Unlock()
	return d.stats, nil
}

// RefreshStats asks the guest for fresh statistics and waits for them
// until ctx ends; it returns the newest it has either way (none if the
// device was never free). It is RequestStatsContext then AwaitStats.
func (d *Device) RefreshStats(ctx context.Context) (Stats, error) {
	since, err := d.RequestStatsContext(ctx)
	if err != nil {
		st, _ := d.LastStatsContext(ctx)
		return st, err
	}
	return d.AwaitStats(ctx, since)
}

// RequestStatsContext asks the guest for fresh statistics: it hands back
// the buffer the guest gave the device, which writes the statistics
// queue's used ring in guest RAM (marked dirty, as every device write).
// It returns when the newest statistics so far arrived, for AwaitStats.
// It waits for nothing but the device's lock, and for that only until
// ctx ends (then it fails and hands nothing back), so a caller may hold
// a lock that keeps guest RAM still (the VMM's run lock) around it and
// wait for the statistics outside.
func (d *Device) RequestStatsContext(ctx context.Context) (since time.Time, err error) {
	if err := d.lockContext(ctx); err != nil {
		return time.Time{}, err
	}
	defer d.mu.Unlock()
	if d.q.stats == nil {
		return d.stats.Updated, fmt.Errorf("the guest driver has not negotiated STATS_VQ")
	}
	if d.statsReq != nil {
		if err := d.q.stats.Push(d.mem, d.statsReq.Head, 0); err != nil {
			d.failLocked(err)
			return d.stats.Updated, err
		}
		d.statsReq = nil
		d.sig.SignalUsed()
	}
	return d.stats.Updated, nil
}

// AwaitStats waits until statistics newer than since arrived (since:
// RequestStatsContext's answer) or ctx ends, also while a vCPU holds the device
// (lock.go); it returns the newest it saw either way (none if the
// device was never free).
func (d *Device) AwaitStats(ctx context.Context, since time.Time) (Stats, error) {
	var st Stats
	err := d.await(ctx, func() bool {
		st = d.stats
		return d.stats.Updated.After(since) || d.q.stats == nil
	})
	return st, err
}

var _ virtio.Device = (*Device)(nil)
