package hint

import (
	"fmt"
	"os"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
)

// Conversions between the Go types and their protobuf messages. Enum
// values are the same numbers on both sides and pass through unchanged,
// invalid ones included: the engine (or the job parser, for a schema)
// rejects them, exactly as it would in process. Schemas and configuration
// values convert in framework/internal/schemaconv, shared with transports.

// vmFromProto rebuilds the VM in the plugin process: region file indices
// name the files this process received at start.
func vmFromProto(v *pb.VM, files []*os.File) (VM, error) {
	vm := VM{ID: v.GetId(), PID: int(v.GetPid()), Files: files}
	for i, r := range v.GetRam() {
		if int(r.GetFile()) >= len(files) {
			return VM{}, fmt.Errorf("%w: RAM region %d uses file %d, but the plugin received %d files at start",
				ErrBadConfig, i, r.GetFile(), len(files))
		}
		vm.RAM = append(vm.RAM, Region{GPA: r.GetGpa(), Size: r.GetSize(), HostAddr: r.GetHostAddr(),
			File: int(r.GetFile()), Offset: r.GetOffset()})
	}
	return vm, nil
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
