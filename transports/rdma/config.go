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
	unsafeSockets  bool
}

var configSchema = schema.Schema{
	{Name: "provider", Type: schema.TypeString, Required: true,
		Doc: `libfabric provider: "verbs" (InfiniBand/RoCE through rdma-core), or the software providers "tcp", "net" ("sockets" with unsafe_sockets)`},
	{Name: "listen", Type: schema.TypeString, Required: true,
		Doc: `address the destination listens on for the authenticated control channel, "host:port"; the fabric endpoint listens on the same host`},
	{Name: "connect", Type: schema.TypeString,
		Doc: `address the source dials when it differs from listen, "host:port"; default: listen`},
	{Name: "connect_timeout", Type: schema.TypeDuration, Default: int64(defaultConnectTimeout),
		Doc: "how long the source's Open may take, dialing included (the source keeps trying to connect until then), the bound on each handshake, " +
			"and how long the destination waits for one try of the source's to finish its setup before it drops that try and waits for the next"},
	{Name: transport.CleartextPages, Type: schema.TypeBool, Default: false,
		Doc: "accept that page contents travel unencrypted (RDMA writes cannot be encrypted; messages and keys stay inside TLS); " +
			"required unless the job's credentials are plaintext already"},
	{Name: unsafeSockets, Type: schema.TypeBool, Default: false,
		Doc: `accept provider "sockets", which anyone who reaches the hosts can stall or crash (each of its endpoints listens on a port of its own and ` +
			`reads what any stranger sends there, before Ferry's authentication); only on a network no stranger reaches`},
}

// unsafeSockets is the attribute that accepts provider "sockets".
const unsafeSockets = "unsafe_sockets"

// knownProviders are the providers this transport is written and tested for.
var knownProviders = []string{"verbs", "tcp", "sockets", "net"}

// badConfig is an error wrapping transport.ErrBadConfig.
var badConfig = netcfg.Bad

// parseConfig checks a block against the schema.
func parseConfig(c schema.Config) (config, error) {
	cfg := config{connectTimeout: defaultConnectTimeout}
	for k := range c {
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			return cfg, badConfig("unknown attribute %q (the rdma transport knows provider, listen, connect, connect_timeout, cleartext_pages, unsafe_sockets)", k)
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
	if v, ok := c[unsafeSockets]; ok {
		b, ok := v.(bool)
		if !ok {
			return cfg, badConfig("unsafe_sockets must be true or false, not %v", v)
		}
		cfg.unsafeSockets = b
	}
	if cfg.provider == "sockets" && !cfg.unsafeSockets {
		return cfg, badConfig(`provider "sockets" can be stalled or crashed by anyone who reaches either host: each of its endpoints ` +
			`listens on a port of its own and reads what a stranger sends there before any authentication; use "tcp" or "net", ` +
			`or set unsafe_sockets = true on a network no stranger reaches`)
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
