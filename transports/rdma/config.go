package rdma

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

const defaultConnectTimeout = 10 * time.Second

// config is a checked configuration block.
type config struct {
	provider       string
	listen         string // control channel address of the destination
	connect        string // where the source dials; listen when empty
	connectTimeout time.Duration
	cleartextPages bool
}

var configSchema = schema.Schema{
	{Name: "provider", Type: schema.TypeString, Required: true,
		Doc: `libfabric provider: "verbs" (InfiniBand/RoCE through rdma-core), or the software providers "tcp", "sockets", "net"`},
	{Name: "listen", Type: schema.TypeString, Required: true,
		Doc: `address the destination listens on for the authenticated control channel, "host:port"; the fabric endpoint listens on the same host`},
	{Name: "connect", Type: schema.TypeString,
		Doc: `address the source dials when it differs from listen, "host:port"; default: listen`},
	{Name: "connect_timeout", Type: schema.TypeDuration, Default: int64(defaultConnectTimeout),
		Doc: "how long the source keeps trying to connect, and the bound on each handshake"},
	{Name: "cleartext_pages", Type: schema.TypeBool, Default: false,
		Doc: "accept that page contents travel unencrypted (RDMA writes cannot be encrypted; messages and keys stay inside TLS); " +
			"required unless the job's credentials are plaintext already"},
}

// knownProviders are the providers this transport is written and tested for.
var knownProviders = []string{"verbs", "tcp", "sockets", "net"}

func badConfig(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{transport.ErrBadConfig}, args...)...)
}

// parseConfig checks a block against the schema.
func parseConfig(c schema.Config) (config, error) {
	cfg := config{connectTimeout: defaultConnectTimeout}
	for k := range c {
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			return cfg, badConfig("unknown attribute %q (the rdma transport knows provider, listen, connect, connect_timeout, cleartext_pages)", k)
		}
	}
	p, ok := c["provider"].(string)
	if !ok || !slices.Contains(knownProviders, p) {
		return cfg, badConfig("provider must be one of %q, not %v (fi_info -l lists what libfabric has here)", knownProviders, c["provider"])
	}
	cfg.provider = p
	l, ok := c["listen"].(string)
	if !ok {
		return cfg, badConfig(`listen is required: the address the destination listens on, e.g. "10.0.0.2:7070"`)
	}
	if err := checkAddr(l); err != nil {
		return cfg, err
	}
	cfg.listen = l
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
	if v, ok := c["connect_timeout"]; ok {
		d, ok := asDuration(v)
		if !ok || d <= 0 {
			return cfg, badConfig(`connect_timeout must be a positive duration such as "10s", not %v`, v)
		}
		cfg.connectTimeout = d
	}
	if v, ok := c["cleartext_pages"]; ok {
		b, ok := v.(bool)
		if !ok {
			return cfg, badConfig("cleartext_pages must be true or false, not %v", v)
		}
		cfg.cleartextPages = b
	}
	return cfg, nil
}

func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return badConfig("address %q is not host:port: %v", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return badConfig("address %q needs a fixed port from 1 to 65535 (the source must know it)", s)
	}
	return nil
}

func asDuration(v any) (time.Duration, bool) {
	switch d := v.(type) {
	case time.Duration:
		return d, true
	case int64:
		return time.Duration(d), true
	case int:
		return time.Duration(d), true
	case string:
		p, err := time.ParseDuration(d)
		return p, err == nil
	}
	return 0, false
}

// dialAddr is where the source connects: connect if set, else listen.
func (c config) dialAddr() string {
	if c.connect != "" {
		return c.connect
	}
	return c.listen
}
