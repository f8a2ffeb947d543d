package vcpu

import "testing"

func TestIsResetState(t *testing.T) {
	for _, c := range []struct {
		rip, csBase, cr0 uint64
		want             bool
	}{
		{0xfff0, 0xffff0000, 0x10, true},       // after a shutdown exit on AMD (seen)
		{0xfff0, 0xffff0000, 0x60000010, true}, // CD and NW set, as at power-on
		{0x100ed9, 0, 0x80010033, false},       // a running long-mode guest
		{0xfff0, 0, 0x10, false},               // real mode at 0:fff0 is not the reset vector
		{0xfff0, 0xffff0000, 0x11, false},      // protected mode
	} {
		if got := isResetState(c.rip, c.csBase, c.cr0); got != c.want {
			t.Errorf("isResetState(%#x, %#x, %#x) = %v, want %v", c.rip, c.csBase, c.cr0, got, c.want)
		}
	}
}
