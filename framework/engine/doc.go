// Package engine is Ferry's pre-copy migration engine: Send runs on the
// source beside a framework.Source, Receive on the destination beside a
// framework.Target, and a transport.Transport connects them.
//
//	source (Send)                                   destination (Receive)
//	HELLO(layout) ───────────────────────────────►  check layout
//	              ◄─────────────────────────────── READY (or ABORT: reason)
//	dirty log on; pass 1: every page (bulk)
//	pass n: pages dirtied during pass n-1 ══ pages ═► written into guest RAM
//	  Flush after every pass (pass n+1 never overtakes pass n)
//	until estimated downtime <= max_downtime or max_passes:
//	pause; final sync; last pass; Flush
//	STATE(blob, chunked) ────────────────────────►  LoadState
//	              ◄─────────────────────────────── LOADED (or ABORT: reason)
//	COMMIT ──────────────────────────────────────►  Resume
//	source stays paused: the VM lives on the destination
//
// Any failure before LOADED arrives resumes the source as if nothing had
// happened and sends ABORT; the destination then fails with a clear error.
// Zero pages go as zero runs, never as 4 KiB each: holes in the source's
// memory files are found with SEEK_DATA, populated pages are checked word
// by word.
package engine
