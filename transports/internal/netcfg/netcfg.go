package netcfg

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Bad returns an error wrapping transport.ErrBadConfig.
func Bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{transport.ErrBadConfig}, args...)...)
}

// Addrs parses listen (required) and connect (optional, "" if absent).
func Addrs(c schema.Config) (listen, connect string, err error) {
	v, ok := c["listen"]
	if !ok {
		return "", "", Bad(`listen is required: the address the destination listens on, e.g. "10.0.0.2:7070"`)
	}
	listen, ok = v.(string)
	if !ok {
		return "", "", Bad("listen must be a string, not %T", v)
	}
	if err := CheckAddr(listen); err != nil {
		return "", "", fmt.Errorf("listen: %w", err)
	}
	if v, ok := c["connect"]; ok {
		if connect, ok = v.(string); !ok {
			return "", "", Bad("connect must be a string, not %T", v)
		}
		if err := CheckAddr(connect); err != nil {
			return "", "", fmt.Errorf("connect: %w", err)
		}
	}
	return listen, connect, nil
}

// ConnectTimeout parses connect_timeout; def if absent.
func ConnectTimeout(c schema.Config, def time.Duration) (time.Duration, error) {
	v, ok := c["connect_timeout"]
	if !ok {
		return def, nil
	}
	d, ok := AsDuration(v)
	if !ok || d <= 0 {
		return 0, Bad(`connect_timeout must be a positive duration such as "10s", not %v`, v)
	}
	return d, nil
}

// CheckAddr accepts "host:port" with a fixed port: the source must know it.
func CheckAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Bad("address %q is not host:port: %v", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Bad("address %q needs a fixed port from 1 to 65535 (the source must know it)", s)
	}
	if strings.ContainsAny(host, " /") {
		return Bad("address %q has a bad host", s)
	}
	return nil
}

// AsInt accepts the integer types a Config may carry in process.
func AsInt(v any) (int64, bool) {
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

// AsDuration accepts int64 nanoseconds (the Config form), a
// time.Duration, or a string such as "10s".
func AsDuration(v any) (time.Duration, bool) {
	switch d := v.(type) {
	case time.Duration:
		return d, true
	case string:
		p, err := time.ParseDuration(d)
		return p, err == nil
	}
	n, ok := AsInt(v)
	return time.Duration(n), ok
}
