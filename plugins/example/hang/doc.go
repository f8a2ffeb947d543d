// Package hang is an example hint provider that never answers: in mode
// "ctx" (the default) Hints waits until its context ends and returns its
// error, as a slow provider does; in mode "ignore" Hints never returns
// at all, whatever its context says, as a stuck provider does. Tests use
// it to show that the engine waits for no provider past its deadline.
//
//	hint "example-hang" { mode = "ignore" }
//
// In mode "configure" Configure itself waits until its context ends, as a
// provider that hangs while it starts; the report says hung, stage
// configure. Info, Schema and Close answer at once in every mode, and
// Configure does in the other two.
package hang
