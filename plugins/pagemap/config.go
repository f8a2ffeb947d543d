package pagemap

import (
	"fmt"
	"slices"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Classification methods (the `method` attribute).
const (
	// MethodAuto classifies each region by how the VMM maps it: file
	// holes for a MAP_SHARED mapping (exact), file holes confirmed by the
	// VMM's page tables for a MAP_PRIVATE one.
	MethodAuto = "auto"
	// MethodSeek uses the file's holes only (SEEK_DATA/SEEK_HOLE). It
	// refuses a region the VMM maps MAP_PRIVATE, where the file does not
	// see the guest's writes.
	MethodSeek = "seek"
	// MethodPagemap uses the file's holes and drops every hole page the
	// VMM has present or swapped in its page tables (/proc/PID/pagemap).
	// It needs the VMM's PID and the regions' host addresses.
	MethodPagemap = "pagemap"
)

var configSchema = hint.Schema{
	{Name: "method", Type: schema.TypeString, Default: MethodAuto,
		Doc: `"auto" (default), "seek" (file holes only; MAP_SHARED guest RAM) or "pagemap" (file holes confirmed by the VMM's /proc/PID/pagemap)`},
}

// config is a checked configuration block.
type config struct {
	method string
}

func badConfig(format string, args ...any) error {
	return fmt.Errorf("%w: pagemap: "+format, append([]any{hint.ErrBadConfig}, args...)...)
}

// parseConfig checks a block against the schema; absent attributes take
// their defaults.
func parseConfig(c hint.Config) (config, error) {
	cfg := config{method: MethodAuto}
	for k := range c {
		if k == "deadline" { // the engine's; tolerated if it is passed on
			continue
		}
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			return cfg, badConfig("unknown attribute %q (the pagemap provider knows method)", k)
		}
	}
	if v, ok := c["method"]; ok {
		switch v {
		case MethodAuto, MethodSeek, MethodPagemap:
			cfg.method = v.(string)
		default:
			return cfg, badConfig(`method must be "auto", "seek" or "pagemap", not %v`, v)
		}
	}
	return cfg, nil
}
