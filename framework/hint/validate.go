package hint

import (
	"context"
	"errors"

	"github.com/ferryvm/ferry/framework/internal/schemaconv"
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

// Validate implements Validator over gRPC (schemaconv.CallValidate, as
// the transport kind's): ErrNotSupported from a plugin that does not
// validate (or predates the RPC), the plugin's problems as
// *schema.Problem otherwise, at most schema.MaxProblems of them (the
// last counting the rest); an answer over 1 MiB is an error of the call.
func (c *grpcClient) Validate(ctx context.Context, cfg Config) error {
	return schemaconv.CallValidate(ctx, c.proc, c.rpc.Validate, cfg)
}

// Validate implements pb.ProviderServer (schemaconv.ServeValidate, as the
// transport kind's): Unimplemented when the provider is no Validator (as
// a plugin built before the RPC answers), its problems otherwise.
func (s *grpcServer) Validate(ctx context.Context, req *schemapb.ValidateRequest) (*schemapb.ValidateResponse, error) {
	return schemaconv.ServeValidate(ctx, s.impl, req, ErrNotSupported, classes)
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
