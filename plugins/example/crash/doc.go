// Package crash is an example hint provider whose process dies: it calls
// os.Exit(3) in Configure or in Hints (there, with "balloon", after one
// balloon free page hint session in the VMM), as the configuration says.
// Tests use it to show that a dead provider costs its hints, never the
// migration, and never leaves the guest without its hinted blocks.
//
//	hint "example-crash" { when = "configure" }
//
// Run it only as a plugin process (cmd/ferry-hint-example-crash): in
// process it ends the program that called it.
package crash
