/*
 * entry.S — the ring-0 stub of the Ferry test guest.
 *
 * PVH entry (32-bit protected mode, paging off, EBX = hvm_start_info) →
 * long mode on statically built identity page tables → GDT, IDT, TSS →
 * iretq to ring 3 with IOPL=3 and IF=0. Everything else runs in ring 3.
 *
 * Under nested KVM (PVM) every ring-0 instruction is emulated (~3 µs), so
 * this file contains no loops: the page tables, GDT and IDT are assembled
 * into .data, the exception stubs sit at a fixed address (ISR_BASE, checked
 * by the linker script) so the IDT gates are assembler constants. About 70
 * instructions run in ring 0 at boot (measured: 60-90 us under nested KVM)
 * and about 20 per exception.
 *
 * Ring-3 port I/O: IOPL 3 plus an all-zero I/O permission bitmap in the TSS,
 * because nested KVM here (PVM) ignores IOPL and checks the bitmap.
 *
 * Page tables: with 1 GiB pages (CPUID 0x80000001 EDX bit 26) one PDPT maps
 * 0..512 GiB; otherwise 2 MiB pages map 0..MAP_GIB GiB. Every leaf is
 * present, writable, user-accessible, write-back, with A and D preset so the
 * CPU never writes a page-table entry. The MMIO window is mapped write-back
 * too (harmless under KVM: unbacked guest-physical accesses exit anyway).
 *
 * Exceptions (vectors 0-31) run on IST1, save vector/error/rip/cr2 and
 * iretq into ring 3 at user_fault, which calls guest_fault() to print and
 * power off; a fault while reporting a fault powers off silently (code 3).
 *
 * It cannot: take interrupts (IF stays 0, no APIC setup), run more than one
 * vCPU, or map RAM above the limits above (ring 3 ignores such RAM).
 */

#ifndef MAP_GIB
#define MAP_GIB 64              /* GiB covered by the 2 MiB-page fallback */
#endif

#define ISR_BASE        0x100000    /* .text.isr is the first thing linked */
#define KERN_CS         0x08
#define KERN_DS         0x10
#define USER_DS         0x1b        /* 0x18 | RPL 3 */
#define USER_CS         0x23        /* 0x20 | RPL 3 */
#define TSS_SEL         0x28

#define CR0_PE          (1 << 0)
#define CR0_MP          (1 << 1)
#define CR0_EM          (1 << 2)
#define CR0_TS          (1 << 3)
#define CR0_NE          (1 << 5)
#define CR0_WP          (1 << 16)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define CR4_OSFXSR      (1 << 9)
#define CR4_OSXMMEXCPT  (1 << 10)
#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)

#define PTE_TABLE       0x27        /* P | RW | US | A */
#define PTE_LARGE       0xe7        /* P | RW | US | A | D | PS */
#define USER_RFLAGS     0x3002      /* IOPL=3, IF=0, reserved bit 1 */

/* An IDT gate for vector v: 64-bit interrupt gate, DPL 0, IST 1. */
#define GATE_LO(v) ((((ISR_BASE + (v) * 16) & 0xffff)) | (KERN_CS << 16) | \
                    (1 << 32) | (0x8e << 40) | \
                    ((((ISR_BASE + (v) * 16) >> 16) & 0xffff) << 48))

/* ---- PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18). --------
 * The descriptor is 8 bytes like Linux's x86-64 vmlinux; the entry address
 * is its low 32 bits (QEMU reads 8 bytes, rust-vmm's linux-loader reads 4). */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4, 8, 18
	.asciz "Xen"
	.balign 4
	.quad pvh_start32

/* ---- Exception stubs: 32 x 16 bytes at ISR_BASE. ---------------------- */
	.section .text.isr, "ax"
	.code64
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	.if !((vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30))
	pushq $0                    /* no CPU error code for this vector */
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

/* Stack: vector, error, rip, cs, rflags, rsp, ss. Leave for ring 3 with
 * guest_fault(vector, error, rip, cr2, cs, rsp) as the call. */
isr_common:
	cmpb $0, fault_busy(%rip)
	jne 1f
	movb $1, fault_busy(%rip)
	popq %rdi
	popq %rsi
	movq 0(%rsp), %rdx
	movq %cr2, %rcx
	movq 8(%rsp), %r8
	movq 24(%rsp), %r9
	pushq $USER_DS
	pushq $fault_stack_top
	pushq $USER_RFLAGS
	pushq $USER_CS
	pushq $user_fault
	iretq
1:	movw $0xf4, %dx             /* fault while reporting: exit code 3 */
	movl $3, %eax
	outl %eax, %dx
2:	hlt
	jmp 2b

/* ---- PVH entry, 32-bit protected mode, paging off. -------------------- */
	.text
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	movl %ebx, %esi             /* hvm_start_info; cpuid clobbers EBX */
	rdtsc
	movl %eax, %ebp             /* TSC at entry: EDI:EBP */
	movl %edx, %edi

	movl $0x80000000, %eax      /* 1 GiB pages available? */
	cpuid
	cmpl $0x80000001, %eax
	jb 1f
	movl $0x80000001, %eax
	cpuid
	btl $26, %edx
	jnc 1f
	movl $pml4_1g, %eax
	jmp 2f
1:	movl $pml4_2m, %eax
2:	movl %eax, boot_pml4
	movl %eax, %cr3

	/* The hypervisor's TSC frequency (leaf 0x40000010), read here because
	 * ring-3 CPUID does not trap under PVM: there it shows the host's leaves. */
	movl $0x40000000, %eax
	xorl %ecx, %ecx
	cpuid
	xorl %edx, %edx
	cmpl $0x40000010, %eax
	jb 3f
	cmpl $0x400000ff, %eax
	ja 3f
	movl $0x40000010, %eax
	xorl %ecx, %ecx
	cpuid
	movl %eax, %edx
