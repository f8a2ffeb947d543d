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
