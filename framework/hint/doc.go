// Package hint is the hint-provider plugin kind: out-of-process providers
// that tell the migration engine which guest pages need not travel (free
// pages the guest reported through virtio-balloon, RAM the host never
// populated, pages s390 CMMA marks unused).
//
//	source VMM process                           provider plugin process
//	engine ── per pass, after the dirty sync ──► Hints(generation, deadline)
//	       ◄── page ranges (streamed) ──────────
//	VMM ◄── Host callbacks (go-plugin broker) ── BalloonHint, CMMABits, ...
//
// The engine asks every provider asynchronously, each under its own
// deadline, and applies ranges only to the to-send set of the pass whose
// dirty sync preceded the request: a hint that arrives after a later sync
// is dropped, so a page written after the request always travels. A slow,
// lying or dead provider costs its hints, never the migration.
//
// The package holds the Go interface (hint.go); the go-plugin glue, gRPC
// shims, a closure-based mock and the conformance suite (hinttest) live
// beside it, as for transports.
package hint
