package hinttest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Factory makes a fresh, unconfigured provider for one test. vm is the
// guest the suite will configure it with (a factory that starts a plugin
// process hands vm.Files to hint.Launch); host is the Host the suite will
// pass to Configure, for factories that want to watch or wrap it. The
// factory registers its own cleanup (t.Cleanup: Kill a launched plugin);
// the suite closes the hint window (Close(ctx, true)) before that.
type Factory func(t *testing.T, vm hint.VM, host hint.Host) hint.Provider

// Option adjusts a Run.
type Option func(*options)

type options struct {
	config hint.Config
	host   func(t *testing.T, ram *RAM) hint.Host
	exempt map[string]string
}

// WithConfig is the provider's configuration block, with values as the
// job file writes them ("300ms", "1MiB", "0x1000", "2" for a number,
// "true" for a bool) or as Config holds them (int64, bool; int too); a
// string attribute takes a string only. The suite types it and fills in
// the schema's defaults (schema.Coerce says exactly what it takes) and
// configures the provider with the result. Without it: the defaults.
func WithConfig(cfg hint.Config) Option {
	return func(o *options) { o.config = cfg }
}

// WithHost makes the Host every test but HostNotSupported configures the
// provider with (a provider that needs a capability to yield anything —
// the balloon — brings a fake VMM). Without it: a host that supports
// nothing (hint.MockHost{}).
func WithHost(f func(t *testing.T, ram *RAM) hint.Host) Option {
	return func(o *options) { o.host = f }
}

// Exempt skips the named subtests, saying why: for example providers
// that break part of the contract by design.
func Exempt(reason string, tests ...string) Option {
	return func(o *options) {
		for _, name := range tests {
			o.exempt[name] = reason
		}
	}
}

// Only skips every subtest but the named ones, saying why: for example
// providers that can only describe themselves without ending the test.
func Only(reason string, tests ...string) Option {
	return func(o *options) {
		for _, c := range suite {
			if !slices.Contains(tests, c.name) {
				o.exempt[c.name] = reason
			}
		}
	}
}

// suite is the subtests, in order.
var suite = []struct {
	name string
	fn   func(t *testing.T, s *session)
}{
	{"Info", testInfo},
	{"Schema", testSchema},
	{"Validate", testValidate},
	{"Hints", testHints},
	{"Cancel", testCancel},
	{"EmitError", testEmitError},
	{"Close", testClose},
	{"CloseDuringHints", testCloseDuringHints},
	{"Reconfigure", testReconfigure},
	{"HostNotSupported", testHostNotSupported},
}

// Run runs the conformance suite against the providers f makes, one
// fresh provider (and fresh guest RAM) per subtest.
func Run(t *testing.T, f Factory, opts ...Option) {
	o := &options{exempt: map[string]string{}}
	for _, opt := range opts {
		opt(o)
	}
	for _, c := range suite {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := o.exempt[c.name]; ok {
				t.Skip("exempt: " + why)
			}
			c.fn(t, newSession(t, f, o, c.name == "HostNotSupported"))
		})
	}
}

// Timing of the suite.
const (
	// opTimeout bounds every call that has no deadline of its own.
	opTimeout = 30 * time.Second
	// deadline is the Hints deadline, the engine's default.
	deadline = 300 * time.Millisecond
	// slack is how long past its deadline (or cancellation) a Hints call
	// may take to return: scheduling, and the gRPC round trip.
	slack = 250 * time.Millisecond
)

// session is one test's provider, RAM and host.
type session struct {
	t    *testing.T
	ram  *RAM
	host hint.Host
	p    hint.Provider
	o    *options
}

func newSession(t *testing.T, f Factory, o *options, noHost bool) *session {
	s := &session{t: t, ram: NewRAM(t), o: o}
	s.host = &hint.MockHost{}
	if o.host != nil && !noHost {
		s.host = o.host(t, s.ram)
	}
	s.p = f(t, s.ram.VM, s.host)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.p.Close(c, true)
		}()
		select {
		case <-done:
		case <-time.After(10*time.Second + slack):
			t.Errorf("Close(final) at the end of the test still running after 10s")
		}
	})
	return s
}

// ctx returns a context that ends after opTimeout or with the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// config decodes the test's configuration against the provider's schema.
func (s *session) config() hint.Config {
	s.t.Helper()
	var sch hint.Schema
	err := within(s.t, "Schema", opTimeout+slack, func() (err error) {
		sch, err = s.p.Schema(ctx(s.t))
		return err
	})
	if err != nil {
		s.t.Fatalf("Schema: %v", err)
	}
	in := map[string]any{}
	for k, v := range s.o.config {
		in[k] = v
	}
	cfg, err := schema.Coerce(sch, in)
	if err != nil {
		s.t.Fatalf("the test's configuration does not fit the provider's schema: %v", err)
	}
	return cfg
}

// configure starts a hint window.
func (s *session) configure() {
	s.t.Helper()
	s.configureWith(s.host)
}

func (s *session) configureWith(host hint.Host) {
	s.t.Helper()
	cfg := s.config()
	err := within(s.t, "Configure", opTimeout+slack, func() error {
		return s.p.Configure(ctx(s.t), cfg, s.ram.VM, host)
	})
	if err != nil {
		s.t.Fatalf("Configure: %v", err)
	}
}

// close ends the hint window and expects no error.
func (s *session) close(final bool) {
	s.t.Helper()
	err := within(s.t, "Close", opTimeout+slack, func() error { return s.p.Close(ctx(s.t), final) })
	if err != nil {
		s.t.Errorf("Close(final=%v): %v", final, err)
	}
}

// meaning asks the provider what its ranges mean.
func (s *session) meaning() hint.Meaning {
	s.t.Helper()
	var info hint.Info
	err := within(s.t, "Info", opTimeout+slack, func() (err error) {
		info, err = s.p.Info(ctx(s.t))
		return err
	})
	if err != nil {
		s.t.Fatalf("Info: %v", err)
	}
	return info.Meaning
}

// within runs fn and returns its error; if fn has not returned within d
// the test fails at once (fn's goroutine is left behind: the provider
// hangs).
func within(t *testing.T, what string, d time.Duration, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("%s still running after %v", what, d)
		return nil
	}
}
