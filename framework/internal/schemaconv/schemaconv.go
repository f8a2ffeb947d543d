// Package schemaconv converts framework/schema's Go types to and from
// their protobuf messages (framework/schema/proto), for the gRPC client
// and server shims of both plugin kinds.
//
//	schema.Schema  ── SchemaToProto ──►  SchemaResponse  ── SchemaFromProto ──►  schema.Schema
//	schema.Config  ── ConfigToProto ──►  map<string, Value> ── ConfigFromProto ──►  schema.Config
//	Validate's err ── ProblemsToProto ─►  ValidateResponse ─── ProblemsFromProto ─►  *schema.Problem, joined
//	(plugin)                              (gRPC)                                    (host)
//
// It also holds both ends of the Validate RPC, which the two kinds share
// but for their error classes (validate.go): ServeValidate on the
// plugin's side, CallValidate, with the host's bounds, on the host's.
//
// Enum values are the same numbers on both sides and pass through
// unchanged, invalid ones included: the plugin (or the job parser, for a
// schema) rejects them, exactly as it would in process. Values that cannot
// travel are errors wrapping schema.ErrBadConfig, which every plugin
// kind's ErrBadConfig matches.
package schemaconv

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/schema"
	pb "github.com/ferryvm/ferry/framework/schema/proto"
)

// ValueToProto converts one configuration value of attribute name: a
// string, int64 (or int) or bool.
func ValueToProto(name string, v any) (*pb.Value, error) {
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
	return nil, fmt.Errorf("%w: attribute %q: %v is a %T, want string, int64 or bool", schema.ErrBadConfig, name, v, v)
}

// ValueFromProto returns nil for a Value with nothing set.
func ValueFromProto(v *pb.Value) any {
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

// ConfigToProto converts a configuration block; nil stays nil.
func ConfigToProto(c schema.Config) (map[string]*pb.Value, error) {
	if c == nil {
		return nil, nil
	}
	out := make(map[string]*pb.Value, len(c))
	for k, v := range c {
		pv, err := ValueToProto(k, v)
		if err != nil {
			return nil, err
		}
		out[k] = pv
	}
	return out, nil
}

// ConfigFromProto converts a configuration block back; nil stays nil,
// and a value with nothing set is an error.
func ConfigFromProto(m map[string]*pb.Value) (schema.Config, error) {
	if m == nil {
		return nil, nil
	}
	out := make(schema.Config, len(m))
	for k, v := range m {
		x := ValueFromProto(v)
		if x == nil {
			return nil, fmt.Errorf("%w: attribute %q has no value", schema.ErrBadConfig, k)
		}
		out[k] = x
	}
	return out, nil
}

// SchemaToProto converts a plugin's schema for its Schema RPC.
func SchemaToProto(s schema.Schema) (*pb.SchemaResponse, error) {
	out := &pb.SchemaResponse{}
	for _, a := range s {
		pa := &pb.Attribute{Name: a.Name, Type: pb.AttrType(a.Type), Required: a.Required, Doc: a.Doc}
		if a.Default != nil {
			d, err := ValueToProto(a.Name, a.Default)
			if err != nil {
				return nil, fmt.Errorf("schema default: %w", err)
			}
			pa.Default = d
		}
		out.Attributes = append(out.Attributes, pa)
	}
	return out, nil
}

// SchemaResponse answers a Schema RPC with what a plugin's Schema
// returned: its error as it is, or the converted schema.
func SchemaResponse(s schema.Schema, err error) (*pb.SchemaResponse, error) {
	if err != nil {
		return nil, err
	}
	return SchemaToProto(s)
}

// SchemaFromProto converts a Schema RPC's answer back.
func SchemaFromProto(r *pb.SchemaResponse) schema.Schema {
	var s schema.Schema
	for _, a := range r.GetAttributes() {
		s = append(s, schema.Attribute{
			Name:     a.GetName(),
			Type:     schema.AttrType(a.GetType()),
			Required: a.GetRequired(),
			Default:  ValueFromProto(a.GetDefault()),
			Doc:      a.GetDoc(),
		})
	}
	return s
}
