package schemaconv

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	pb "github.com/ferryvm/ferry/framework/schema/proto"
)

// TestEnumsMatch: attribute types cross the wire as the same numbers.
func TestEnumsMatch(t *testing.T) {
	for _, c := range []struct{ got, want int32 }{
		{int32(pb.AttrType_ATTR_TYPE_STRING), int32(schema.TypeString)}, {int32(pb.AttrType_ATTR_TYPE_NUMBER), int32(schema.TypeNumber)},
		{int32(pb.AttrType_ATTR_TYPE_BOOL), int32(schema.TypeBool)}, {int32(pb.AttrType_ATTR_TYPE_DURATION), int32(schema.TypeDuration)},
		{int32(pb.AttrType_ATTR_TYPE_SIZE), int32(schema.TypeSize)},
	} {
		if c.got != c.want {
			t.Errorf("enum %d on the wire, %d in Go", c.got, c.want)
		}
	}
}

// TestRoundTrip: a schema and a configuration come back as they went,
// int as int64; values that cannot travel are ErrBadConfig.
func TestRoundTrip(t *testing.T) {
	s := schema.Schema{
		{Name: "a", Type: schema.TypeString, Required: true, Doc: "d"},
		{Name: "b", Type: schema.TypeSize, Default: int64(-1)},
		{Name: "c", Type: schema.TypeBool, Default: false},
		{Name: "d", Type: schema.AttrType(9)},
	}
	r, err := SchemaToProto(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := SchemaFromProto(r); !reflect.DeepEqual(got, s) {
		t.Errorf("schema %#v came back as %#v", s, got)
	}
	c, err := ConfigToProto(schema.Config{"a": "x", "b": 3, "c": true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ConfigFromProto(c)
	if want := (schema.Config{"a": "x", "b": int64(3), "c": true}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("config came back as %#v, %v", got, err)
	}
	if _, err := ConfigToProto(schema.Config{"x": 1.5}); !errors.Is(err, schema.ErrBadConfig) {
		t.Errorf("a float = %v; want ErrBadConfig", err)
	}
	if _, err := SchemaToProto(schema.Schema{{Name: "x", Default: []int{}}}); !errors.Is(err, schema.ErrBadConfig) {
		t.Errorf("a slice default = %v; want ErrBadConfig", err)
	}
	if _, err := ConfigFromProto(map[string]*pb.Value{"x": {}}); !errors.Is(err, schema.ErrBadConfig) {
		t.Errorf("an empty value = %v; want ErrBadConfig", err)
	}
	if c, err := ConfigToProto(nil); c != nil || err != nil {
		t.Errorf("nil config = %v, %v", c, err)
	}
}

// TestSchemaResponse: a plugin's error passes as it is; a schema whose
// default cannot travel is ErrBadConfig.
func TestSchemaResponse(t *testing.T) {
	boom := errors.New("boom")
	if _, err := SchemaResponse(nil, boom); err != boom {
		t.Errorf("plugin error = %v", err)
	}
	if _, err := SchemaResponse(schema.Schema{{Name: "x", Type: schema.TypeNumber, Default: 1.5}}, nil); !errors.Is(err, schema.ErrBadConfig) {
		t.Errorf("float default = %v; want ErrBadConfig", err)
	}
	if r, err := SchemaResponse(schema.Schema{{Name: "x", Type: schema.TypeBool}}, nil); err != nil || len(r.GetAttributes()) != 1 {
		t.Errorf("good schema = %v, %v", r, err)
	}
}

// TestProblemsRoundTrip: problems keep their attributes across the wire,
// an error that is no *schema.Problem is one of the whole block, none is
// nil, and more than schema.MaxProblems are counted, not kept.
func TestProblemsRoundTrip(t *testing.T) {
	if err := ProblemsFromProto(ProblemsToProto(nil)); err != nil {
		t.Errorf("no problems = %v", err)
	}
	err := errors.Join(schema.Problemf("streams", "must be from 1 to 16, not 17"), errors.New("the block as a whole"))
	got := schema.Problems(ProblemsFromProto(ProblemsToProto(err)))
	want := []schema.Problem{{Attribute: "streams", Message: "must be from 1 to 16, not 17"}, {Message: "the block as a whole"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %+v, want %+v", got, want)
	}
	many := &pb.ValidateResponse{}
	for range schema.MaxProblems + 5 {
		many.Problems = append(many.Problems, &pb.ConfigProblem{Attribute: "x", Message: "bad"})
	}
	got = schema.Problems(ProblemsFromProto(many))
	if len(got) != schema.MaxProblems || got[len(got)-1] != (schema.Problem{Message: "and 6 more problems"}) {
		t.Errorf("%d problems, the last %+v; want %d, the last counting 6 more", len(got), got[len(got)-1], schema.MaxProblems)
	}
}
