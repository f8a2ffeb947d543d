package pagemap

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// readEntries is how many pagemap entries one read fetches (256 KiB).
const readEntries = 32768

// vmPages reads the VMM's page tables through /proc/PID/pagemap: with
// PAGEMAP_SCAN where the kernel has it, else entry by entry.
type vmPages struct {
	f    *os.File
	scan *scanner // nil once the kernel refused PAGEMAP_SCAN
	buf  []byte
	log  hclog.Logger
}

func openVMPages(pid int, log hclog.Logger) (*vmPages, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("pagemap: the VMM's page tables: %w", err)
	}
	return &vmPages{f: f, scan: newScanner(int(f.Fd())), log: log}, nil
}

func (v *vmPages) close() error { return v.f.Close() }

// veto returns the pages of holes (sorted page runs relative to the
// mapping at base) that have nothing in the VMM's page tables.
func (v *vmPages) veto(ctx context.Context, base uint64, holes []hint.Range) ([]hint.Range, error) {
	if len(holes) == 0 {
		return nil, nil
	}
	if v.scan != nil {
		first, last := holes[0].First, holes[len(holes)-1]
		pop, err := v.scan.populated(ctx, base, first, last.First+last.Count-first)
		if err == nil {
			return subtract(holes, pop), nil
		}
		if !errors.Is(err, errScanUnsupported) {
			return nil, err
		}
		v.log.Info("reading pagemap entries one by one", "reason", err)
		v.scan = nil
	}
	var pop []hint.Range
	for _, h := range holes {
		var err error
		if pop, err = v.read(ctx, pop, base, h); err != nil {
			return nil, err
		}
	}
	return subtract(holes, pop), nil
}

// read appends the populated pages of r (relative to base) to dst.
func (v *vmPages) read(ctx context.Context, dst []hint.Range, base uint64, r hint.Range) ([]hint.Range, error) {
	if v.buf == nil {
		v.buf = make([]byte, readEntries*entrySize)
	}
	for done := uint64(0); done < r.Count; {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n := min(r.Count-done, readEntries)
		page := r.First + done
		off := int64((base/pageSize + page) * entrySize)
		got, err := v.f.ReadAt(v.buf[:n*entrySize], off)
		if err != nil {
			return nil, fmt.Errorf("pagemap: read the entries at %#x: %w", base+page*pageSize, err)
		}
		if dst, err = decodeEntries(dst, page, v.buf[:got]); err != nil {
			return nil, err
		}
		done += n
	}
	return dst, nil
}
