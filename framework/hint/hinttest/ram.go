package hinttest

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

const pageSize = framework.PageSize

// Layout is plugintest.SuiteRAM in hint regions (8 MiB at GPA 0 in
// file 0, 4 MiB at 4 GiB in file 1 from 1 MiB); NewRAM fills HostAddr.
var Layout = plugintest.SuiteLayout(func(g plugintest.Region) hint.Region {
	return hint.Region{GPA: g.GPA, Size: g.Size, File: g.File, Offset: g.Offset}
})

// RAM is the guest memory of one test: memfds mapped in this process,
// which plays the VMM. The suite unmaps and closes it when the test ends.
type RAM struct {
	// VM is what providers are configured with: this process's pid, the
	// regions with the addresses they are mapped at, and the memfds,
	// opened read-only as a VMM's session hands them to providers.
	VM hint.VM
	// Mem is this process's mapping of each region (len = Size).
	Mem [][]byte
}

// NewRAM makes, maps and fills the suite's guest RAM (see the package
// documentation for which pages hold data).
func NewRAM(t testing.TB) *RAM {
	t.Helper()
	files := plugintest.SuiteMemfds(t, "ferry-hinttest")
	r := &RAM{VM: hint.VM{ID: "hinttest-" + t.Name(), PID: os.Getpid()}}
	for _, f := range files {
		r.VM.Files = append(r.VM.Files, plugintest.ReadOnly(t, f))
	}
	for _, g := range Layout {
		m := plugintest.Map(t, files[g.File], int64(g.Offset), int64(g.Size))
		g.HostAddr = hostAddr(m)
		r.VM.RAM = append(r.VM.RAM, g)
		r.Mem = append(r.Mem, m)
	}
	r.fill()
	return r
}

// Pages is the number of guest pages.
func (r *RAM) Pages() uint64 { return r.VM.Pages() }

// IsData reports whether page p holds data (p % 8 is 0, 1 or 2).
func IsData(p uint64) bool { return p%8 < 3 }

// IsTouched reports whether the suite wrote page p through its mapping,
// data or zeros (p % 8 < 4): the others were never populated.
func IsTouched(p uint64) bool { return p%8 < 4 }

// Page returns this process's mapping of page p.
func (r *RAM) Page(p uint64) []byte {
	for i, g := range r.VM.RAM {
		n := g.Size / pageSize
		if p < n {
			return r.Mem[i][p*pageSize : (p+1)*pageSize]
		}
		p -= n
	}
	panic(fmt.Sprintf("page %d outside the suite's RAM", p))
}

// Zero reports whether page p reads as zero now.
func (r *RAM) Zero(p uint64) bool {
	for _, b := range r.Page(p) {
		if b != 0 {
			return false
		}
	}
	return true
}

// fill writes the data pages (their index and a marker in the last 16
// bytes, so a check of the first words alone misses them) and the zero
// pages; the rest stays untouched.
func (r *RAM) fill() {
	for p := range r.Pages() {
		if !IsTouched(p) {
			continue
		}
		b := r.Page(p)
		clear(b)
		if IsData(p) {
			binary.LittleEndian.PutUint64(b[pageSize-16:], p)
			binary.LittleEndian.PutUint64(b[pageSize-8:], 0xfe77_da7a_fe77_da7a)
		}
	}
}
