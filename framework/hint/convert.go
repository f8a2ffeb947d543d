package hint

import (
	"fmt"
	"os"

	"github.com/ferryvm/ferry/framework"
	pb "github.com/ferryvm/ferry/framework/hint/proto"
)

// Conversions between the Go types and their protobuf messages. Enum
// values are the same numbers on both sides and pass through unchanged,
// invalid ones included: the engine (or the job parser, for a schema)
// rejects them, exactly as it would in process. Schemas and configuration
// values convert in framework/internal/schemaconv, shared with transports.

// vmFromProto rebuilds the VM in the plugin process: region file indices
// name the files this process received at start. It refuses (ErrBadConfig)
// a VM the host's message describes wrongly, before the provider sees
// it: a region naming a file the process did not receive, a layout that
// framework.Layout.Check refuses (unaligned, empty, wrapping past 2^64,
// overlapping or out of order), or a region that ends past the end of its
// file (checkFileSizes). A provider can then trust vm.RAM as the engine
// does. A VM with no RAM at all is taken, though Layout.Check refuses it:
// a provider has nothing to hint there, the engine and session.Open
// refuse to migrate it, and a provider's tests configure one.
func vmFromProto(v *pb.VM, files []*os.File) (VM, error) {
	vm := VM{ID: v.GetId(), PID: int(v.GetPid()), Files: files}
	layout := make(framework.Layout, 0, len(v.GetRam()))
	for i, r := range v.GetRam() {
		if int(r.GetFile()) >= len(files) {
			return VM{}, fmt.Errorf("%w: RAM region %d uses file %d, but the plugin received %d files at start",
				ErrBadConfig, i, r.GetFile(), len(files))
		}
		vm.RAM = append(vm.RAM, Region{GPA: r.GetGpa(), Size: r.GetSize(), HostAddr: r.GetHostAddr(),
			File: int(r.GetFile()), Offset: r.GetOffset()})
		layout = append(layout, framework.Region{GPA: r.GetGpa(), Size: r.GetSize(), Offset: r.GetOffset()})
	}
	if len(layout) == 0 {
		return vm, nil // nothing to hint; the engine and session.Open refuse to migrate it
	}
	if err := layout.Check(); err != nil {
		return VM{}, fmt.Errorf("%w: the host's VM: %v", ErrBadConfig, err)
	}
	if err := checkFileSizes(vm); err != nil {
		return VM{}, fmt.Errorf("%w: the host's VM: %v", ErrBadConfig, err)
	}
	return vm, nil
}

// checkFileSizes reports a region of vm (whose layout passed
// framework.Layout.Check) that ends past the end of its file, as the
// loopback transport refuses one. Only regular files (a memfd, a file on
// tmpfs or hugetlbfs) have a size to check against: a region backed by
// anything else (a device such as /dev/dax) passes unchecked. Each file
// is checked when Configure runs; a file truncated later is not noticed
// (RAMView's reads then read short).
func checkFileSizes(vm VM) error {
	sizes := make(map[int]int64, len(vm.Files))
	for i, r := range vm.RAM {
		size, seen := sizes[r.File]
		if !seen {
			size = -1 // not a regular file: no size to check
			fi, err := vm.Files[r.File].Stat()
			if err != nil {
				return fmt.Errorf("RAM region %d: file %d: %v", i, r.File, err)
			}
			if fi.Mode().IsRegular() {
				size = fi.Size()
			}
			sizes[r.File] = size
		}
		if size >= 0 && r.Offset+r.Size > uint64(size) { // no overflow: Layout.Check keeps it under 2^63
			return fmt.Errorf("RAM region %d (%#x+%#x at offset %#x) ends past the end of its file %d (%d bytes)",
				i, r.GPA, r.Size, r.Offset, r.File, size)
		}
	}
	return nil
}

func rangesToProto(rs []Range) []*pb.Range {
	out := make([]*pb.Range, len(rs))
	for i, r := range rs {
		out[i] = &pb.Range{First: r.First, Count: r.Count}
	}
	return out
}

func rangesFromProto(rs []*pb.Range) []Range {
	out := make([]Range, len(rs))
	for i, r := range rs {
		out[i] = Range{First: r.GetFirst(), Count: r.GetCount()}
	}
	return out
}

func gpaRangesToProto(rs []GPARange) []*pb.GPARange {
	out := make([]*pb.GPARange, len(rs))
	for i, r := range rs {
		out[i] = &pb.GPARange{Gpa: r.GPA, Size: r.Size}
	}
	return out
}

func gpaRangesFromProto(rs []*pb.GPARange) []GPARange {
	out := make([]GPARange, len(rs))
	for i, r := range rs {
		out[i] = GPARange{GPA: r.GetGpa(), Size: r.GetSize()}
	}
	return out
}
