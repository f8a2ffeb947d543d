package netcfg

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

func TestAddrs(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  schema.Config
		says string // "" for valid
	}{
		{"listen only", schema.Config{"listen": "127.0.0.1:7070"}, ""},
		{"both", schema.Config{"listen": "0.0.0.0:7070", "connect": "10.1.2.3:7070"}, ""},
		{"missing listen", schema.Config{}, "listen: is required"},
		{"listen not a string", schema.Config{"listen": int64(7)}, "must be a string"},
		{"listen without port", schema.Config{"listen": "10.0.0.1"}, "not host:port"},
		{"listen port 0", schema.Config{"listen": "10.0.0.1:0"}, "fixed port"},
		{"listen bad host", schema.Config{"listen": "a b:1"}, "bad host"},
		{"connect junk", schema.Config{"listen": "127.0.0.1:1", "connect": "x"}, "connect: "},
		{"both junk", schema.Config{"listen": "y", "connect": "x"}, `listen: "y" is not host:port`},
	} {
		_, _, err := Addrs(c.cfg)
		if c.says == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, transport.ErrBadConfig) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want ErrBadConfig saying %q", c.name, err, c.says)
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	for _, v := range []any{"1m", time.Minute, int64(time.Minute), int(time.Minute)} {
		if d, err := ConnectTimeout(schema.Config{"connect_timeout": v}, time.Second); err != nil || d != time.Minute {
			t.Errorf("%T %v: %v, %v", v, v, d, err)
		}
	}
	if d, err := ConnectTimeout(schema.Config{}, time.Second); err != nil || d != time.Second {
		t.Errorf("default: %v, %v", d, err)
	}
	for _, v := range []any{"soon", "-1s", int64(0), true} {
		if _, err := ConnectTimeout(schema.Config{"connect_timeout": v}, time.Second); !errors.Is(err, transport.ErrBadConfig) {
			t.Errorf("%v accepted: %v", v, err)
		}
	}
}

// TestConnectTimeoutAsJobFile: a connect_timeout written as a string
// is read by the job file's rule (schema.ParseDuration, which
// schema.Coerce and framework/job use), so a block means the same in
// a job file, in a Config handed to Open or Validate in process, and
// over gRPC: each string is taken by ConnectTimeout exactly when the
// schema's coercion of a duration takes it as positive, and as the same
// duration. Before, ConnectTimeout read it with time.ParseDuration:
// "500 ms" and " 10s ", which the job file takes, were refused.
func TestConnectTimeoutAsJobFile(t *testing.T) {
	sch := schema.Schema{{Name: "connect_timeout", Type: schema.TypeDuration}}
	for _, s := range []string{"500 ms", "1.5 s", "1 m30 s", " 10s ", "10s", "1m30s", "+2s",
		"1m 30s", "5 0ms", "10", "0", "-1s", "1e3", "soon", ""} {
		got, err := ConnectTimeout(schema.Config{"connect_timeout": s}, time.Second)
		c, cerr := schema.Coerce(sch, map[string]any{"connect_timeout": s})
		want, ok := time.Duration(0), cerr == nil
		if ok {
			want = time.Duration(c["connect_timeout"].(int64))
			ok = want > 0
		}
		switch {
		case ok && (err != nil || got != want):
			t.Errorf("%q: %v, %v; the job file's rule takes it as %v", s, got, err, want)
		case !ok && !errors.Is(err, transport.ErrBadConfig):
			t.Errorf("%q: %v, %v; the job file's rule refuses it (%v) or it is not positive", s, got, err, cerr)
		}
	}
}

// TestProblemsNameAttributes: each problem names its attribute, so that
// migrate points the job file at it, and problems of listen and connect
// come together.
func TestProblemsNameAttributes(t *testing.T) {
	_, _, err := Addrs(schema.Config{"listen": "not an address", "connect": int64(1)})
	got := schema.Problems(err)
	if len(got) != 2 || got[0].Attribute != "listen" || got[1].Attribute != "connect" ||
		!strings.Contains(got[0].Message, `"not an address" is not host:port`) || !strings.Contains(got[1].Message, "must be a string") {
		t.Errorf("problems %+v, want listen's and connect's", got)
	}
	_, err = ConnectTimeout(schema.Config{"connect_timeout": "soon"}, time.Second)
	if got := schema.Problems(err); len(got) != 1 || got[0].Attribute != "connect_timeout" {
		t.Errorf("connect_timeout: problems %+v", got)
	}
}
