// Package hang is an example hint provider that never answers: in mode
// "ctx" (the default) Hints waits until its context ends and returns its
// error, as a slow provider does; in mode "ignore" Hints never returns
// at all, whatever its context says, as a stuck provider does. Tests use
// it to show that the engine waits for no provider past its deadline.
//
//	hint "example-hang" { mode = "ignore" }
//
// Info, Schema, Configure and Close answer at once, in both modes.
package hang