3:	movl %edx, boot_hv_tsc_khz

	movl %cr4, %eax
	orl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	lgdt gdt_ptr
	movl %cr0, %eax
	andl $~(CR0_EM | CR0_TS), %eax
	orl $(CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG), %eax
	movl %eax, %cr0
	ljmpl $KERN_CS, $entry64

/* ---- 64-bit, ring 0. --------------------------------------------------- */
	.code64
entry64:
	movl $KERN_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl $kstack_top, %esp
	lidt idt_ptr(%rip)

	movl $tss, %eax             /* TSS descriptor: scatter the base */
	movl %eax, %ecx
	shll $16, %ecx
	orl $(tss_end - tss - 1), %ecx  /* limit (< 64 KiB), base 15:0 */
	movl %ecx, gdt_tss(%rip)
	movl %eax, %ecx
	shrl $16, %ecx
	movb %cl, gdt_tss+4(%rip)   /* base 23:16 */
	movb %ch, gdt_tss+7(%rip)   /* base 31:24 */
	movw $TSS_SEL, %ax
	ltr %ax
	fninit

	movl %esi, %r12d            /* zero-extends: start_info */
	movl %edi, %r13d
	shlq $32, %r13
	movl %ebp, %eax
	orq %rax, %r13              /* TSC at entry */
	rdtsc
	shlq $32, %rdx
	orq %rax, %rdx              /* TSC now, leaving ring 0 */
	movq %r12, %rdi
	movq %r13, %rsi
	pushq $USER_DS
	pushq $user_stack_top
	pushq $USER_RFLAGS
	pushq $USER_CS
	pushq $user_entry
	iretq

/* ---- Ring 3 from here on. ---------------------------------------------- */
/* guest_main(start_info, tsc_entry, tsc_ring3) after zeroing .bss (the
 * loader should have, this makes it independent of the loader). */
user_entry:
	movq %rdi, %r12
	movq %rsi, %r13
	movq %rdx, %r14
	movq $__bss_start, %rdi
	movq $__bss_end, %rcx
	subq %rdi, %rcx
	xorl %eax, %eax
	rep stosb
	movq %r12, %rdi
	movq %r13, %rsi
	movq %r14, %rdx
	call guest_main
	ud2

user_fault:
	call guest_fault
	ud2

/* ---- Descriptor tables. ------------------------------------------------ */
	.data
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9a000000ffff     /* 0x08 ring-0 code, 64-bit */
	.quad 0x00cf92000000ffff     /* 0x10 ring-0 data */
	.quad 0x00cff2000000ffff     /* 0x18 ring-3 data */
	.quad 0x00affa000000ffff     /* 0x20 ring-3 code, 64-bit */
gdt_tss:
	.quad 0x0000890000000000     /* 0x28 64-bit TSS, base filled at boot */
	.quad 0
gdt_end:
	.balign 8
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.balign 8
	.word 0
idt_ptr:
	.word 32 * 16 - 1
	.quad idt

	.balign 16
idt:
	.set vec, 0
	.rept 32
	.quad GATE_LO(vec), 0
	.set vec, vec + 1
	.endr

	.balign 16
tss:
	.long 0
	.quad kstack_top             /* rsp0 */
	.quad 0, 0                   /* rsp1, rsp2 */
	.quad 0
	.quad kstack_top             /* ist1 */
	.quad 0, 0, 0, 0, 0, 0       /* ist2..ist7 */
	.quad 0
	.word 0
	.word tss_iomap - tss
/* An all-zero I/O permission bitmap: every port allowed from ring 3.
 * IOPL 3 alone should do, but nested KVM here (PVM) checks the bitmap and
 * raises #GP on ring-3 port I/O without one. */
tss_iomap:
	.fill 65536 / 8, 1, 0
	.byte 0xff                   /* the CPU may read one byte past the end */
tss_end:

	.globl boot_hv_tsc_khz
boot_hv_tsc_khz:                /* kHz from CPUID 0x40000010 in ring 0, or 0 */
	.long 0
	.globl boot_pml4, fault_busy
boot_pml4:
	.quad 0
fault_busy:
	.byte 0

/* ---- Identity page tables, assembled (no ring-0 loops). ---------------- */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4_1g, pml4_2m
pml4_1g:
	.quad pdpt_1g + PTE_TABLE
	.fill 511, 8, 0
pml4_2m:
	.quad pdpt_2m + PTE_TABLE
	.fill 511, 8, 0
pdpt_1g:
	.set i, 0
	.rept 512
	.quad (i << 30) | PTE_LARGE
	.set i, i + 1
	.endr
pdpt_2m:
	.set i, 0
	.rept MAP_GIB
	.quad pd_2m + i * 4096 + PTE_TABLE
	.set i, i + 1
	.endr
	.fill 512 - MAP_GIB, 8, 0
pd_2m:
	.set i, 0
	.rept MAP_GIB * 512
	.quad (i << 21) | PTE_LARGE
	.set i, i + 1
	.endr

/* ---- Stacks (not zeroed, not in the file). ----------------------------- */
	.section .stack, "aw", @nobits
	.balign 4096
	.space 4096
kstack_top:
	.space 16384
	.globl fault_stack_top
fault_stack_top:
	.space 65536
user_stack_top:
