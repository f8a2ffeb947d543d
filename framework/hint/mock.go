package hint

import "context"

// Mock is a Provider made of closures, for tests of code that uses a
// provider. A nil closure makes its method fail with ErrNotSupported.
type Mock struct {
	InfoFunc      func(ctx context.Context) (Info, error)
	SchemaFunc    func(ctx context.Context) (Schema, error)
	ConfigureFunc func(ctx context.Context, cfg Config, vm VM, host Host) error
	HintsFunc     func(ctx context.Context, req Request, emit func([]Range) error) error
	CloseFunc     func(ctx context.Context, final bool) error
	// ValidateFunc is Validator.Validate (validate.go).
	ValidateFunc func(ctx context.Context, cfg Config) error
}

var _ Provider = (*Mock)(nil)

// Info implements Provider.Info.
func (m *Mock) Info(ctx context.Context) (Info, error) {
	if m.InfoFunc == nil {
		return Info{}, ErrNotSupported
	}
	return m.InfoFunc(ctx)
}

// Schema implements Provider.Schema.
func (m *Mock) Schema(ctx context.Context) (Schema, error) {
	if m.SchemaFunc == nil {
		return nil, ErrNotSupported
	}
	return m.SchemaFunc(ctx)
}

// Configure implements Provider.Configure.
func (m *Mock) Configure(ctx context.Context, cfg Config, vm VM, host Host) error {
	if m.ConfigureFunc == nil {
		return ErrNotSupported
	}
	return m.ConfigureFunc(ctx, cfg, vm, host)
}

// Hints implements Provider.Hints.
func (m *Mock) Hints(ctx context.Context, req Request, emit func([]Range) error) error {
	if m.HintsFunc == nil {
		return ErrNotSupported
	}
	return m.HintsFunc(ctx, req, emit)
}

// Close implements Provider.Close.
func (m *Mock) Close(ctx context.Context, final bool) error {
	if m.CloseFunc == nil {
		return ErrNotSupported
	}
	return m.CloseFunc(ctx, final)
}

// MockHost is a Host made of closures. A nil closure makes its method
// fail with ErrNotSupported, so the zero MockHost is a VMM without any
// capability (what a plugin's provider gets when the host offers none).
// The closures may be called from several goroutines.
type MockHost struct {
	BalloonHintFunc func(ctx context.Context) ([]GPARange, error)
	BalloonDoneFunc func(ctx context.Context) error
	CMMABitsFunc    func(ctx context.Context, startGFN uint64, count int) (uint64, []byte, error)
}

var _ Host = (*MockHost)(nil)

// BalloonHint implements Host.BalloonHint.
func (h *MockHost) BalloonHint(ctx context.Context) ([]GPARange, error) {
	if h.BalloonHintFunc == nil {
		return nil, ErrNotSupported
	}
	return h.BalloonHintFunc(ctx)
}

// BalloonDone implements Host.BalloonDone.
func (h *MockHost) BalloonDone(ctx context.Context) error {
	if h.BalloonDoneFunc == nil {
		return ErrNotSupported
	}
	return h.BalloonDoneFunc(ctx)
}

// CMMABits implements Host.CMMABits.
func (h *MockHost) CMMABits(ctx context.Context, startGFN uint64, count int) (uint64, []byte, error) {
	if h.CMMABitsFunc == nil {
		return 0, nil, ErrNotSupported
	}
	return h.CMMABitsFunc(ctx, startGFN, count)
}
