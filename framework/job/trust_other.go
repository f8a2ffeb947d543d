//go:build !linux

package job

// CheckPluginFile checks nothing where there is no Linux file ownership
// to check (Ferry runs VMMs on Linux only).
func CheckPluginFile(path string) error { return nil }

// CheckTrustedFile checks nothing here either.
func CheckTrustedFile(path string) error { return nil }

// CheckKeyFile checks nothing here either.
func CheckKeyFile(path string) error { return nil }
