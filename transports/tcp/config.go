package tcp

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
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

func badConfig(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{transport.ErrBadConfig}, args...)...)
}

// parseConfig checks a block against the schema; absent optional
// attributes take their defaults.
func parseConfig(c schema.Config) (config, error) {
	cfg := config{streams: defaultStreams, compress: true, connectTimeout: defaultConnectTimeout}
	for k := range c {
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			return cfg, badConfig("unknown attribute %q (the tcp transport knows listen, connect, streams, compress, connect_timeout)", k)
		}
	}
	v, ok := c["listen"]
	if !ok {
		return cfg, badConfig(`listen is required: the address the destination listens on, e.g. "10.0.0.2:7070"`)
	}
	s, ok := v.(string)
	if !ok {
		return cfg, badConfig("listen must be a string, not %T", v)
	}
	if err := checkAddr(s); err != nil {
		return cfg, err
	}
	cfg.listen = s
	if v, ok := c["connect"]; ok {
		s, ok := v.(string)
		if !ok {
			return cfg, badConfig("connect must be a string, not %T", v)
		}
		if err := checkAddr(s); err != nil {
			return cfg, fmt.Errorf("connect: %w", err)
		}
		cfg.connect = s
	}
	if v, ok := c["streams"]; ok {
		n, ok := asInt(v)
		if !ok || n < 1 || n > maxStreams {
			return cfg, badConfig("streams must be a number from 1 to %d, not %v", maxStreams, v)
		}
		cfg.streams = int(n)
	}
	if v, ok := c["compress"]; ok {
		switch v {
		case "lz4":
		case "none":
			cfg.compress = false
		default:
			return cfg, badConfig(`compress must be "lz4" or "none", not %v`, v)
		}
	}
	if v, ok := c["connect_timeout"]; ok {
		d, ok := asDuration(v)
		if !ok || d <= 0 {
			return cfg, badConfig(`connect_timeout must be a positive duration such as "10s", not %v`, v)
		}
		cfg.connectTimeout = d
	}
	return cfg, nil
}

func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return badConfig("listen %q is not host:port: %v", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return badConfig("listen %q needs a fixed port from 1 to 65535 (the source must know it)", s)
	}
	if strings.ContainsAny(host, " /") {
		return badConfig("listen %q has a bad host", s)
	}
	return nil
}

// asInt accepts the integer types a Config may carry in process.
func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	return 0, false
}

// asDuration accepts int64 nanoseconds (the Config form), a
// time.Duration, or a string such as "10s".
func asDuration(v any) (time.Duration, bool) {
	switch d := v.(type) {
	case time.Duration:
		return d, true
	case string:
		p, err := time.ParseDuration(d)
		return p, err == nil
	}
	n, ok := asInt(v)
	return time.Duration(n), ok
}
