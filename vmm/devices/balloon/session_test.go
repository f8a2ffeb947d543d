package balloon

import "testing"

// TestSession walks the hint state machine through the transitions the
// spec and Linux's driver produce, and the ones a confused guest might.
func TestSession(t *testing.T) {
	type step struct {
		op     string // start, stop, done, out:<id>, in
		state  SessionState
		config uint32
		ok     bool // for start: accepted; for in: hint used
	}
	id1, id2 := uint32(CmdIDFirst), uint32(CmdIDFirst+1)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"full round", []step{
			{"start", Requested, id1, true},
			{"in", Requested, id1, false}, // before the echo: ignored
			{"out", Active, id1, true},
			{"in", Active, id1, true},
			{"in", Active, id1, true},
			{"stopid", Stopped, id1, true}, // guest ran out of pages
			{"in", Stopped, id1, false},
			{"done", Idle, CmdIDDone, true},
		}},
		{"host stops first", []step{
			{"start", Requested, id1, true},
			{"out", Active, id1, true},
			{"stop", Stopped, CmdIDStop, true},
			{"in", Stopped, CmdIDStop, false}, // in flight after STOP: dropped
			{"stopid", Stopped, CmdIDStop, true},
			{"start", Requested, id2, true}, // next id, never reused
			{"out", Active, id2, true},
		}},
		{"stale echo", []step{
			{"start", Requested, id1, true},
			{"stop", Stopped, CmdIDStop, true},
			{"start", Requested, id2, true},
			{"oldout", Requested, id2, true}, // echo of id1 arrives late: ignored
			{"in", Requested, id2, false},
			{"out", Active, id2, true},
		}},
		{"late STOP of the previous round", []step{
			{"start", Requested, id1, true},
			{"out", Active, id1, true},
			{"stop", Stopped, CmdIDStop, true},
			{"start", Requested, id2, true},
			{"stopid", Requested, id2, true}, // round 1's STOP: stale
			{"out", Active, id2, true},
			{"in", Active, id2, true},
		}},
		{"STOP before start", []step{
			{"stopid", Idle, CmdIDDone, true},
			{"in", Idle, CmdIDDone, false},
		}},
		{"start while active refused", []step{
			{"start", Requested, id1, true},
			{"out", Active, id1, true},
			{"start", Active, id1, false},
		}},
		{"DONE twice", []step{
			{"start", Requested, id1, true},
			{"done", Idle, CmdIDDone, true},
			{"done", Idle, CmdIDDone, true},
			{"stop", Idle, CmdIDDone, true}, // stop after done keeps DONE
			{"start", Requested, id2, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession()
			for i, st := range tc.steps {
				ok := true
				switch st.op {
				case "start":
					_, err := s.start()
					ok = err == nil
				case "stop":
					s.stop()
				case "done":
					s.done()
				case "out":
					s.outBuf(s.id)
				case "oldout":
					s.outBuf(s.id - 1)
				case "stopid":
					s.outBuf(CmdIDStop)
				case "in":
					ok, _ = s.inBuf(4 << 20)
				}
				if ok != st.ok || s.state != st.state || s.config != st.config {
					t.Fatalf("step %d %s: ok=%v state=%s config=%#x; want ok=%v state=%s config=%#x",
						i, st.op, ok, s.state, s.config, st.ok, st.state, st.config)
				}
			}
		})
	}
}

func TestSessionIDWrap(t *testing.T) {
	s := newSession()
	s.lastID = 0xffff_ffff
	id, err := s.start()
	if err != nil || id != CmdIDFirst {
		t.Fatalf("id after wrap = %#x, %v", id, err)
	}
}
