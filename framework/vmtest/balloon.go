package vmtest

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/hint"
)

// The fake virtio-balloon: the guest hands its free pages (Options.Free)
// to the device in a free page hint session and takes them back only
// after DONE, as Linux's driver does with VIRTIO_BALLOON_F_FREE_PAGE_HINT.
//
//	BalloonHint ─► window open: the free pages are reported, and
//	               neither the guest nor Write touches them
//	BalloonHint ─► (again, each pass) the same pages
//	BalloonDone ─► window closed: Write may take pages back

var _ hint.Host = (*VM)(nil)

// BalloonHint implements hint.Host: one hint session, answered at once
// with every page the guest holds free. It opens the hint window.
func (v *VM) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == StateClosed {
		return nil, ErrClosed
	}
	v.window = true
	v.count.HintSessions++
	var out []hint.GPARange
	var pages uint64
	v.free.Runs(func(first, n uint64) bool {
		pages += n
		out = append(out, v.gpaRanges(first, n)...)
		return true
	})
	v.reported = pages
	return out, nil
}

// gpaRanges turns n pages from page index first into guest address
// ranges, one per region they touch.
func (v *VM) gpaRanges(first, n uint64) []hint.GPARange {
	var out []hint.GPARange
	for i, r := range v.layout {
		lo, hi := v.base[i], v.base[i]+r.Size/framework.PageSize
		s, e := max(first, lo), min(first+n, hi)
		if s < e {
			out = append(out, hint.GPARange{GPA: r.GPA + (s-lo)*framework.PageSize, Size: (e - s) * framework.PageSize})
		}
	}
	return out
}

// BalloonDone implements hint.Host: the hint window closes; the guest may
// take its pages back.
func (v *VM) BalloonDone(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.window = false
	v.count.HintDones++
	return nil
}

// CMMABits implements hint.Host: CMMA is s390's; this fake has none.
func (v *VM) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, fmt.Errorf("%w: the fake VM has no CMMA", hint.ErrNotSupported)
}

// Reported is how many pages the last BalloonHint reported free.
func (v *VM) Reported() uint64 { v.mu.Lock(); defer v.mu.Unlock(); return v.reported }

// HintWindowOpen reports whether a balloon hint window is open.
func (v *VM) HintWindowOpen() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.window }
