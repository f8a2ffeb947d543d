package plugproc

import (
	"fmt"
	"os"
)

// FileIndex maps a RAM region's file to the index of the same file among
// launched, the files the plugin process received at start: file indexes
// files, or launched itself when files is nil. A file of files matches a
// launched one that is the same *os.File or open on the same inode.
// Errors wrap bad, the kind's ErrBadConfig.
func FileIndex(launched, files []*os.File, file int, bad error) (int, error) {
	if files == nil {
		if file < 0 || file >= len(launched) {
			return 0, fmt.Errorf("%w: file %d, but the plugin received %d files at start", bad, file, len(launched))
		}
		return file, nil
	}
	if file < 0 || file >= len(files) {
		return 0, fmt.Errorf("%w: file %d of %d", bad, file, len(files))
	}
	f := files[file]
	var fi os.FileInfo
	for i, l := range launched {
		if l == f {
			return i, nil
		}
		if fi == nil {
			var err error
			if fi, err = f.Stat(); err != nil {
				return 0, fmt.Errorf("%w: stat RAM file %d: %v", bad, file, err)
			}
		}
		if li, err := l.Stat(); err == nil && os.SameFile(fi, li) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: RAM file %d (%s) was not handed to the plugin at start; pass it to Launch", bad, file, f.Name())
}
