// Package e2e holds Ferry's end-to-end tests of the reference VMM: real
// ferry-vmm processes booting bin/guest.elf on real KVM, driven through
// their control sockets. Build the binaries first (`make`, or `make test`
// which does). Without /dev/kvm the tests skip with a message naming what
// did not run.
package e2e
