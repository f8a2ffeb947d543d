package vmm

import (
	"context"
	"os"

	"github.com/ferryvm/ferry/framework/hint"
)

// launchHint starts a provider plugin with the guest RAM files; stop ends
// its process.
func launchHint(ctx context.Context, path string, files []*os.File, v *VM) (hint.Provider, func(), error) {
	p, err := hint.Launch(ctx, path, files, hclogFor(v.log))
	if err != nil {
		return nil, nil, err
	}
	return p, p.Kill, nil
}
