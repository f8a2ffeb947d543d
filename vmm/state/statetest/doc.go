// Package statetest pins the byte encodings of state blob section
// payloads in golden files, one helper for every owner's test (vmm/vcpu,
// vmm/virtio, vmm/devices/...).
//
//	owner's TestStateGolden ─► MarshalBinary(sample) ─► Golden ─► testdata/state.golden (hex dump)
//	                                                         └─► bytes for UnmarshalBinary
//
// A section payload's format is fixed by the state blob's container
// version (docs/ARCHITECTURE.md#versions): a golden that no longer
// matches means the payload changed, and state.Version must be bumped
// before the golden is rewritten with -update.
package statetest
