package rdma

import (
	"errors"
	"maps"
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
			"and how long the destination waits for one try of the source's to finish its setup before it drops that try and waits for the next; " +
			"neither side counts its own registration of guest RAM, nor libfabric's first initialisation in its plugin process (waited for before the bound starts, " +
			"bounded only by the Open's context), but a source counts the destination's (it waits for them like a slow network)"},
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

// badConfig is a problem of one attribute, of the class
// transport.ErrBadConfig (netcfg.Bad).
var badConfig = netcfg.Bad

// parseConfig checks a block against the schema. It is the one place of
// the block's rules: Open runs it first, in either role, and Validate
// runs it alone. It reports every problem it finds, each naming its
// attribute (errors joined), not only the first. The rule that ties
// cleartext_pages to the credentials is Open's (it needs them).
func parseConfig(c schema.Config) (config, error) {
	cfg := config{connectTimeout: defaultConnectTimeout}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if !slices.ContainsFunc(configSchema, func(a schema.Attribute) bool { return a.Name == k }) {
			errs = append(errs, badConfig(k, "unknown attribute (the rdma transport knows provider, listen, connect, connect_timeout, cleartext_pages, unsafe_sockets)"))
		}
	}
	p, ok := c["provider"].(string)
	if !ok || !slices.Contains(knownProviders, p) {
		errs = append(errs, badConfig("provider", "must be one of %q, not %v (fi_info -l lists what libfabric has here)", knownProviders, c["provider"]))
	}
	cfg.provider = p
	var err error
	cfg.listen, cfg.connect, err = netcfg.Addrs(c)
	errs = append(errs, err)
	cfg.connectTimeout, err = netcfg.ConnectTimeout(c, defaultConnectTimeout)
	errs = append(errs, err)
	for _, b := range []struct {
		attr string
		to   *bool
	}{{transport.CleartextPages, &cfg.cleartextPages}, {unsafeSockets, &cfg.unsafeSockets}} {
		if v, ok := c[b.attr]; ok {
			if *b.to, ok = v.(bool); !ok {
				errs = append(errs, badConfig(b.attr, "must be true or false, not %v", v))
			}
		}
	}
	if cfg.provider == "sockets" && !cfg.unsafeSockets {
		errs = append(errs, badConfig("provider", `"sockets" can be stalled or crashed by anyone who reaches either host: each of its endpoints `+
			`listens on a port of its own and reads what a stranger sends there before any authentication; use "tcp" or "net", `+
			`or set unsafe_sockets = true on a network no stranger reaches`))
	}
	return cfg, errors.Join(errs...)
}

// dialAddr is where the source connects: connect if set, else listen.
func (c config) dialAddr() string {
	if c.connect != "" {
		return c.connect
	}
	return c.listen
}
