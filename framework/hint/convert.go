package hint

import (
	"fmt"
	"os"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/schema"
)

// Conversions between the Go types and their protobuf messages. Enum
// values are the same numbers on both sides and pass through unchanged,
// invalid ones included: the engine (or the job parser, for a schema)
// rejects them, exactly as it would in process.

func valueToProto(name string, v any) (*pb.Value, error) {
	switch x := v.(type) {
	case string:
		return &pb.Value{Value: &pb.Value_StringValue{StringValue: x}}, nil
	case int64:
		return &pb.Value{Value: &pb.Value_NumberValue{NumberValue: x}}, nil
	case int:
		return &pb.Value{Value: &pb.Value_NumberValue{NumberValue: int64(x)}}, nil
	case bool:
		return &pb.Value{Value: &pb.Value_BoolValue{BoolValue: x}}, nil
	}
	return nil, fmt.Errorf("%w: attribute %q: %v is a %T, want string, int64 or bool", ErrBadConfig, name, v, v)
}

// valueFromProto returns nil for a Value with nothing set.
func valueFromProto(v *pb.Value) any {
	switch x := v.GetValue().(type) {
	case *pb.Value_StringValue:
		return x.StringValue
	case *pb.Value_NumberValue:
		return x.NumberValue
	case *pb.Value_BoolValue:
		return x.BoolValue
	}
	return nil
}

func configToProto(c Config) (map[string]*pb.Value, error) {
	if c == nil {
		return nil, nil
	}
	out := make(map[string]*pb.Value, len(c))
	for k, v := range c {
		pv, err := valueToProto(k, v)
		if err != nil {
			return nil, err
		}
		out[k] = pv
	}
	return out, nil
}

func configFromProto(m map[string]*pb.Value) (Config, error) {
	if m == nil {
		return nil, nil
	}
	out := make(Config, len(m))
	for k, v := range m {
		x := valueFromProto(v)
		if x == nil {
			return nil, fmt.Errorf("%w: attribute %q has no value", ErrBadConfig, k)
		}
		out[k] = x
	}
	return out, nil
}

func schemaToProto(s Schema) (*pb.SchemaResponse, error) {
	out := &pb.SchemaResponse{}
	for _, a := range s {
		pa := &pb.Attribute{Name: a.Name, Type: pb.AttrType(a.Type), Required: a.Required, Doc: a.Doc}
		if a.Default != nil {
			d, err := valueToProto(a.Name, a.Default)
			if err != nil {
				return nil, fmt.Errorf("schema default: %w", err)
			}
			pa.Default = d
		}
		out.Attributes = append(out.Attributes, pa)
	}
	return out, nil
}

func schemaFromProto(r *pb.SchemaResponse) Schema {
	var s Schema
	for _, a := range r.GetAttributes() {
		s = append(s, schema.Attribute{
			Name:     a.GetName(),
			Type:     schema.AttrType(a.GetType()),
			Required: a.GetRequired(),
			Default:  valueFromProto(a.GetDefault()),
			Doc:      a.GetDoc(),
		})
	}
	return s
}

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
