package rdma

import (
	"slices"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/netcfg"
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
	{Name: transport.CleartextPages, Type: schema.TypeBool, Default: false,
		Doc: "accept that page contents travel unencrypted (RDMA writes cannot be encrypted; messages and keys stay inside TLS); " +
			"required unless the job's credentials are plaintext already"},
}

// knownProviders are the providers this transport is written and tested for.
var knownProviders = []string{"verbs", "tcp", "sockets", "net"}

// badConfig is an error wrapping transport.ErrBadConfig.
var badConfig = netcfg.Bad

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
	var err error
	if cfg.listen, cfg.connect, err = netcfg.Addrs(c); err != nil {
		return cfg, err
	}
	if cfg.connectTimeout, err = netcfg.ConnectTimeout(c, defaultConnectTimeout); err != nil {
		return cfg, err
	}
	if v, ok := c[transport.CleartextPages]; ok {
		b, ok := v.(bool)
		if !ok {
			return cfg, badConfig("cleartext_pages must be true or false, not %v", v)
		}
		cfg.cleartextPages = b
	}
	return cfg, nil
}

// dialAddr is where the source connects: connect if set, else listen.
func (c config) dialAddr() string {
	if c.connect != "" {
		return c.connect
	}
	return c.listen
}
