package hint

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/ferryvm/ferry/framework"
)

// Valid reports whether m is one of the defined meanings.
func (m Meaning) Valid() bool { return m >= MeaningFree && m <= MeaningUnused }

// Validate reports whether a provider's Info is usable: a name that can
// label a job's hint block (up to 64 letters, digits, "_" and "-",
// starting with a letter) and a valid meaning.
func (i Info) Validate() error {
	var errs []error
	if !validName(i.Name) {
		errs = append(errs, fmt.Errorf("provider name %q is not a plugin name: up to 64 letters, digits, \"_\" and \"-\", starting with a letter", i.Name))
	}
	if !i.Meaning.Valid() {
		errs = append(errs, fmt.Errorf("provider %q has an invalid meaning %d", i.Name, int(i.Meaning)))
	}
	return errors.Join(errs...)
}

// CheckName reports whether the provider's name is name, the label of
// its hint block: the report lists a provider under that label, and
// migrate finds its binary as ferry-hint-<name>, so a provider that calls
// itself anything else is refused (framework/session, cmd/migrate).
func (i Info) CheckName(name string) error {
	if i.Name == name {
		return nil
	}
	return fmt.Errorf("the provider calls itself %q (Info.Name), not %q: its name must be its hint block's label and its binary's suffix, ferry-hint-<name>", i.Name, name)
}

// validName is the job file's rule for plugin names (framework/job).
func validName(s string) bool {
	if s == "" || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Check reports whether r is valid for a guest of pages pages: at least
// one page, no overflow, and every page inside RAM.
func (r Range) Check(pages uint64) error {
	end, carry := bits.Add64(r.First, r.Count, 0)
	switch {
	case r.Count == 0:
		return fmt.Errorf("hint range at page %d is empty", r.First)
	case carry != 0 || end > pages:
		return fmt.Errorf("hint range %d+%d lies outside guest RAM (%d pages)", r.First, r.Count, pages)
	}
	return nil
}

// CheckRanges returns the ranges of a provider's batch that are valid for
// a guest of pages pages (Range.Check), and how many ranges it dropped:
// empty ones, overflowing ones, and those reaching past the last page.
// Overlapping and duplicate ranges are valid. ok is ranges itself when
// nothing was dropped, and a new slice otherwise: the batch is never
// modified.
func CheckRanges(ranges []Range, pages uint64) (ok []Range, dropped uint64) {
	for i, r := range ranges {
		if r.Check(pages) == nil {
			if ok != nil {
				ok = append(ok, r)
			}
			continue
		}
		if dropped == 0 {
			ok = make([]Range, i, len(ranges)-1)
			copy(ok, ranges[:i])
		}
		dropped++
	}
	if dropped == 0 {
		return ranges, 0
	}
	return ok, dropped
}

// Pages is the number of guest pages in vm's RAM: page indices run from
// 0 to Pages-1 across the regions in order.
func (vm VM) Pages() uint64 {
	var n uint64
	for _, r := range vm.RAM {
		n += r.Size / framework.PageSize
	}
	return n
}

// Page returns the page index of the page holding guest physical address
// gpa, and false when gpa is not in RAM.
func (vm VM) Page(gpa uint64) (uint64, bool) {
	var base uint64
	for _, r := range vm.RAM {
		if gpa >= r.GPA && gpa-r.GPA < r.Size {
			return base + (gpa-r.GPA)/framework.PageSize, true
		}
		base += r.Size / framework.PageSize
	}
	return 0, false
}

// PageRanges converts guest physical ranges to page ranges of vm's RAM.
// Parts outside RAM are left out, and so are partial pages at either end
// (a hint covers whole pages); a range that wraps around the address
// space is dropped. Results come in the order of gpas, then of regions,
// and are not merged.
func (vm VM) PageRanges(gpas []GPARange) []Range {
	const page = framework.PageSize
	var out []Range
	for _, g := range gpas {
		end, carry := bits.Add64(g.GPA, g.Size, 0)
		if carry != 0 || g.GPA > ^uint64(0)-page+1 { // wraps, or rounding up would
			continue
		}
		lo, hi := (g.GPA+page-1)/page*page, end/page*page
		var base uint64
		for _, r := range vm.RAM {
			s, e := max(lo, r.GPA), min(hi, r.GPA+r.Size)
			if s < e && (e-s)/page > 0 {
				out = append(out, Range{First: base + (s-r.GPA)/page, Count: (e - s) / page})
			}
			base += r.Size / page
		}
	}
	return out
}
