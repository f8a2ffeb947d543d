package schema

// ErrBadConfig is the class of every configuration error: a block that
// does not fit its schema (Coerce), a value that cannot cross the plugin
// boundary, a plugin refusing its values. Each plugin kind declares its
// own sentinel with its own text through NewErrBadConfig
// (transport.ErrBadConfig, hint.ErrBadConfig); errors.Is treats all of
// them, and ErrBadConfig, as one class, so an error from Coerce is a
// transport.ErrBadConfig as well as a hint.ErrBadConfig.
var ErrBadConfig = NewErrBadConfig("bad configuration")

// NewErrBadConfig returns a sentinel of the ErrBadConfig class whose text
// is text. Only package-level sentinels should be made with it: errors
// wrapping them say what was wrong.
func NewErrBadConfig(text string) error { return &badConfig{text} }

// badConfig is one sentinel of the class; errors.Is compares targets with
// Is, which matches any sentinel of the class.
type badConfig struct{ text string }

func (e *badConfig) Error() string { return e.text }

// Is reports whether target is a sentinel of the same class.
func (e *badConfig) Is(target error) bool {
	_, ok := target.(*badConfig)
	return ok
}
