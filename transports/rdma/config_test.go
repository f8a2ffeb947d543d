package rdma

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

func TestParseConfig(t *testing.T) {
	if err := configSchema.Validate(); err != nil {
		t.Fatalf("schema: %v", err)
	}
	for _, c := range []struct {
		name string
		cfg  schema.Config
		want string // "" for valid
	}{
		{"minimal", schema.Config{"provider": "tcp", "listen": "127.0.0.1:7070"}, ""},
		{"all", schema.Config{"provider": "verbs", "listen": "10.0.0.2:7070", "connect": "10.0.0.3:7070",
			"connect_timeout": int64(time.Second), "cleartext_pages": true}, ""},
		{"no provider", schema.Config{"listen": "127.0.0.1:7070"}, "provider: must be one of"},
		{"unknown provider", schema.Config{"provider": "psm3", "listen": "127.0.0.1:7070"}, "provider: must be one of"},
		{"no listen", schema.Config{"provider": "tcp"}, "listen: is required"},
		{"port 0", schema.Config{"provider": "tcp", "listen": "127.0.0.1:0"}, "fixed port"},
		{"bad connect", schema.Config{"provider": "tcp", "listen": "127.0.0.1:1", "connect": "x"}, "not host:port"},
		{"bad timeout", schema.Config{"provider": "tcp", "listen": "127.0.0.1:1", "connect_timeout": "-1s"}, "positive duration"},
		{"bad cleartext", schema.Config{"provider": "tcp", "listen": "127.0.0.1:1", "cleartext_pages": "yes"}, "true or false"},
		{"sockets", schema.Config{"provider": "sockets", "listen": "127.0.0.1:1"}, "unsafe_sockets = true"},
		{"sockets accepted", schema.Config{"provider": "sockets", "listen": "127.0.0.1:1", "unsafe_sockets": true}, ""},
		{"bad unsafe_sockets", schema.Config{"provider": "sockets", "listen": "127.0.0.1:1", "unsafe_sockets": "yes"}, "true or false"},
		{"unknown attribute", schema.Config{"provider": "tcp", "listen": "127.0.0.1:1", "streams": int64(2)}, "unknown attribute"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseConfig(c.cfg)
			if c.want == "" {
				if err != nil {
					t.Fatalf("parseConfig = %v", err)
				}
				if _, err := schema.Coerce(configSchema, c.cfg); err != nil {
					t.Fatalf("Coerce = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, transport.ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parseConfig = %v; want ErrBadConfig with %q", err, c.want)
			}
		})
	}
}

// TestOpenWithoutLibfabric: a build without cgo or libfabric opens
// nothing and says why (run with CGO_ENABLED=0 or -tags nolibfabric).
func TestOpenWithoutLibfabric(t *testing.T) {
	if fabric.Supported {
		t.Skip("built with libfabric; run with CGO_ENABLED=0 to check the stub")
	}
	sc, _, err := transport.MintCredentials(true)
	if err != nil {
		t.Fatal(err)
	}
	err = New(nil).Open(t.Context(), transport.OpenRequest{Role: transport.RoleSend,
		Config: schema.Config{"provider": "tcp", "listen": "127.0.0.1:7070"}, Credentials: sc})
	if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), "built without cgo/libfabric") {
		t.Fatalf("Open = %v; want ErrNotSupported naming the build", err)
	}
	t.Log(err)
}

// TestValidate: Validate is parseConfig alone (no libfabric needed): each
// problem names its attribute, all of them at once; cleartext_pages,
// which Open ties to the credentials, is not asked for.
func TestValidate(t *testing.T) {
	err := New(nil).Validate(t.Context(), schema.Config{"provider": "sockets", "listen": "not an address", "connect_timeout": "soon"})
	var attrs []string
	for _, p := range schema.Problems(err) {
		attrs = append(attrs, p.Attribute)
	}
	if want := []string{"listen", "connect_timeout", "provider"}; !slices.Equal(attrs, want) || !errors.Is(err, transport.ErrBadConfig) {
		t.Errorf("problems of %v (%v), want %v", attrs, err, want)
	}
	if err := New(nil).Validate(t.Context(), schema.Config{"provider": "verbs", "listen": "10.0.0.2:7070"}); err != nil {
		t.Errorf("a good block without cleartext_pages: %v", err)
	}
}
