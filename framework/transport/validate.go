package transport

import (
	"context"
	"errors"

	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// Validator is an optional interface of a Transport: it checks a block
// beyond what its Schema says (ranges, enumerations, address syntax,
// relations between attributes) without opening anything. `migrate`
// calls it for the job's transport block before anything starts (with
// -check too) and reports each problem at its attribute's file:line; the
// job then does not run.
//
// The job gives both VMMs the same block, and Validate is not told which
// role a side will take: it refuses what Open would refuse of the block
// in either role. It should run the very checks Open runs, not a copy of
// them. It sees neither the credentials, nor the RAM, nor the network:
// what depends on those (an address this host cannot bind or reach, a
// host name that does not resolve, credentials the block does not
// accept) is Open's to find. It needs no Open, must not change or
// depend on a session, may be called from any goroutine at any time, and
// should answer quickly.
//
// Return nil when cfg is fine; otherwise one *schema.Problem per mistake
// (errors.Join them), each naming its attribute. Any other error counts
// as a problem of the whole block. A transport need not implement it:
// then, as with a plugin built before Validate existed (its RPC answers
// Unimplemented), nothing beyond the schema is checked. Open must still
// refuse what Validate refuses: an embedder may skip Validate.
type Validator interface {
	Validate(ctx context.Context, cfg schema.Config) error
}

// Validate asks t to validate cfg (cfg already fits t's Schema). A
// transport that does not implement Validator, or answers
// ErrNotSupported, has nothing to add: nil. Problems come back as
// *schema.Problem (schema.Problems lists them); other errors (the plugin
// is gone, ctx ended) as they are.
func Validate(ctx context.Context, t Transport, cfg schema.Config) error {
	v, ok := t.(Validator)
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
// the hint kind's): ErrNotSupported from a plugin that does not validate
// (or predates the RPC), the plugin's problems as *schema.Problem
// otherwise, at most schema.MaxProblems of them (the last counting the
// rest); an answer over 1 MiB is an error of the call.
func (c *grpcClient) Validate(ctx context.Context, cfg schema.Config) error {
	return schemaconv.CallValidate(ctx, c.proc, c.rpc.Validate, cfg)
}

// Validate implements pb.TransportServer (schemaconv.ServeValidate, as
// the hint kind's): Unimplemented when the transport is no Validator (as
// a plugin built before the RPC answers), its problems otherwise. It
// takes no lane: Validator's calls may run beside every other call.
func (s *grpcServer) Validate(ctx context.Context, req *schemapb.ValidateRequest) (*schemapb.ValidateResponse, error) {
	return schemaconv.ServeValidate(ctx, s.impl, req, ErrNotSupported, classes)
}

// Validate implements Validator: the current plugin process's (started
// if none runs, as for Info and Schema) own checks of its block;
// ErrNotSupported when it has none.
func (l *launched) Validate(ctx context.Context, cfg schema.Config) error {
	return call0(l, ctx, true, func(c *grpcClient) error { return c.Validate(ctx, cfg) })
}

// Validate implements Validator; a nil ValidateFunc is ErrNotSupported.
func (m *Mock) Validate(ctx context.Context, cfg schema.Config) error {
	if m.ValidateFunc == nil {
		return ErrNotSupported
	}
	return m.ValidateFunc(ctx, cfg)
}

var (
	_ Validator = (*grpcClient)(nil)
	_ Validator = (*launched)(nil)
	_ Validator = (*Mock)(nil)
)
