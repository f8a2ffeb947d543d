package transport

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ferryvm/ferry/framework/plugintest"

	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// TestWireCompatV1: the schema and configuration messages moved from
// ferry.transport.v1 to ferry.schema.v1 with the same fields, so the
// bytes are the same. testdata/v1-*.pb were written by the code before
// the move; today's messages decode them into the same values and encode
// the same values to the same bytes, and the gRPC paths (the only names
// on the wire) did not change. A plugin built before the move talks to a
// host built after it, and the other way round.
func TestWireCompatV1(t *testing.T) {
	num := func(n int64) *schemapb.Value {
		return &schemapb.Value{Value: &schemapb.Value_NumberValue{NumberValue: n}}
	}
	str := func(s string) *schemapb.Value {
		return &schemapb.Value{Value: &schemapb.Value_StringValue{StringValue: s}}
	}
	boo := func(b bool) *schemapb.Value { return &schemapb.Value{Value: &schemapb.Value_BoolValue{BoolValue: b}} }
	for file, want := range map[string]proto.Message{
		"testdata/v1-schema-response.pb": &schemapb.SchemaResponse{Attributes: []*schemapb.Attribute{
			{Name: "listen", Type: schemapb.AttrType_ATTR_TYPE_STRING, Required: true, Doc: "where"},
			{Name: "streams", Type: schemapb.AttrType_ATTR_TYPE_NUMBER, Default: num(-4)},
			{Name: "tls", Type: schemapb.AttrType_ATTR_TYPE_BOOL, Default: boo(true)},
			{Name: "timeout", Type: schemapb.AttrType_ATTR_TYPE_DURATION, Default: num(1e9)},
			{Name: "window", Type: schemapb.AttrType_ATTR_TYPE_SIZE, Default: str("1GiB")},
		}},
		"testdata/v1-open-request.pb": &pb.OpenRequest{
			Role:        pb.Role_ROLE_RECEIVE,
			Config:      map[string]*schemapb.Value{"listen": str("127.0.0.1:7000"), "streams": num(8), "tls": boo(false)},
			Ram:         []*pb.RAMRegion{{Gpa: 0x100000, Size: 1 << 30, File: 1, Offset: 4096}},
			Credentials: &pb.Credentials{Certificate: []byte("cert"), Key: []byte("key"), PeerRoots: []byte("roots"), Plaintext: true},
		},
	} {
		plugintest.CheckGolden(t, file, want)
	}
	plugintest.CheckMethods(t, pb.Transport_ServiceDesc, "ferry.transport.v1.Transport",
		// The first nine since v1, unchanged; API 3 appended the urgent path's four, and
		// API 8 Validate, which older plugins answer Unimplemented (validate.go).
		[]string{"Info", "Schema", "Open", "SendPages", "Flush", "SendMessage", "RecvMessage", "Stats", "Close",
			"SendUrgent", "RecvUrgent", "SendPagesUrgent", "Landed", "Validate"}, nil)
}
