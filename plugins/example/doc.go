// Package example holds small hint providers that the tests and
// docs/PLUGINS.md use; none of them is meant for a real migration.
//
//	static  reports the guest physical ranges its configuration names
//	        as free: the complete example of docs/PLUGINS.md
//	liar    reports what it must not: ranges outside RAM, absurd counts,
//	        duplicates and overlaps, pages that hold data, late answers
//	hang    never answers Hints before its context ends, or never at all
//	crash   exits its process in Configure or in Hints
//
// Each is a plain Go package; cmd/ferry-hint-example-<name> serves it as
// a plugin, built into bin/plugins by `make`.
package example
