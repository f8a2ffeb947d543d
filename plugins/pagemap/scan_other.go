//go:build linux && !(amd64 || arm64 || s390x || riscv64 || loong64)

package pagemap

import (
	"context"
	"errors"

	"github.com/ferryvm/ferry/framework/hint"
)

var errScanUnsupported = errors.New("PAGEMAP_SCAN is not wired up for this architecture")

type scanner struct{}

func newScanner(int) *scanner { return &scanner{} }

func (*scanner) populated(context.Context, uint64, uint64, uint64) ([]hint.Range, error) {
	return nil, errScanUnsupported
}
