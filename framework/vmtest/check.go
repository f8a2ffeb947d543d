package vmtest

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework/bitmap"
)

// maxReported bounds the pages an error of Verify or Equal names.
const maxReported = 8

// Verify is the guest's own check of its live memory (invariant 4 of
// docs/ARCHITECTURE.md): every page it owns holds a valid record of
// itself, and every page this VM wrote still holds its last write there:
// an older record, valid as it is, means a late copy (a migration's)
// overwrote what the guest wrote (on a destination, after it resumed).
// Free pages are not checked.
func (v *VM) Verify() error {
	if err := v.touchAll(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == StateIncoming || v.state == StateClosed {
		return fmt.Errorf("verify: the VM is %s", v.state)
	}
	var errs []error
	bad := 0
	for p := range v.layout.Pages() {
		if v.free.Test(p) {
			continue
		}
		err := checkPage(v.page(p), p)
		if last, ok := v.own[p]; ok && err == nil {
			if seq := recordSeq(v.page(p)); seq != last {
				err = fmt.Errorf("page %d holds the record of write %d, this VM's last write there was %d: a later copy overwrote it", p, seq, last)
			}
		}
		if err != nil {
			if bad++; bad <= maxReported {
				errs = append(errs, err)
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("verify: %d bad pages: %w", bad, errors.Join(errs...))
	}
	return nil
}

// Equal compares two VMs of the same layout page by page: both must have
// the same free pages and the same bytes in every other page. Neither
// may run (their writers would race the comparison's meaning, not its
// safety). It locks a, then b.
func Equal(a, b *VM) error {
	if a == b {
		return nil
	}
	if err := a.layout.Same(b.layout); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	for _, v := range []*VM{a, b} {
		if err := v.touchAll(); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	var bad []uint64
	n := 0
	for p := range a.layout.Pages() {
		fa, fb := a.free.Test(p), b.free.Test(p)
		switch {
		case fa != fb:
			n++
		case fa:
			continue
		case !bytes.Equal(a.page(p), b.page(p)):
			n++
		default:
			continue
		}
		if len(bad) < maxReported {
			bad = append(bad, p)
		}
	}
	if n > 0 {
		return fmt.Errorf("compare: %d of %d pages differ (free on one side only, or other bytes), first %v",
			n, a.layout.Pages(), bad)
	}
	return nil
}

// Free returns a copy of the guest's free pages.
func (v *VM) Free() *bitmap.Bitmap {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := bitmap.New(v.free.Len())
	c.Or(v.free)
	return c
}

// Page returns a copy of page p (nil if the page could not be touched
// during post-copy).
func (v *VM) Page(p uint64) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.touchLocked(p, false) != nil {
		return nil
	}
	return bytes.Clone(v.page(p))
}
