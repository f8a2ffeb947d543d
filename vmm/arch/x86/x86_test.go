package x86

import (
	"encoding/binary"
	"testing"

	"github.com/ferryvm/ferry/vmm/kvm"
)

func TestCPUID(t *testing.T) {
	supported := []kvm.CPUIDEntry2{
		{Function: 0x1, Ebx: 0xff00_1234},
		{Function: 0xb, Index: 0, Edx: 7},
		{Function: leafHypervisorBase, Eax: 0x4000_0001},
		{Function: LeafTimingInfo, Eax: 1},
	}
	got := CPUID(supported, 3, 4, 2_500_000)
	find := func(fn uint32) *kvm.CPUIDEntry2 {
		for i := range got {
			if got[i].Function == fn {
				return &got[i]
			}
		}
		t.Fatalf("leaf %#x missing", fn)
		return nil
	}
	if l := find(0x1); l.Ebx>>24 != 3 || (l.Ebx>>16)&0xff != 4 || l.Ebx&0xffff != 0x0834 || l.Ecx>>31 != 1 || l.Edx&(1<<28) == 0 {
		t.Errorf("leaf 1 = %+v", *l)
	}
	if l := find(0xb); l.Edx != 3 {
		t.Errorf("leaf 0xb x2APIC id = %d", l.Edx)
	}
	if l := find(leafHypervisorBase); l.Eax != LeafTimingInfo {
		t.Errorf("hypervisor max leaf = %#x", l.Eax)
	}
	n := 0
	for _, e := range got {
		if e.Function == LeafTimingInfo {
			n++
			if e.Eax != 2_500_000 || e.Ebx != apicBusKHz {
				t.Errorf("timing leaf = %+v", e)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d timing leaves", n)
	}
	if got := CPUID(supported, 0, 1, 0); len(got) != len(supported)-1 {
		t.Errorf("without a TSC frequency the timing leaf must go: %d leaves", len(got))
	}
}

type flatMem []byte

func (m flatMem) Slice(gpa, n uint64) ([]byte, error) { return m[gpa : gpa+n], nil }

func TestPVHEntry(t *testing.T) {
	regs, s := PVHEntry(0x100123, 0x6000, kvm.Sregs{Cr4: 0x2000, Efer: 0x500})
	if regs.Rip != 0x100123 || regs.Rbx != 0x6000 || regs.Rflags != 2 {
		t.Errorf("regs = %+v", regs)
	}
	if s.Cr0&1 == 0 || s.Cr0&(1<<31) != 0 || s.Cr4 != 0 || s.Efer != 0 {
		t.Errorf("cr0=%#x cr4=%#x efer=%#x: want protected mode, paging off", s.Cr0, s.Cr4, s.Efer)
	}
	for name, seg := range map[string]kvm.Segment{"cs": s.Cs, "ds": s.Ds, "ss": s.Ss} {
		if seg.Base != 0 || seg.Limit != 0xffffffff || seg.Db != 1 || seg.L != 0 || seg.Present != 1 {
			t.Errorf("%s = %+v, want flat 32-bit", name, seg)
		}
	}
	if s.Cs.Type&0x8 == 0 || s.Ds.Type&0x8 != 0 || s.Tr.Limit != 0x67 || s.Tr.Type != 0xb {
		t.Errorf("segment types cs=%#x ds=%#x tr=%+v", s.Cs.Type, s.Ds.Type, s.Tr)
	}
	mem := make(flatMem, 0x8000)
	if err := WriteBootGDT(mem); err != nil {
		t.Fatal(err)
	}
	// The descriptors the selectors point at must agree with sregs.
	code := binary.LittleEndian.Uint64(mem[BootGDTGPA+int(s.Cs.Selector):])
	if typ := uint8(code>>40) & 0xf; typ != s.Cs.Type {
		t.Errorf("GDT code type %#x, sregs %#x", typ, s.Cs.Type)
	}
	data := binary.LittleEndian.Uint64(mem[BootGDTGPA+int(s.Ds.Selector):])
	if typ := uint8(data>>40) & 0xf; typ != s.Ds.Type {
		t.Errorf("GDT data type %#x, sregs %#x", typ, s.Ds.Type)
	}
}

func TestMigrationMSRs(t *testing.T) {
	got := MigrationMSRs([]uint32{0x10, MSRTSCDeadline, 0x174, 0x2ff, 0x4b564d00, 0xfe})
	if got[len(got)-1] != MSRTSCDeadline {
		t.Errorf("TSC deadline not last: %#x", got)
	}
	seen := map[uint32]int{}
	for _, m := range got {
		seen[m]++
	}
	for m, n := range seen {
		if n != 1 {
			t.Errorf("MSR %#x listed %d times", m, n)
		}
	}
	for _, m := range []uint32{0x10, 0x174, 0x4b564d00, 0x2ff, 0x250, 0x26f, 0x20f, 0xc0000103} {
		if seen[m] != 1 {
			t.Errorf("MSR %#x missing", m)
		}
	}
	if seen[0xfe] != 0 {
		t.Error("read-only MTRRcap listed")
	}
	if l := MigrationMSRs([]uint32{0x10}); l[len(l)-1] == MSRTSCDeadline {
		t.Error("TSC deadline added although KVM does not list it")
	}
}
