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
// The Go code here is only tests: qemu_test.go boots bin/guest.elf under
// QEMU as an independent check of the guest itself, and balloon_test.go
// (with the QMP client in qmp_test.go) uses QEMU's virtio-balloon as the
// outside peer of the guest's balloon driver, including live migration
// with free page hints between two QEMUs.
package guest
