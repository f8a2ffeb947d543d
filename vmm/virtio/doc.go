// Package virtio implements the device side of virtio over MMIO (version 2
// register layout) with split virtqueues, for the reference VMM's devices.
//
//	guest driver                         VMM (this package)
//	  writes registers at base+off ───►  Transport (bus.Device): features,
//	                                     status, queue setup, config space
//	  QueueNotify(n) ─────────────────►  Device.Notify(n) ─► Queue.Pop chains
//	                                     Queue.Push ─► used ring (+ dirty mark)
//	  polls InterruptStatus  ◄─────────  Transport.SignalUsed / ConfigChanged
//
// Every value that comes from the guest is checked: queue sizes and ring
// addresses (alignment, inside guest RAM), descriptor indices, chain
// lengths and loops, buffer addresses and lengths, and the available index
// (a driver cannot claim more buffers than the ring holds). A violation
// puts the device into NEEDS_RESET with a logged reason; the VMM never
// panics and never touches host memory outside guest RAM. Once the driver
// set DRIVER_OK a device's queues change only at a reset: status bits
// only accumulate (those a driver may set: not NEEDS_RESET, no undefined
// bit), QueueReady=0 is ignored, and a reset clears the queues
// after the device's Reset returned. The device is activated once, when
// the status becomes live (DRIVER_OK and FEATURES_OK, in either order,
// and not NEEDS_RESET); a restored transport activates its device by the
// same rule, so a migrated device runs exactly when the source's did.
// Kicks reach a device only between its Activate's return and its
// Reset. When a driver's Status write activated the device, every queue
// it set up is notified once Activate returned, so buffers it made
// available before DRIVER_OK (Linux's balloon primes its stats queue
// then) or while Activate ran on that vCPU are seen, never lost; a
// restored transport's activation notifies none (kick.go).
//
// Every byte the device writes into guest RAM (used ring entries, used
// index, device-writable buffers) goes through Memory.MarkDirty, because
// KVM's dirty log only sees writes made by the guest's vCPUs.
//
// Not implemented: legacy (version 1) MMIO, packed rings, indirect
// descriptors and event-index suppression; they are not offered.
package virtio
