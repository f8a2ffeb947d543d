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
)

// validateTimeout bounds one provider's start and Validate.
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
	err = hint.Validate(ctx, p, cfg)
	if err == nil {
		return nil
	}
	if !errors.Is(err, schema.ErrBadConfig) {
		return hcl.Diagnostics{b.ValidationFailed(err)}
	}
	return b.Problems(schema.Problems(err))
}
