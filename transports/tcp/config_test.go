package tcp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

func TestConfig(t *testing.T) {
	good := func(mod func(schema.Config)) schema.Config {
		c := schema.Config{"listen": "127.0.0.1:7070"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	bad := []struct {
		name string
		cfg  schema.Config
		says string
	}{
		{"missing listen", schema.Config{}, "listen: is required"},
		{"listen not a string", good(func(c schema.Config) { c["listen"] = int64(7) }), "must be a string"},
		{"listen without port", good(func(c schema.Config) { c["listen"] = "10.0.0.1" }), "not host:port"},
		{"listen port 0", good(func(c schema.Config) { c["listen"] = "10.0.0.1:0" }), "fixed port"},
		{"unknown key", good(func(c schema.Config) { c["stream"] = int64(2) }), `stream: unknown attribute`},
		{"streams 0", good(func(c schema.Config) { c["streams"] = int64(0) }), "from 1 to 16"},
		{"streams 17", good(func(c schema.Config) { c["streams"] = int64(17) }), "from 1 to 16"},
		{"streams string", good(func(c schema.Config) { c["streams"] = "2" }), "from 1 to 16"},
		{"compress zstd", good(func(c schema.Config) { c["compress"] = "zstd" }), `"lz4" or "none"`},
		{"timeout negative", good(func(c schema.Config) { c["connect_timeout"] = int64(-1) }), "positive duration"},
		{"timeout junk", good(func(c schema.Config) { c["connect_timeout"] = "soon" }), "positive duration"},
	}
	for _, c := range bad {
		_, err := parseConfig(c.cfg)
		if !errors.Is(err, transport.ErrBadConfig) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want ErrBadConfig saying %q", c.name, err, c.says)
		}
	}
	cfg, err := parseConfig(good(nil))
	if err != nil || cfg.streams != 2 || !cfg.compress || cfg.connectTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = parseConfig(good(func(c schema.Config) {
		c["streams"], c["compress"], c["connect_timeout"] = int64(16), "none", "1m"
	}))
	if err != nil || cfg.streams != 16 || cfg.compress || cfg.connectTimeout != time.Minute {
		t.Fatalf("explicit: %+v %v", cfg, err)
	}
	// The schema's defaults are valid values of their own attributes.
	withDefaults := good(nil)
	for _, a := range configSchema {
		if a.Default != nil {
			withDefaults[a.Name] = a.Default
		}
	}
	if _, err := parseConfig(withDefaults); err != nil {
		t.Fatalf("schema defaults: %v", err)
	}
	// Open checks the config before it touches anything.
	err = New(nil).Open(context.Background(), transport.OpenRequest{Role: transport.RoleSend, Config: schema.Config{}})
	if !errors.Is(err, transport.ErrBadConfig) {
		t.Fatalf("Open with an empty config: %v", err)
	}
}

func TestInfoSchema(t *testing.T) {
	tr := New(nil)
	info, err := tr.Info(context.Background())
	if err != nil || info.Name != "tcp" {
		t.Fatalf("%+v %v", info, err)
	}
	s, err := tr.Schema(context.Background())
	if err != nil || len(s) != 5 || s[0].Name != "listen" || !s[0].Required {
		t.Fatalf("%+v %v", s, err)
	}
	if err := tr.SendPages(context.Background(), nil); err == nil {
		t.Fatal("SendPages without Open succeeded")
	}
}

func TestConnectAddress(t *testing.T) {
	cfg, err := parseConfig(schema.Config{"listen": "0.0.0.0:7070", "connect": "10.1.2.3:7070"})
	if err != nil || cfg.dialAddr() != "10.1.2.3:7070" {
		t.Fatalf("%+v %v", cfg, err)
	}
	cfg, err = parseConfig(schema.Config{"listen": "127.0.0.1:7070"})
	if err != nil || cfg.dialAddr() != "127.0.0.1:7070" {
		t.Fatalf("%+v %v", cfg, err)
	}
	if _, err := parseConfig(schema.Config{"listen": "127.0.0.1:7070", "connect": "nowhere"}); err == nil {
		t.Fatal("bad connect address accepted")
	}
}

// TestValidate: Validate refuses what Open refuses of a block, in either
// role, with the same problems (parseConfig, the one place of the
// rules), each naming its attribute; it opens nothing and needs no
// credentials. The four values a docs audit found passing migrate -check
// before (bd695fc) are among them.
func TestValidate(t *testing.T) {
	base := func(k string, v any) schema.Config {
		c := schema.Config{"listen": "127.0.0.1:7070"}
		if k != "" {
			c[k] = v
		}
		return c
	}
	for _, c := range []struct {
		name, attr, says string
		cfg              schema.Config
	}{
		{"streams 17", "streams", "must be a number from 1 to 16, not 17", base("streams", int64(17))},
		{"compress zstd", "compress", `must be "lz4" or "none", not zstd`, base("compress", "zstd")},
		{"compress true (HCL makes it a string)", "compress", `must be "lz4" or "none", not true`, base("compress", "true")},
		{"compress true", "compress", `must be "lz4" or "none", not true`, base("compress", true)},
		{"listen not an address", "listen", `"not an address" is not host:port`, schema.Config{"listen": "not an address"}},
		{"connect not an address", "connect", `"x" is not host:port`, base("connect", "x")},
		{"listen without a port", "listen", "fixed port", schema.Config{"listen": "10.0.0.1:0"}},
		{"timeout", "connect_timeout", "positive duration", base("connect_timeout", int64(-1))},
	} {
		err := New(nil).Validate(context.Background(), c.cfg)
		got := schema.Problems(err)
		if len(got) != 1 || got[0].Attribute != c.attr || !strings.Contains(got[0].Message, c.says) || !errors.Is(err, transport.ErrBadConfig) {
			t.Errorf("%s: problems %+v (%v), want one of %s saying %q", c.name, got, err, c.attr, c.says)
			continue
		}
		for _, role := range []transport.Role{transport.RoleSend, transport.RoleReceive} {
			oerr := New(nil).Open(context.Background(), transport.OpenRequest{Role: role, Config: c.cfg})
			if oerr == nil || oerr.Error() != "tcp transport: "+err.Error() {
				t.Errorf("%s: Open as %v: %v, want tcp transport: %v", c.name, role, oerr, err)
			}
		}
	}
	// Every problem at once, in the block's order of checks.
	err := New(nil).Validate(context.Background(), schema.Config{"listen": "not an address", "streams": int64(17), "compress": "zstd"})
	var attrs []string
	for _, p := range schema.Problems(err) {
		attrs = append(attrs, p.Attribute)
	}
	if !reflect.DeepEqual(attrs, []string{"listen", "streams", "compress"}) {
		t.Errorf("problems of %v, want listen, streams and compress: %v", attrs, err)
	}
	for _, good := range []schema.Config{base("", nil), {"listen": "[::1]:7070", "connect": "10.1.2.3:7070", "streams": int64(16),
		"compress": "none", "connect_timeout": int64(time.Second)}} {
		if err := New(nil).Validate(context.Background(), good); err != nil {
			t.Errorf("%v: %v", good, err)
		}
	}
}
