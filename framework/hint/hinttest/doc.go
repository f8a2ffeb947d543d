// Package hinttest is the conformance suite of the hint provider kind:
// Run(t, factory) checks that a provider keeps the hint.Provider contract.
// Every provider passes it in process and again over real gRPC, with the
// provider in its own plugin process started by hint.Launch (the test
// binary re-executed as the plugin; see framework/hint's plugin tests and
// plugins/example).
//
// The suite makes the guest RAM itself — memfds, mapped in the test
// process, which plays the VMM (VM.PID is the test's pid, Region.HostAddr
// the suite's mappings) — and hands it to the factory, which may give
// VM.Files to hint.Launch:
//
//	page index   0 ─────────── 2047 │ 2048 ──────── 3071
//	GPA          0 ──────── 8 MiB   │ 4 GiB ─── 4 GiB+4 MiB
//	file         RAM file 0 @ 0     │ RAM file 1 @ 1 MiB
//	content      page p % 8:  0-2 data (written through the mapping)
//	                          3   written with zeros
//	                          4-7 never touched (zero, not populated)
//
// What it checks, one subtest each (names for Exempt):
//
//	Info             name usable as a job label, valid meaning, no Configure needed
//	Schema           valid, no "deadline" (the engine's), the test config decodes
//	Validate         the test config passes the provider's own checks (hint.Validate;
//	                 a provider without them, or a plugin older than the RPC, passes)
//	Hints            three generations, each within its deadline + slack (in
//	                 process: the call returns; over gRPC: the plugin side has
//	                 not refused the next generation because the previous
//	                 one still ran, which it does 250 ms past its deadline);
//	                 every range inside RAM; MeaningZero ranges read as zero
//	Cancel           Hints returns soon after its context is cancelled
//	EmitError        a failing emit ends Hints with that error (errors.Is)
//	Close            Close(final) before Configure, and twice after, returns nil
//	CloseDuringHints Close may interrupt a running Hints; both return in time
//	Reconfigure      a second hint window after Close(final) works
//	HostNotSupported a Host that supports nothing fails neither Configure nor
//	                 Hints (nil, or ErrNotSupported with no ranges)
//
// Every wait in the suite is bounded; a provider that hangs fails the test
// instead of stalling it.
package hinttest
