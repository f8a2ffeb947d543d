package tcp

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/transports/internal/netcfg"
)

// Configuration defaults and limits.
const (
	defaultStreams        = 2
	maxStreams            = 16
	defaultConnectTimeout = 10 * time.Second
)

// config is a checked configuration block.
type config struct {
	listen         string
	connect        string // where the source dials; listen when empty
	streams        int
	compress       bool
	connectTimeout time.Duration
}

var configSchema = schema.Schema{
	{Name: "listen", Type: schema.TypeString, Required: true,
		Doc: `address the destination listens on and the source connects to, "host:port"`},
	{Name: "connect", Type: schema.TypeString,
		Doc: `address the source dials when it differs from listen (NAT, a proxy), "host:port"; default: listen`},
	{Name: "streams", Type: schema.TypeNumber, Default: int64(defaultStreams),
		Doc: "parallel TCP connections, 1..16; the destination follows the source's count"},
	{Name: "compress", Type: schema.TypeString, Default: "lz4",
		Doc: `"lz4" (per batch, skipped while pages do not compress) or "none"`},
	{Name: "connect_timeout", Type: schema.TypeDuration, Default: int64(defaultConnectTimeout),
		Doc: "how long the source keeps trying to connect, and the bound on each handshake"},
}

// badConfig is a problem of one attribute, of the class
// transport.ErrBadConfig (netcfg.Bad).
var badConfig = netcfg.Bad

// parseConfig checks a block against the schema; absent optional
// attributes take their defaults. It is the one place of the block's
// rules: Open runs it first, in either role, and Validate runs it alone.
// It reports every problem it finds, each naming its attribute (errors
// joined), not only the first.
func parseConfig(c schema.Config) (config, error) {
	cfg := config{streams: defaultStreams, compress: true, connectTimeout: defaultConnectTimeout}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			errs = append(errs, badConfig(k, "unknown attribute (the tcp transport knows listen, connect, streams, compress, connect_timeout)"))
		}
	}
	var err error
	cfg.listen, cfg.connect, err = netcfg.Addrs(c)
	errs = append(errs, err)
	if v, ok := c["streams"]; ok {
		n, ok := netcfg.AsInt(v)
		if !ok || n < 1 || n > maxStreams {
			errs = append(errs, badConfig("streams", "must be a number from 1 to %d, not %v", maxStreams, v))
		}
		cfg.streams = int(n)
	}
	if v, ok := c["compress"]; ok {
		switch v {
		case "lz4":
		case "none":
			cfg.compress = false
		default:
			errs = append(errs, badConfig("compress", `must be "lz4" or "none", not %v`, v))
		}
	}
	cfg.connectTimeout, err = netcfg.ConnectTimeout(c, defaultConnectTimeout)
	errs = append(errs, err)
	return cfg, errors.Join(errs...)
}
