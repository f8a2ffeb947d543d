package main

import "fmt"

// verifyMode is -verify-pages: off, on (every page but those hinted free,
// which the check trusts) or strict (those too: engine.Options.VerifyFree).
// A bare -verify-pages is "on".
type verifyMode int

const (
	verifyOff verifyMode = iota
	verifyOn
	verifyStrict
)

// String implements flag.Value.
func (v *verifyMode) String() string {
	switch *v {
	case verifyOn:
		return "true"
	case verifyStrict:
		return "strict"
	}
	return "false"
}

// Set implements flag.Value.
func (v *verifyMode) Set(s string) error {
	switch s {
	case "true", "on", "1":
		*v = verifyOn
	case "strict":
		*v = verifyStrict
	case "false", "off", "0":
		*v = verifyOff
	default:
		return fmt.Errorf("want -verify-pages, -verify-pages=strict or -verify-pages=false, not %q", s)
	}
	return nil
}

// IsBoolFlag lets -verify-pages stand alone (flag.boolFlag).
func (v *verifyMode) IsBoolFlag() bool { return true }
