package schemaconv

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/schema"
	pb "github.com/ferryvm/ferry/framework/schema/proto"
)

// MaxValidateResponse bounds the answer of a Validate RPC the host
// accepts, in bytes (go-plugin's connections allow 2 GiB by default).
// A larger answer is an error of the call (gRPC's ResourceExhausted), not
// problems: the host does not read it. What it does not bound: the
// plugin's time to answer, which is the caller's ctx's.
const MaxValidateResponse = 1 << 20

// Validator is the one method of hint.Validator and transport.Validator
// (hint.Config is schema.Config), for the two ends below.
type Validator interface {
	Validate(ctx context.Context, cfg schema.Config) error
}

// ValidateRPC is a kind's generated client method for Validate
// (pb.ProviderClient.Validate, pb.TransportClient.Validate).
type ValidateRPC func(ctx context.Context, req *pb.ValidateRequest, opts ...grpc.CallOption) (*pb.ValidateResponse, error)

// CallValidate is the host's end of a Validate RPC to the plugin process
// proc: nil when the plugin finds cfg fine, its problems as
// *schema.Problem (errors.Join'ed; ProblemsFromProto bounds their number
// at schema.MaxProblems) otherwise, and an error of its class (proc.Fail)
// when the call fails: notSupported of the kind when the plugin does not
// validate or predates the RPC (Unimplemented), the kind's plugin-gone
// class, ctx's end, an answer over MaxValidateResponse.
func CallValidate(ctx context.Context, proc *errclass.Process, rpc ValidateRPC, cfg schema.Config) error {
	if err := proc.Alive(); err != nil {
		return err
	}
	pcfg, err := ConfigToProto(cfg)
	if err != nil {
		return err
	}
	r, err := rpc(ctx, &pb.ValidateRequest{Config: pcfg}, grpc.MaxCallRecvMsgSize(MaxValidateResponse))
	if err != nil {
		return proc.Fail(ctx, err)
	}
	return ProblemsFromProto(r)
}

// ServeValidate is the plugin's end of a Validate RPC for impl, the
// kind's implementation: Unimplemented when impl is no Validator (as a
// plugin built before the RPC answers); impl's error as a status of its
// class (classes) when it is notSupported (the kind's ErrNotSupported)
// or ctx's end; its problems otherwise (ProblemsToProto: no more than
// CallValidate takes, in number and in bytes, the last counting any it
// cut).
func ServeValidate(ctx context.Context, impl any, req *pb.ValidateRequest, notSupported error, classes errclass.Table) (*pb.ValidateResponse, error) {
	v, ok := impl.(Validator)
	if !ok {
		return nil, status.Error(codes.Unimplemented, fmt.Sprintf("%T does not validate its block", impl))
	}
	cfg, err := ConfigFromProto(req.GetConfig())
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	err = v.Validate(ctx, cfg)
	if errors.Is(err, notSupported) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, classes.ToStatus(err)
	}
	return ProblemsToProto(err), nil
}

// answerBudget is the bytes of problems ProblemsToProto sends: the
// host's MaxValidateResponse less room for the problem counting the
// rest (a few dozen bytes) with a wide margin.
const answerBudget = MaxValidateResponse - 4<<10

// ProblemsToProto answers a Validate RPC with the problems in err, a
// plugin Validate's error (schema.Problems: each *schema.Problem as it
// is, any other error one of the whole block, an error that joins none
// one of its text); nil answers none. Text that is not UTF-8 is sent
// with U+FFFD for each run of bad bytes (validUTF8), as a proto string
// must be. It sends what CallValidate takes: at most schema.MaxProblems
// problems (schema.Problems, cut by schema.Bound) and answerBudget bytes
// of them as sent, in err's order; when it cuts, the last problem
// (schema.MoreProblems) counts the problems not sent, as
// ProblemsFromProto's does. What it cannot do: send part of a problem;
// one larger than the budget is only counted.
func ProblemsToProto(err error) *pb.ValidateResponse {
	out := &pb.ValidateResponse{}
	ps, total := schema.Problems(err), schema.CountProblems(err)
	if total > len(ps) {
		ps = ps[:len(ps)-1] // Bound's count of the rest: counted again below, after the budget's cut
	}
	size := 0
	for _, p := range ps {
		cp := &pb.ConfigProblem{Attribute: validUTF8(p.Attribute), Message: validUTF8(p.Message)}
		n := problemSize(cp)
		if size+n > answerBudget {
			break
		}
		size += n
		out.Problems = append(out.Problems, cp)
	}
	if cut := total - len(out.Problems); cut > 0 {
		more := schema.MoreProblems(cut)
		out.Problems = append(out.Problems, &pb.ConfigProblem{Attribute: more.Attribute, Message: more.Message})
	}
	return out
}

// validUTF8 is s as a proto string field may carry it (proto.Marshal
// refuses one that is not UTF-8): each run of bytes that is not UTF-8
// becomes U+FFFD (3 bytes, so s may grow). What it cannot do: keep the
// bytes it replaces.
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// problemSize is the bytes cp takes in a ValidateResponse: its field's
// tag and length and its own encoding.
func problemSize(cp *pb.ConfigProblem) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(cp))
}

// ProblemsFromProto converts a Validate RPC's answer back: nil for no
// problems, else each as a *schema.Problem, errors.Join'ed. An answer
// of more than schema.MaxProblems is cut as schema.Problems cuts
// (schema.Bound): the first MaxProblems-1 and a last problem of the
// whole block counting the rest ("and N more problems").
func ProblemsFromProto(r *pb.ValidateResponse) error {
	ps := r.GetProblems()
	kept := make([]schema.Problem, 0, min(len(ps), schema.MaxProblems))
	for _, p := range ps[:min(len(ps), schema.MaxProblems)] {
		kept = append(kept, schema.Problem{Attribute: p.GetAttribute(), Message: p.GetMessage()})
	}
	kept = schema.Bound(kept, len(ps))
	errs := make([]error, len(kept))
	for i := range kept {
		errs[i] = &kept[i]
	}
	return errors.Join(errs...)
}
