package liar

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/hint"
)

// chunk is how much RAM Scan reads at a time.
const chunk = 64 * framework.PageSize

// Scan reads vm's RAM files and returns the ranges of pages that read as
// zero and of those that hold data, in page order. It stops when ctx
// ends.
func Scan(ctx context.Context, vm hint.VM) (zero, data []hint.Range, err error) {
	const page = framework.PageSize
	buf := make([]byte, chunk)
	var base uint64
	for i, r := range vm.RAM {
		if r.File < 0 || r.File >= len(vm.Files) {
			return nil, nil, fmt.Errorf("%w: RAM region %d uses file %d of %d", hint.ErrBadConfig, i, r.File, len(vm.Files))
		}
		for off := uint64(0); off < r.Size; off += chunk {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			b := buf[:min(chunk, r.Size-off)]
			if _, err := vm.Files[r.File].ReadAt(b, int64(r.Offset+off)); err != nil {
				return nil, nil, fmt.Errorf("read guest RAM: %w", err)
			}
			for j := 0; j+page <= len(b); j += page {
				p := base + (off+uint64(j))/page
				if isZero(b[j : j+page]) {
					zero = appendPage(zero, p)
				} else {
					data = appendPage(data, p)
				}
			}
		}
		base += r.Size / page
	}
	return zero, data, nil
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// appendPage adds page p, extending the last range when it ends at p.
func appendPage(rs []hint.Range, p uint64) []hint.Range {
	if n := len(rs); n > 0 && rs[n-1].First+rs[n-1].Count == p {
		rs[n-1].Count++
		return rs
	}
	return append(rs, hint.Range{First: p, Count: 1})
}
