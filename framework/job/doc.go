// Package job reads a migration job file: which VMMs take part (their
// control sockets), which transport plugin moves the pages and with what
// configuration, which hint providers run, and the limits of the
// migration. The language is HCL native syntax (hashicorp/hcl/v2); see
// docs/JOBS.md for the file format.
//
// Reading a job takes three steps, because the plugin blocks are
// described by the plugins themselves:
//
//	job.Parse(name, src)            structure and the fixed blocks; plugin bodies kept
//	     │
//	Job.CheckPlugins(tcp, hints)    plugin names against those found on disk
//	     │
//	Plugin.Decode(schema)           each of Job.Blocks() against the Schema its plugin reports
//
// Every step returns hcl.Diagnostics that carry the position of the
// mistake and say what to write instead; each step reports all the
// mistakes it finds, not just the first, and no step depends on an
// earlier one having found none: a block given twice is reported and its
// body checked too (Job.Blocks lists duplicate plugin blocks), and a
// plugin block is decoded whatever is wrong elsewhere in the file. Parse
// also refuses a destination whose control socket is the source's (paths
// compared once cleaned; the caller checks links, see SameSocket). FormatDiagnostics prints them as
// "file:line:col: summary: detail" followed by the source line with the
// mistake underlined.
package job
