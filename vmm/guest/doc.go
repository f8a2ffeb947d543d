// Package guest holds Ferry's test guest: a freestanding x86-64 program,
// not Go, that boots through PVH in Ferry's VMM and in QEMU's microvm
// machine, drops to ring 3 after a ring-0 stub of about 70 instructions,
// and runs memory workloads whose pages carry tags it verifies every
// second. The C and assembly sources are in src/ (kept out of this
// directory because the go command rejects C files in a package that does
// not use cgo); guest.mk builds bin/guest.elf; README.md is the contract
// (boot, ports, exit codes, command-line words, output lines) that the VMM
// and the tests rely on.
//
// The Go code here is only qemu_test.go, which boots bin/guest.elf under
// QEMU as an independent check of the guest itself.
package guest
