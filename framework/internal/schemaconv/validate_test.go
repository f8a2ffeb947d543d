package schemaconv

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/schema"
	pb "github.com/ferryvm/ferry/framework/schema/proto"
)

// validatorFunc is a Validator.
type validatorFunc func(context.Context, schema.Config) error

func (f validatorFunc) Validate(ctx context.Context, cfg schema.Config) error { return f(ctx, cfg) }

// TestServeValidate: the plugin's end answers Unimplemented for no
// Validator and for the kind's notSupported, the class of a context's
// end or of a value that cannot travel, and problems otherwise.
func TestServeValidate(t *testing.T) {
	notSupported, gone := errors.New("not supported"), errors.New("gone")
	classes := errclass.NewTable(notSupported, schema.ErrBadConfig, gone)
	returns := func(err error) validatorFunc { return func(context.Context, schema.Config) error { return err } }
	good := &pb.ValidateRequest{Config: map[string]*pb.Value{"x": {Value: &pb.Value_BoolValue{BoolValue: true}}}}
	for _, c := range []struct {
		name     string
		impl     any
		req      *pb.ValidateRequest
		code     codes.Code
		problems int
	}{
		{"no Validator", struct{}{}, good, codes.Unimplemented, 0},
		{"not supported", returns(notSupported), good, codes.Unimplemented, 0},
		{"cancelled", returns(context.Canceled), good, codes.Canceled, 0},
		{"deadline", returns(context.DeadlineExceeded), good, codes.DeadlineExceeded, 0},
		{"empty value", returns(nil), &pb.ValidateRequest{Config: map[string]*pb.Value{"x": {}}}, codes.InvalidArgument, 0},
		{"fine", returns(nil), good, codes.OK, 0},
		{"problems", returns(errors.Join(schema.Problemf("x", "no"), errors.New("whole"))), good, codes.OK, 2},
	} {
		r, err := ServeValidate(context.Background(), c.impl, c.req, notSupported, classes)
		if status.Code(err) != c.code || len(r.GetProblems()) != c.problems {
			t.Errorf("%s: %d problems, %v; want %d, code %v", c.name, len(r.GetProblems()), err, c.problems, c.code)
		}
	}
}
