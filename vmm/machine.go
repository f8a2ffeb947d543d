package vmm

import (
	"fmt"

	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/state"
)

// machineState is the shape of a VM, saved first in every blob: what a
// target must have been built with to take the rest. Guest RAM's layout
// follows from its size (memory.Layout), and is saved too so that a
// change of layout rules between versions is caught, not misapplied.
type machineState struct {
	Memory  uint64
	CPUs    uint32
	Balloon bool
	Regions []memory.Region
}

const maxRegions = 16

func (v *VM) machine() machineState {
	return machineState{Memory: v.cfg.Memory, CPUs: uint32(v.cfg.CPUs), Balloon: v.balloon != nil,
		Regions: v.mem.Regions()}
}

// marshal encodes m as a state.SecMachine payload: Memory u64, CPUs u32,
// Balloon u8, region count u32, then GPA, Size, Offset u64 per region.
func (m machineState) marshal() []byte {
	var w state.Writer
	w.U64(m.Memory)
	w.U32(m.CPUs)
	w.Bool(m.Balloon)
	w.U32(uint32(len(m.Regions)))
	for _, r := range m.Regions {
		w.U64(r.GPA)
		w.U64(r.Size)
		w.U64(r.Offset)
	}
	return w.Bytes()
}

func (m *machineState) unmarshal(b []byte) error {
	r := state.NewReader(b, "machine")
	var st machineState
	st.Memory, st.CPUs, st.Balloon = r.U64(), r.U32(), r.Bool()
	n := r.Count(maxRegions, "RAM regions")
	for i := 0; i < n && r.Err() == nil; i++ {
		st.Regions = append(st.Regions, memory.Region{GPA: r.U64(), Size: r.U64(), Offset: r.U64()})
	}
	if err := r.Close(); err != nil {
		return err
	}
	if st.CPUs < 1 || st.CPUs > MaxCPUs {
		r.Fail("%d vCPUs, want 1 to %d", st.CPUs, MaxCPUs)
		return r.Err()
	}
	*m = st
	return nil
}

// compatible says what to change when the target differs from the source.
func (m machineState) compatible(here machineState) error {
	flag := func(b bool) string {
		if b {
			return ""
		}
		return " -no-balloon"
	}
	if m.Memory != here.Memory || m.CPUs != here.CPUs || m.Balloon != here.Balloon {
		return fmt.Errorf("the saved VM has %s of RAM, %d vCPUs and balloon=%v; this one has %s, %d and %v: "+
			"start the target with -mem %dM -cpus %d%s", memory.FormatSize(m.Memory), m.CPUs, m.Balloon,
			memory.FormatSize(here.Memory), here.CPUs, here.Balloon, m.Memory>>20, m.CPUs, flag(m.Balloon))
	}
	if len(m.Regions) != len(here.Regions) {
		return fmt.Errorf("the saved VM has %d RAM regions, this one %d", len(m.Regions), len(here.Regions))
	}
	for i := range m.Regions {
		if m.Regions[i] != here.Regions[i] {
			return fmt.Errorf("RAM region %d is %+v in the saved VM, %+v here", i, m.Regions[i], here.Regions[i])
		}
	}
	return nil
}
