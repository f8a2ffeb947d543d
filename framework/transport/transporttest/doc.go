// Package transporttest is the conformance suite of the transport kind:
// Run(t, harness) checks that a pair of transports (a sender and a
// receiver) keeps the transport.Transport contract. Every transport
// passes it in process and again over real gRPC, with the plugin side in
// its own process (see framework/transport's plugin tests).
//
// The suite makes the guest RAM itself, the same layout over different
// memfds on each side, and hands both sets to the harness, which may give
// them to transport.Launch:
//
//	page index   0 ─────────── 2047 │ 2048 ──────── 3071
//	GPA          0 ──────── 8 MiB   │ 4 GiB ─── 4 GiB+4 MiB
//	file         RAM file 0 @ 0     │ RAM file 1 @ 1 MiB
//
//	sender memfds ──SendPages/Flush──► transport ──► receiver memfds
//	compared byte for byte after Flush; pages never sent keep the
//	receiver's fill pattern (the destination writes nowhere else)
//
// Every wait in the suite is bounded; a transport that hangs fails the
// test instead of stalling it.
package transporttest
