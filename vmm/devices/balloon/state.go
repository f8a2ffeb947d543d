package balloon

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// Saving and restoring the balloon for migration. The transport saves the
// queues (virtio.TransportState) and, on restore, activates the device
// with them again, which rebuilds the queue map from the negotiated
// features; State carries the rest: config space, the hint session, the
// held stats buffer and the host-side counters.
//
// The in-flight stats buffer: the guest's driver keeps one buffer on the
// stats queue, which the device takes and holds until the host wants
// fresher numbers (RefreshStats hands it back; the guest refills and
// resubmits it). That buffer is popped from the available ring but not
// yet used, so the guest's driver is waiting for it. State saves its head
// index; the restored device holds the same head and hands it back at the
// next RefreshStats, exactly as the source would have. Its descriptors are
// in guest RAM, which migration copies; the values parsed from it when it
// arrived travel in State.Stats.
//
// The hint session travels whole, including the last id handed out, so the
// target never reuses an id the guest has seen. A guest that still holds
// hinted blocks gets them back only when the host sends DONE; on a
// migration target that is the caller's job after RestoreContext (vmm.VM does it
// in LoadState).

// State is the balloon's state apart from its queues.
type State struct {
	Features uint64 // negotiated; 0 if the driver never brought the device up
	Queues   uint8  // queue map in use: bit 0 inflate ... bit 4 reporting
	Target   uint32 // num_pages
	Actual   uint32

	Hint HintState

	StatsHeld bool   // the device holds the guest's stats buffer
	StatsHead uint16 // its head descriptor
	Stats     Stats  // last statistics; Updated zero if none

	Inflated uint64
	Reported uint64
}

// HintState is a free page hint session's state.
type HintState struct {
	State        SessionState
	ID, LastID   uint32
	Config       uint32 // free_page_hint_cmd_id as the guest reads it
	Ranges       uint64
	Bytes        uint64
	GuestStopped bool
	Stale        uint64
}

// Limits on decoded states.
const (
	maxStats    = 64
	maxStatName = 32
)

// queueMap returns the bits of the queues in use.
func (d *Device) queueMap() uint8 {
	var m uint8
	for i, q := range []*virtio.Queue{d.q.inflate, d.q.deflate, d.q.stats, d.q.hint, d.q.report} {
		if q != nil {
			m |= 1 << i
		}
	}
	return m
}

// SaveContext returns the device's state. Call it with the vCPUs paused
// and no host-side balloon call (SetTargetContext, StartHintContext, ...) in progress,
// and save the transport in the same pause. It fails when ctx ends
// before the device's lock is free.
func (d *Device) SaveContext(ctx context.Context) (State, error) {
	if err := d.lockContext(ctx); err != nil {
		return State{}, err
	}
	defer d.mu.Unlock()
	s := State{Features: d.features, Queues: d.queueMap(), Target: d.target, Actual: d.actual,
		Inflated: d.inflated, Reported: d.reported, Stats: d.stats}
	s.Stats.Values = cloneValues(d.stats.Values)
	h := d.hint
	s.Hint = HintState{State: h.state, ID: h.id, LastID: h.lastID, Config: h.config, Ranges: h.ranges,
		Bytes: h.bytes, GuestStopped: h.guestStopped, Stale: h.stale}
	if d.statsReq != nil {
		s.StatsHeld, s.StatsHead = true, d.statsReq.Head
	}
	return s, nil
}

func cloneValues(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RestoreContext loads s into a device whose transport was just restored
// (which activated it with the saved queues and features) and whose
// guest has not run yet. It checks that the features and queue map
// agree with that activation. It fails, loading nothing, when ctx ends
// before the device's lock is free.
func (d *Device) RestoreContext(ctx context.Context, s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("restore balloon: %w", err)
	}
	if err := d.lockContext(ctx); err != nil {
		return fmt.Errorf("restore balloon: %w", err)
	}
	defer d.mu.Unlock()
	// A device the guest broke after bringing it up kept its features and
	// dropped its queues (failLocked); its transport, in NEEDS_RESET, did
	// not activate it here. It comes back failed, as it left.
	failed := s.Queues == 0 && d.queueMap() == 0 && d.features == 0
	if !failed && (d.features != s.Features || d.queueMap() != s.Queues) {
		return fmt.Errorf("restore balloon: saved features %#x and queues %#b, the transport activated %#x and %#b",
			s.Features, s.Queues, d.features, d.queueMap())
	}
	if s.StatsHeld && s.StatsHead >= d.q.stats.Size {
		return fmt.Errorf("restore balloon: held stats buffer %d outside a queue of %d", s.StatsHead, d.q.stats.Size)
	}
	d.features = s.Features
	d.target, d.actual, d.inflated, d.reported = s.Target, s.Actual, s.Inflated, s.Reported
	d.stats = s.Stats
	d.stats.Values = cloneValues(s.Stats.Values)
	h := s.Hint
	d.hint = session{state: h.State, id: h.ID, lastID: h.LastID, config: h.Config, ranges: h.Ranges,
		bytes: h.Bytes, guestStopped: h.GuestStopped, stale: h.Stale}
	d.statsReq = nil
	if s.StatsHeld {
		d.statsReq = &virtio.Chain{Head: s.StatsHead}
	}
	d.changedLocked()
	return nil
}

