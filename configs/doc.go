// Package configs holds Ferry's example job files (*.hcl). It has no
// code: its test parses every file and decodes its transport block, and
// compares the result with testdata/<name>.golden (go test -update
// rewrites them). docs/JOBS.md describes the format.
package configs
