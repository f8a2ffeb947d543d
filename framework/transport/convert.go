package transport

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/schema"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// Conversions between the Go types and their protobuf messages. Enum
// values are the same numbers on both sides and pass through unchanged,
// invalid ones included: the implementation (or the job parser, for a
// schema) rejects them, exactly as it would in process.

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

func configToProto(c schema.Config) (map[string]*pb.Value, error) {
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

func configFromProto(m map[string]*pb.Value) (schema.Config, error) {
	if m == nil {
		return nil, nil
	}
	out := make(schema.Config, len(m))
	for k, v := range m {
		x := valueFromProto(v)
		if x == nil {
			return nil, fmt.Errorf("%w: attribute %q has no value", ErrBadConfig, k)
		}
		out[k] = x
	}
	return out, nil
}

func schemaToProto(s schema.Schema) (*pb.SchemaResponse, error) {
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

func schemaFromProto(r *pb.SchemaResponse) schema.Schema {
	var s schema.Schema
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

func runsToProto(runs []PageRun) []*pb.PageRun {
	out := make([]*pb.PageRun, len(runs))
	for i, r := range runs {
		out[i] = &pb.PageRun{First: r.First, Count: r.Count, Kind: pb.PageKind(r.Kind)}
	}
	return out
}

func runsFromProto(runs []*pb.PageRun) []PageRun {
	out := make([]PageRun, len(runs))
	for i, r := range runs {
		out[i] = PageRun{First: r.GetFirst(), Count: r.GetCount(), Kind: Kind(r.GetKind())}
	}
	return out
}

func statsToProto(s Stats) *pb.StatsResponse {
	return &pb.StatsResponse{BytesWire: s.BytesWire, PagesData: s.PagesData, PagesZero: s.PagesZero, Compressed: s.Compressed}
}

func statsFromProto(s *pb.StatsResponse) Stats {
	return Stats{BytesWire: s.GetBytesWire(), PagesData: s.GetPagesData(), PagesZero: s.GetPagesZero(), Compressed: s.GetCompressed()}
}

func credsToProto(c Credentials) *pb.Credentials {
	return &pb.Credentials{Certificate: c.Certificate, Key: c.Key, PeerRoots: c.PeerRoots, Plaintext: c.Plaintext}
}

func credsFromProto(c *pb.Credentials) Credentials {
	return Credentials{Certificate: c.GetCertificate(), Key: c.GetKey(), PeerRoots: c.GetPeerRoots(), Plaintext: c.GetPlaintext()}
}
