package hint

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ferryvm/ferry/framework/plugintest"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// TestWireCompatV1: the schema, configuration and Validate messages moved
// from ferry.hint.v1 to ferry.schema.v1 with the same fields, so the bytes
// are the same. testdata/v1-*.pb were written by the code before each move
// (v1-validate-*.pb by ferry.hint.v1's own ValidateRequest and
// ValidateResponse, at e526ea2);
// today's messages decode them into the same values and encode the same
// values to the same bytes, and the gRPC paths (the only names on the
// wire) did not change. A provider built before the move talks to a host
// built after it, and the other way round.
func TestWireCompatV1(t *testing.T) {
	num := func(n int64) *schemapb.Value {
		return &schemapb.Value{Value: &schemapb.Value_NumberValue{NumberValue: n}}
	}
	str := func(s string) *schemapb.Value {
		return &schemapb.Value{Value: &schemapb.Value_StringValue{StringValue: s}}
	}
	for file, want := range map[string]proto.Message{
		"testdata/v1-schema-response.pb": &schemapb.SchemaResponse{Attributes: []*schemapb.Attribute{
			{Name: "method", Type: schemapb.AttrType_ATTR_TYPE_STRING, Default: str("auto"), Doc: "how"},
			{Name: "chunk", Type: schemapb.AttrType_ATTR_TYPE_SIZE, Required: true},
		}},
		"testdata/v1-configure-request.pb": &pb.ConfigureRequest{
			Config: map[string]*schemapb.Value{"method": str("seek"), "chunk": num(1 << 20),
				"scan": {Value: &schemapb.Value_BoolValue{BoolValue: true}}},
			Vm:           &pb.VM{Id: "vm0", Pid: 1234, Ram: []*pb.Region{{Gpa: 0, Size: 1 << 20, HostAddr: 0x7f0000000000}}},
			HostBrokerId: 7,
		},
		"testdata/v1-validate-request.pb": &schemapb.ValidateRequest{Config: map[string]*schemapb.Value{
			"min_gpa": num(0x2000), "mode": str("slow"), "broken": {Value: &schemapb.Value_BoolValue{BoolValue: true}}}},
		"testdata/v1-validate-response.pb": &schemapb.ValidateResponse{Problems: []*schemapb.ConfigProblem{
			{Attribute: "max_gpa", Message: "must be above min_gpa (0x2000)"}, {Message: "the block as a whole"}}},
	} {
		plugintest.CheckGolden(t, file, want)
	}
	plugintest.CheckMethods(t, pb.Provider_ServiceDesc, "ferry.hint.v1.Provider", []string{"Info", "Schema", "Configure", "Close", "Validate"}, []string{"Hints"})
	plugintest.CheckMethods(t, pb.Host_ServiceDesc, "ferry.hint.v1.Host", []string{"BalloonDone", "CMMABits"}, []string{"BalloonHint"})
}
