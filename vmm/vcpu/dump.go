package vcpu

import (
	"fmt"
	"strings"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// Dump formats a vCPU's registers for a crash report. It must run on the
// vCPU's thread.
func Dump(k *kvm.VCPU) string {
	var b strings.Builder
	r, err := k.Regs()
	if err != nil {
		return "registers unavailable: " + err.Error()
	}
	fmt.Fprintf(&b, "  rip=%016x rflags=%08x\n", r.Rip, r.Rflags)
	fmt.Fprintf(&b, "  rax=%016x rbx=%016x rcx=%016x rdx=%016x\n", r.Rax, r.Rbx, r.Rcx, r.Rdx)
	fmt.Fprintf(&b, "  rsi=%016x rdi=%016x rsp=%016x rbp=%016x\n", r.Rsi, r.Rdi, r.Rsp, r.Rbp)
	fmt.Fprintf(&b, "  r8 =%016x r9 =%016x r10=%016x r11=%016x\n", r.R8, r.R9, r.R10, r.R11)
	fmt.Fprintf(&b, "  r12=%016x r13=%016x r14=%016x r15=%016x\n", r.R12, r.R13, r.R14, r.R15)
	s, err := k.Sregs()
	if err != nil {
		return b.String() + "  special registers unavailable: " + err.Error()
	}
	fmt.Fprintf(&b, "  cr0=%016x cr2=%016x cr3=%016x cr4=%016x efer=%x\n", s.Cr0, s.Cr2, s.Cr3, s.Cr4, s.Efer)
	seg := func(name string, g kvm.Segment) {
		fmt.Fprintf(&b, "  %s=%04x base=%x limit=%x type=%x dpl=%d l=%d db=%d\n",
			name, g.Selector, g.Base, g.Limit, g.Type, g.Dpl, g.L, g.Db)
	}
	seg("cs", s.Cs)
	seg("ss", s.Ss)
	seg("tr", s.Tr)
	fmt.Fprintf(&b, "  gdt=%x/%x idt=%x/%x", s.Gdt.Base, s.Gdt.Limit, s.Idt.Base, s.Idt.Limit)
	if isResetState(r.Rip, s.Cs.Base, s.Cr0) {
		b.WriteString("\n  (this is the CPU's reset state, not the state at the failure: KVM on AMD" +
			" reinitializes a vCPU after a shutdown exit)")
	}
	return b.String()
}

// isResetState reports whether rip, cs.base and cr0 are those of an x86
// CPU just out of reset (rip 0xfff0 in the segment at 0xffff0000, paging
// and protection off): what KVM on AMD leaves after a shutdown exit.
func isResetState(rip, csBase, cr0 uint64) bool {
	const cr0PE, cr0PG = 1 << 0, 1 << 31
	return rip == 0xfff0 && csBase == 0xffff0000 && cr0&(cr0PE|cr0PG) == 0
}
