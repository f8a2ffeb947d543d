// Package schema is the configuration model both plugin kinds share: a
// plugin describes its job-file block as a Schema of typed Attributes, the
// job parser (framework/job) decodes the block against it, and the plugin
// receives the values as a Config.
//
//	plugin                 job file (HCL)               host                     plugin
//	Schema() ──────────►   transport "tcp" {       ──►  job.Plugin.Decode  ──►  Config ──► Open / Configure
//	[]Attribute              streams = 4                 (or Coerce, for a       {"streams": int64(4),
//	  name, type,            compress = "lz4"             JSON-decoded block)      "compress": "lz4", ...}
//	  required, default    }
//
// Values come in three Go types only: string (TypeString), int64
// (TypeNumber, TypeDuration in nanoseconds, TypeSize in bytes,
// TypeAddress) and bool (TypeBool). The job file writes durations, sizes
// and addresses as strings ("50ms", "1GiB", "0x1000000" or "16M");
// ParseDuration, ParseSize and ParseAddress read them, for framework/job
// and for Coerce. Validate checks a plugin's own schema (which Go values
// each type takes as a default: Attribute.Default); Coerce checks and
// types a configuration that crossed a JSON boundary or was written by
// hand, with values as the job file writes them or typed, and fills in
// defaults. Both plugin kinds carry schemas and values over gRPC as the
// messages of framework/schema/proto (ferry.schema.v1).
//
// The package does no I/O and knows nothing of plugins or gRPC, so plugin
// implementations import it without pulling in either.
package schema
