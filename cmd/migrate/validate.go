package main

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// validateTimeout bounds one provider's start and Validate, and one
// transport's Validate.
const validateTimeout = 20 * time.Second

// validateHint asks the hint provider at path to check its decoded block
// b (hint.Validator) and reports each problem at its attribute's
// file:line. A provider without checks of its own, or built before
// Validate existed, has nothing to add; one that cannot answer is one
// error at its block, so the job does not run with an unchecked block.
func validateHint(ctx context.Context, b *job.Plugin, path string) hcl.Diagnostics {
	cfg := maps.Clone(b.Config)
	delete(cfg, deadlineAttr.Name) // the engine's, not the provider's
	ctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
	if err != nil {
		return hcl.Diagnostics{b.ValidationFailed(err)}
	}
	defer p.Kill()
	return validated(b, hint.Validate(ctx, p, cfg))
}

// validateTransport asks the transport plugin tr (still running from its
// schema's answer) to check its decoded block b (transport.Validator),
// as validateHint asks a provider, and reports alike. -check does not
// know which VMM runs which role: the transport checks the block for
// both. What only Open finds (an address the destination cannot bind,
// a source that cannot reach it, credentials the block does not accept)
// is still found only when the VMMs open the transport.
func validateTransport(ctx context.Context, b *job.Plugin, tr transport.Transport) hcl.Diagnostics {
	ctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	return validated(b, transport.Validate(ctx, tr, b.Config))
}

// validated reports a plugin Validate's answer err for block b: each
// problem at its attribute's file:line, anything else (the plugin is
// gone, did not answer in time) as one error at the block.
func validated(b *job.Plugin, err error) hcl.Diagnostics {
	if err == nil {
		return nil
	}
	if !errors.Is(err, schema.ErrBadConfig) {
		return hcl.Diagnostics{b.ValidationFailed(err)}
	}
	return b.Problems(schema.Problems(err))
}
