// Package kvm is a thin, typed layer over the Linux KVM API for x86-64:
// /dev/kvm, VM and vCPU file descriptors and the structures their ioctls
// take. It is the only package in Ferry that issues raw ioctls.
//
// The structures and constants are generated from the kernel's uapi headers
// with `go tool cgo -godefs` (types_linux.go -> ztypes_linux_amd64.go, see
// `make godefs`) and committed, so building Ferry needs no cgo.
//
// The package does no policy: it does not pick memory layouts, CPUID bits
// or register values (vmm/arch/x86 does). What it cannot hide: vCPU ioctls
// must come from the thread that created the vCPU, so callers pin each vCPU
// to a locked OS thread (runtime.LockOSThread) for its whole life.
package kvm
