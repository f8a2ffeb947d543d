// Package guestram maps the guest RAM an OpenRequest names, for the
// transports in transports/: the same layout checks and the same
// refusal of regions that would run past their file, whichever
// transport then moves the pages.
//
//	OpenRequest.RAM[i] ── File ──► Files[File] ── mmap [Offset, Offset+Size)
//	                                                  │
//	Mapping{First: pages before region i, Pages, Mem} ◄┘
//
// A transport copies each Mapping into its own region type, which adds
// what only it needs (tcp: hole punching state; rdma: registrations).
package guestram
