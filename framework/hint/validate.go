package hint

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// Validator is implemented by a provider that checks its block beyond
// what its Schema says: relations between attributes (max_gpa above
// min_gpa), enumerations, ranges. `migrate` calls it for every hint
// block before anything starts and reports each problem at its
// attribute's file:line, with every other error of the job, and exits
// non-zero. It needs no Configure, must not touch the VM, and should
// answer quickly.
//
// Return nil when cfg is fine; otherwise one *schema.Problem per mistake
// (errors.Join them), each naming its attribute. Any other error counts
// as a problem of the whole block. A provider need not implement it:
// then, as with a plugin built before Validate existed (its RPC answers
// Unimplemented), nothing beyond the schema is checked. Configure should
// still refuse what Validate refuses: an embedder may skip Validate.
type Validator interface {
	Validate(ctx context.Context, cfg Config) error
}

// Validate asks p to validate cfg (cfg already fits p's Schema). A
// provider that does not implement Validator, or answers ErrNotSupported,
// has nothing to add: nil. Problems come back as *schema.Problem
// (schema.Problems lists them); other errors (the plugin is gone, ctx
// ended) as they are.
func Validate(ctx context.Context, p Provider, cfg Config) error {
	v, ok := p.(Validator)
	if !ok {
		return nil
	}
	err := v.Validate(ctx, cfg)
	if errors.Is(err, ErrNotSupported) {
		return nil
	}
	return err
}

// Validate implements Validator over gRPC: ErrNotSupported from a plugin
// that does not validate (or predates the RPC), the plugin's problems as
// *schema.Problem otherwise.
func (c *grpcClient) Validate(ctx context.Context, cfg Config) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	pcfg, err := schemaconv.ConfigToProto(cfg)
	if err != nil {
		return err
	}
	r, err := c.rpc.Validate(ctx, &schemapb.ValidateRequest{Config: pcfg}, recvLimit)
	if err != nil {
		return c.proc.Fail(ctx, err)
	}
	var errs []error
	for _, p := range r.GetProblems() {
		errs = append(errs, &schema.Problem{Attribute: p.GetAttribute(), Message: p.GetMessage()})
	}
	return errors.Join(errs...)
}

// Validate implements pb.ProviderServer: Unimplemented when the provider
// is no Validator (as a plugin built before the RPC answers), its
// problems otherwise.
func (s *grpcServer) Validate(ctx context.Context, req *schemapb.ValidateRequest) (*schemapb.ValidateResponse, error) {
	v, ok := s.impl.(Validator)
	if !ok {
		return nil, status.Error(codes.Unimplemented, fmt.Sprintf("%T does not validate its block", s.impl))
	}
	cfg, err := schemaconv.ConfigFromProto(req.GetConfig())
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	err = v.Validate(ctx, cfg)
	if err == nil {
		return &schemapb.ValidateResponse{}, nil
	}
	if errors.Is(err, ErrNotSupported) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, classes.ToStatus(err)
	}
	out := &schemapb.ValidateResponse{}
	for _, p := range schema.Problems(err) {
		out.Problems = append(out.Problems, &schemapb.ConfigProblem{Attribute: p.Attribute, Message: p.Message})
	}
	return out, nil
}

// Validate implements Validator: the plugin's own checks of its block
// (ErrNotSupported when it has none; hint.Validate treats that as nil).
func (p *Plugin) Validate(ctx context.Context, cfg Config) error {
	return p.exitErr(p.c.Validate(ctx, cfg))
}

// Validate implements Validator; a nil ValidateFunc is ErrNotSupported.
func (m *Mock) Validate(ctx context.Context, cfg Config) error {
	if m.ValidateFunc == nil {
		return ErrNotSupported
	}
	return m.ValidateFunc(ctx, cfg)
}

var (
	_ Validator = (*Plugin)(nil)
	_ Validator = (*Mock)(nil)
)
