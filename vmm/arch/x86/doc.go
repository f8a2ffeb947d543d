// Package x86 holds the x86-64 policy of the reference VMM: which CPUID
// leaves and MSR values a vCPU starts with, and the register state of a PVH
// entry. Loading the kernel and building hvm_start_info live in x86/pvh.
//
// It only computes values; vmm/kvm applies them. It cannot make up for a
// host that lacks a feature: leaves are filtered from what KVM supports.
package x86
