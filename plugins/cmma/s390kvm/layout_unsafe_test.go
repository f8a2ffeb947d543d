//go:build amd64 || arm64 || s390x

package s390kvm

import (
	"testing"
	"unsafe"
)

// TestLayout: the structures have the kernel's sizes and offsets on every
// 64-bit architecture (on s390x the build checks the sizes too).
func TestLayout(t *testing.T) {
	var l cmmaLog
	var a deviceAttr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(kvm_s390_cmma_log)", unsafe.Sizeof(l), 32},
		{"start_gfn", unsafe.Offsetof(l.startGFN), 0},
		{"count", unsafe.Offsetof(l.count), 8},
		{"flags", unsafe.Offsetof(l.flags), 12},
		{"remaining/mask", unsafe.Offsetof(l.remaining), 16},
		{"values", unsafe.Offsetof(l.values), 24},
		{"sizeof(kvm_device_attr)", unsafe.Sizeof(a), 24},
		{"group", unsafe.Offsetof(a.group), 4},
		{"attr", unsafe.Offsetof(a.attr), 8},
		{"addr", unsafe.Offsetof(a.addr), 16},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
