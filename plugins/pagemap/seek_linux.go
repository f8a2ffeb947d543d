package pagemap

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

// pageSize is the framework's page (framework.PageSize).
const pageSize = 4096

// checkEvery is how many lseek calls go between two looks at the context
// (about 0.1 ms of work).
const checkEvery = 256

// fileHoles calls out with every run of whole pages of [off, off+pages
// pages) of the file fd that lies in a hole, in order, page numbers
// relative to off. A hole reads as zeros: the page was never written or
// was punched (FALLOC_FL_PUNCH_HOLE, madvise(MADV_REMOVE)). For tmpfs and
// memfd files the answer is exact: the page cache holds a folio (or a swap
// entry) for every page written, and a folio that is not up to date is
// zeros. A filesystem without SEEK_HOLE support reports all data: no holes.
func fileHoles(ctx context.Context, fd int, off, pages uint64, out func(hint.Range) error) error {
	start, end := int64(off), int64(off+pages*pageSize)
	pos := start
	for calls := 0; pos < end; calls += 2 {
		if calls%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data from pos to the end of the file
			data = end
		case err != nil:
			return fmt.Errorf("pagemap: lseek(SEEK_DATA, %#x): %w", pos, err)
		case data < pos: // cannot happen; be safe: data right here
			data = pos
		}
		data = min(data, end)
		// Whole pages only: round the hole inwards.
		if first, last := (uint64(pos-start)+pageSize-1)/pageSize, uint64(data-start)/pageSize; last > first {
			if err := out(hint.Range{First: first, Count: last - first}); err != nil {
				return err
			}
		}
		if data >= end {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("pagemap: lseek(SEEK_HOLE, %#x): %w", data, err)
		}
		if hole <= data { // cannot happen either; make progress with one data page
			hole = data + pageSize
		}
		pos = hole
	}
	return nil
}
