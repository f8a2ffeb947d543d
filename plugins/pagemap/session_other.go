//go:build !linux

package pagemap

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

type region struct{}

type resources struct{}

func (*resources) release() {}

func openSession(context.Context, config, hint.VM, hclog.Logger) (*session, error) {
	return nil, fmt.Errorf("pagemap: guest RAM files and /proc/PID/pagemap are Linux only: %w", hint.ErrNotSupported)
}

func (*session) classify(context.Context, *region, func(hint.Range) error) error {
	return hint.ErrNotSupported
}
