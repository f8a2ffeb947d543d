package netcfg

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
)

// Bad returns a problem with the block's attribute attr ("" for the
// block as a whole): a *schema.Problem, "attr: message", whose class is
// transport.ErrBadConfig (errors.Is; every ErrBadConfig is one class).
// A transport's Validate hands it to the host as it is, so `migrate`
// points the job file at attr.
func Bad(attr, format string, args ...any) error {
	return schema.Problemf(attr, format, args...)
}

// Addrs parses listen (required) and connect (optional, "" if absent),
// and reports the problems of both.
func Addrs(c schema.Config) (listen, connect string, err error) {
	var lerr, cerr error
	if _, ok := c["listen"]; !ok {
		lerr = Bad("listen", `is required: the address the destination listens on, e.g. "10.0.0.2:7070"`)
	} else {
		listen, lerr = addr(c, "listen")
	}
	if _, ok := c["connect"]; ok {
		connect, cerr = addr(c, "connect")
	}
	return listen, connect, errors.Join(lerr, cerr)
}

// addr parses the address attribute attr, which c has.
func addr(c schema.Config, attr string) (string, error) {
	s, ok := c[attr].(string)
	if !ok {
		return "", Bad(attr, "must be a string, not %T", c[attr])
	}
	return s, CheckAddr(attr, s)
}

// ConnectTimeout parses connect_timeout; def if absent.
func ConnectTimeout(c schema.Config, def time.Duration) (time.Duration, error) {
	v, ok := c["connect_timeout"]
	if !ok {
		return def, nil
	}
	d, ok := AsDuration(v)
	if !ok || d <= 0 {
		return 0, Bad("connect_timeout", `must be a positive duration such as "10s", not %v`, v)
	}
	return d, nil
}

// CheckAddr accepts "host:port" with a fixed port (the source must know
// it) as the value of attribute attr. It looks at the text only: whether
// the host resolves, or this host can bind or reach it, is Open's to
// find.
func CheckAddr(attr, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Bad(attr, "%q is not host:port: %v", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Bad(attr, "%q needs a fixed port from 1 to 65535 (the source must know it)", s)
	}
	if strings.ContainsAny(host, " /") {
		return Bad(attr, "%q has a bad host", s)
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
// time.Duration, or a string as a job file writes one ("10s", "500 ms":
// schema.ParseDuration, the rule framework/job and schema.Coerce read
// durations by), so a string means the same here as in a job file; a
// negative one is refused there, as here. Before, a string was read by
// time.ParseDuration, which refused "500 ms" and " 10s ".
func AsDuration(v any) (time.Duration, bool) {
	switch d := v.(type) {
	case time.Duration:
		return d, true
	case string:
		p, err := schema.ParseDuration(d)
		return p, err == nil
	}
	n, ok := AsInt(v)
	return time.Duration(n), ok
}
