package schemaconv

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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

// TestProblemsToProtoBounds: the plugin's answer holds at most
// schema.MaxProblems problems and fits MaxValidateResponse when
// encoded; what it cuts, the last problem counts (schema.MoreProblems),
// and what it does not cut it sends whole and uncounted.
func TestProblemsToProtoBounds(t *testing.T) {
	problems := func(n, size int) error {
		var errs []error
		for range n {
			errs = append(errs, schema.Problemf("x", "%s", strings.Repeat("y", size)))
		}
		return errors.Join(errs...)
	}
	// A problem of 2 KiB takes 2057 bytes: its field's tag and 2-byte
	// length, then attribute "x" (3 bytes) and the message (1+2+2048).
	const fit2K = answerBudget / 2057
	for _, c := range []struct {
		name       string
		err        error
		sent, more int // problems sent whole; counted in the last (0: no count)
	}{
		{"exactly MaxProblems", problems(schema.MaxProblems, 10), schema.MaxProblems, 0},
		{"one more", problems(schema.MaxProblems+1, 10), schema.MaxProblems - 1, 2},
		{"one of 2 MiB", problems(1, 2<<20), 0, 1},
		{"a small one behind one of 2 MiB", errors.Join(problems(1, 2<<20), errors.New("small")), 0, 2},
		{"1000 of 2 KiB", problems(schema.MaxProblems, 2<<10), fit2K, schema.MaxProblems - fit2K},
		{"600 of 1 KiB", problems(600, 1<<10), 600, 0},
	} {
		r := ProblemsToProto(c.err)
		ps := r.GetProblems()
		if size := proto.Size(r); size > MaxValidateResponse || len(ps) > schema.MaxProblems {
			t.Errorf("%s: %d problems in %d bytes; want at most %d in %d", c.name, len(ps), size, schema.MaxProblems, MaxValidateResponse)
		}
		sent := len(ps)
		if c.more > 0 {
			sent--
			if last := ps[len(ps)-1]; last.GetAttribute() != "" || last.GetMessage() != schema.MoreProblems(c.more).Message {
				t.Errorf("%s: the last problem is %q: %.60q; want one counting %d more", c.name, last.GetAttribute(), last.GetMessage(), c.more)
			}
		}
		if sent != c.sent {
			t.Errorf("%s: %d problems sent whole, want %d", c.name, sent, c.sent)
		}
	}
}

// TestProblemsToProtoText: what ProblemsToProto answers marshals (a
// proto string must be UTF-8), each run of bytes that is not UTF-8 sent
// as U+FFFD; an error that joins none is a problem of its text.
func TestProblemsToProtoText(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"not UTF-8", errors.Join(schema.Problemf("a\xff", "b\xfe\xfdc"), errors.New("\xc3")), []string{"a\uFFFD", "b\uFFFDc", "", "\uFFFD"}},
		{"joins none", joinsNone{}, []string{"", "joins none"}},
	} {
		r := ProblemsToProto(c.err)
		var got []string
		for _, p := range r.GetProblems() {
			got = append(got, p.GetAttribute(), p.GetMessage())
		}
		if _, err := proto.Marshal(r); err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: %q (marshal: %v); want %q", c.name, got, err, c.want)
		}
	}
}

// joinsNone is an error whose Unwrap() []error is empty.
type joinsNone struct{}

func (joinsNone) Error() string   { return "joins none" }
func (joinsNone) Unwrap() []error { return nil }
