package vmm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/devices/uart"
	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/vcpu"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// sampleSections builds a well-formed blob's sections for a machine with
// cpus vCPUs and a balloon, without KVM.
func sampleSections(t testing.TB, cpus int) []state.Section {
	regions, _ := memory.Layout(1 << 30)
	m := machineState{Memory: 1 << 30, CPUs: uint32(cpus), Balloon: true, Regions: regions}
	secs := []state.Section{{Type: state.SecMachine, Data: m.marshal()}}
	for i := 0; i < cpus; i++ {
		vs := vcpu.State{Xsave: make([]byte, kvm.XsaveSize), CPUID: []kvm.CPUIDEntry2{{Function: 0}}}
		b, err := vs.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		secs = append(secs, state.Section{Type: state.SecVCPU, ID: uint32(i), Data: b})
	}
	var pit kvm.PITState2
	var clock kvm.ClockData
	secs = append(secs, state.Section{Type: state.SecPIT, Data: structBytes(&pit)},
		state.Section{Type: state.SecClock, Data: structBytes(&clock)})
	for _, id := range irqChips {
		c := kvm.IRQChip{Id: id}
		secs = append(secs, state.Section{Type: state.SecIRQChip, ID: id, Data: structBytes(&c)})
	}
	u, _ := uart.State{IIR: 1, LCR: 3}.MarshalBinary()
	tr, _ := virtio.TransportState{Queues: make([]virtio.QueueState, 5)}.MarshalBinary()
	bl, err := balloon.State{Hint: balloon.HintState{Config: balloon.CmdIDDone}}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(secs, state.Section{Type: state.SecUART, Data: u},
		state.Section{Type: state.SecVirtioMMIO, Data: tr}, state.Section{Type: state.SecBalloon, Data: bl})
}

func encode(t testing.TB, secs []state.Section) []byte {
	b, err := state.Encode(secs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseState(t *testing.T) {
	s, err := parseState(encode(t, sampleSections(t, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.vcpus) != 2 || s.transport == nil || s.balloon == nil || s.chips[2].Id != 2 {
		t.Fatalf("parsed %+v", s)
	}
	regions, _ := memory.Layout(1 << 30)
	here := machineState{Memory: 1 << 30, CPUs: 2, Balloon: true, Regions: regions}
	if err := s.machine.compatible(here); err != nil {
		t.Fatal(err)
	}
	here.Memory, here.CPUs = 2<<30, 1
	if err := s.machine.compatible(here); err == nil || !strings.Contains(err.Error(), "-mem 1024M -cpus 2") {
		t.Fatalf("compatible with a different shape: %v", err)
	}
}

func TestParseStateRejects(t *testing.T) {
	drop := func(i int) func([]state.Section) []state.Section {
		return func(s []state.Section) []state.Section { return append(s[:i:i], s[i+1:]...) }
	}
	for _, tc := range []struct {
		name string
		edit func([]state.Section) []state.Section
		want string
	}{
		{"machine not first", func(s []state.Section) []state.Section { s[0], s[1] = s[1], s[0]; return s }, "first section"},
		{"missing vCPU", drop(2), "no vcpu section 1"},
		{"missing IOAPIC", drop(7), "no irqchip section 2"},
		{"missing balloon", drop(10), "no balloon section 0"},
		{"duplicate", func(s []state.Section) []state.Section { return append(s, s[1]) }, "twice"},
		{"vCPU out of range", func(s []state.Section) []state.Section { s[2].ID = 5; return s }, "vcpu section 5"},
		{"chip id mismatch", func(s []state.Section) []state.Section { s[5].ID, s[6].ID = 1, 0; return s }, "holds chip"},
		{"short PIT", func(s []state.Section) []state.Section { s[3].Data = s[3].Data[:10]; return s }, "truncated"},
		{"bad vCPU", func(s []state.Section) []state.Section { s[1].Data = s[1].Data[:100]; return s }, "vCPU state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseState(encode(t, tc.edit(sampleSections(t, 2))))
			if err == nil || !errors.Is(err, state.ErrBadState) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseState = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParseState feeds arbitrary sections (behind a valid container) to
// the VM-level decoder: it must reject or accept, never panic.
func FuzzParseState(f *testing.F) {
	f.Add(encode(f, sampleSections(f, 1)))
	f.Add(encode(f, sampleSections(f, 3)))
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 20 && string(b[:8]) == state.Magic { // reseal: reach the sections
			binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
		}
		s, err := parseState(b)
		if err != nil {
			return
		}
		if len(s.vcpus) != int(s.machine.CPUs) || len(s.chips) != len(irqChips) {
			t.Fatalf("accepted an incomplete state: %+v", s)
		}
	})
}
