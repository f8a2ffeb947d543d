// Package guestlog logs what a guest can make happen as often as it likes
// (bad descriptors, bad hints, accesses to nowhere) without letting it
// flood the VMM's log: each message is logged the first time, then
// occurrences are counted and one summary is logged at most once an
// interval.
//
//	t=0     event ─► logged ("first")
//	t<5s    events ─► counted
//	t=5s    timer  ─► "msg" repeated=N (last occurrence's attributes)
//	t≥5s    event  ─► logged again with repeated=N if any were counted
//
// What it cannot do: tell two guests apart (use one Limiter per device or
// vCPU) or bound the cost of building a call's arguments: callers pass
// cheap values.
package guestlog
