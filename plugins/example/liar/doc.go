// Package liar is an example hint provider that reports what it must
// not, to show that the engine counts and drops malformed answers and
// that a lie about zero pages cannot corrupt the guest. Its ranges claim
// MeaningZero; the lie in the configuration chooses what it reports:
//
//	outside  ranges past the last page of RAM, or straddling it
//	absurd   empty ranges and ranges whose end overflows 64 bits
//	overlap  the zero pages, each range twice and overlapped by another
//	         (well-formed: true, just redundant)
//	inuse    the pages that hold data, as zero
//	late     the zero pages, 50 ms after Hints returned
//	all      every one of the above in one answer (the default)
//
//	hint "example-liar" { lie = "inuse" }
//
// NewFree (binary ferry-hint-example-liar-free, block "example-liar-free")
// is the same liar claiming MeaningFree, "inuse" by default: it calls the
// pages that hold data free. The engine believes free hints without
// looking (docs/PLUGINS.md says who may claim them); only the strict page
// check (migrate -verify-pages=strict) catches this lie, before the
// destination runs.
//
// It reads the RAM files to tell zero pages from data.
package liar