// Validate checks what a State can say on its own.
func (s State) Validate() error {
	h := s.Hint
	switch {
	case s.Features&^(offered|virtio.FVersion1) != 0:
		return fmt.Errorf("features %#x were never offered (%#x)", s.Features, offered|virtio.FVersion1)
	case s.Queues >= 1<<5:
		return fmt.Errorf("queue map %#b names more than 5 queues", s.Queues)
	case s.StatsHeld && s.Queues&(1<<2) == 0:
		return fmt.Errorf("a held stats buffer without a stats queue")
	case h.State < Idle || h.State > Stopped:
		return fmt.Errorf("hint session state %d", h.State)
	case h.State != Idle && h.ID < CmdIDFirst:
		return fmt.Errorf("hint session %s with id %#x below %#x", h.State, h.ID, uint32(CmdIDFirst))
	case h.LastID != 0 && h.LastID < CmdIDFirst:
		return fmt.Errorf("last hint id %#x below %#x", h.LastID, uint32(CmdIDFirst))
	case h.Config != CmdIDStop && h.Config != CmdIDDone && h.Config != h.ID:
		return fmt.Errorf("config cmd_id %#x is neither STOP, DONE nor the session id %#x", h.Config, h.ID)
	case len(s.Stats.Values) > maxStats:
		return fmt.Errorf("%d statistics, at most %d", len(s.Stats.Values), maxStats)
	}
	for k := range s.Stats.Values {
		if len(k) == 0 || len(k) > maxStatName {
			return fmt.Errorf("statistic name of %d bytes", len(k))
		}
	}
	return nil
}

// MarshalBinary encodes s as the payload of a state.SecBalloon section:
//
//	Features u64, Queues u8, Target u32, Actual u32
//	hint: State u8 (idle 1, requested 2, active 3, stopped 4; 0 invalid),
//	      ID, LastID, Config u32, Ranges, Bytes u64, GuestStopped u8, Stale u64
//	StatsHeld u8, StatsHead u16
//	Stats.Updated i64 (Unix ns, 0: never), count u32, then name (u32 length
//	      + bytes) and value u64 each, sorted by name
//	Inflated u64, Reported u64
func (s State) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("encode balloon state: %w", err)
	}
	var w state.Writer
	w.U64(s.Features)
	w.U8(s.Queues)
	w.U32(s.Target)
	w.U32(s.Actual)
	h := s.Hint
	w.U8(uint8(h.State) + 1)
	w.U32(h.ID)
	w.U32(h.LastID)
	w.U32(h.Config)
	w.U64(h.Ranges)
	w.U64(h.Bytes)
	w.Bool(h.GuestStopped)
	w.U64(h.Stale)
	w.Bool(s.StatsHeld)
	w.U16(s.StatsHead)
	var updated int64
	if !s.Stats.Updated.IsZero() {
		updated = s.Stats.Updated.UnixNano()
	}
	w.U64(uint64(updated))
	names := make([]string, 0, len(s.Stats.Values))
	for k := range s.Stats.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	w.U32(uint32(len(names)))
	for _, k := range names {
		w.String(k)
		w.U64(s.Stats.Values[k])
	}
	w.U64(s.Inflated)
	w.U64(s.Reported)
	return w.Bytes(), nil
}

// UnmarshalBinary decodes a payload written by MarshalBinary.
func (s *State) UnmarshalBinary(b []byte) error {
	r := state.NewReader(b, "balloon state")
	var st State
	st.Features, st.Queues, st.Target, st.Actual = r.U64(), r.U8(), r.U32(), r.U32()
	hs := r.U8()
	if hs == 0 || hs > uint8(Stopped)+1 {
		r.Fail("hint session state %d", hs)
	}
	st.Hint = HintState{State: SessionState(hs - 1), ID: r.U32(), LastID: r.U32(), Config: r.U32(),
		Ranges: r.U64(), Bytes: r.U64(), GuestStopped: r.Bool(), Stale: r.U64()}
	st.StatsHeld, st.StatsHead = r.Bool(), r.U16()
	if ns := int64(r.U64()); ns != 0 {
		st.Stats.Updated = time.Unix(0, ns)
	}
	n := r.Count(maxStats, "statistics")
	prev := ""
	for i := 0; i < n && r.Err() == nil; i++ {
		k := r.String(maxStatName, "statistic name")
		if i > 0 && k <= prev {
			r.Fail("statistics not sorted by name, or %q twice", k)
		}
		prev = k
		if st.Stats.Values == nil {
			st.Stats.Values = map[string]uint64{}
		}
		st.Stats.Values[k] = r.U64()
	}
	st.Inflated, st.Reported = r.U64(), r.U64()
	if err := r.Close(); err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		r.Fail("%v", err)
		return r.Err()
	}
	*s = st
	return nil
}
