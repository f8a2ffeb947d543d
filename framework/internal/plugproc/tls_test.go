package plugproc

import (
	"bytes"
	"crypto/tls"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestServerTLS: the plugin's side of the pairing takes its certificate
// from the pipe and trusts the host's; a missing pipe means a host from
// before the pairing (nil: go-plugin's AutoMTLS); anything else wrong is
// an error, never a channel that trusts nobody or anybody.
func TestServerTLS(t *testing.T) {
	pair, err := mintPairing()
	if err != nil {
		t.Fatal(err)
	}
	pipeWith := func(t *testing.T, b []byte) string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		go func() { w.Write(b); w.Close() }()
		return strconv.Itoa(int(r.Fd()))
	}
	for _, tc := range []struct {
		name string
		fd   func(t *testing.T) string
		host string
		want string // in the error; "" for success, "nil" for no config
	}{
		{"paired", func(t *testing.T) string { return pipeWith(t, pair.pluginPEM) }, string(pair.hostPEM), ""},
		{"no pipe", func(*testing.T) string { return "" }, string(pair.hostPEM), "nil"},
		{"not a number", func(*testing.T) string { return "x" }, string(pair.hostPEM), "want the descriptor"},
		{"stdin", func(*testing.T) string { return "0" }, string(pair.hostPEM), "want the descriptor"},
		{"garbage", func(t *testing.T) string { return pipeWith(t, []byte("not pem")) }, string(pair.hostPEM), "certificate pipe"},
		{"too long", func(t *testing.T) string { return pipeWith(t, bytes.Repeat([]byte("A"), maxTLSPEM+1)) }, string(pair.hostPEM), "more than"},
		{"no host certificate", func(t *testing.T) string { return pipeWith(t, pair.pluginPEM) }, "", "cannot be authenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tlsEnv, tc.fd(t))
			t.Setenv(clientCertEnv, tc.host)
			cfg, err := ServerTLS()
			switch tc.want {
			case "":
				if err != nil || cfg == nil || len(cfg.Certificates) != 1 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
					t.Fatalf("ServerTLS = %+v, %v", cfg, err)
				}
			case "nil":
				if err != nil || cfg != nil {
					t.Fatalf("ServerTLS = %v, %v; want nil, nil", cfg, err)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ServerTLS error %v, want %q in it", err, tc.want)
				}
			}
		})
	}
}
