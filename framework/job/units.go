package job

import (
	"time"

	"github.com/ferryvm/ferry/framework/schema"
)

// The units themselves live in framework/schema, so that a plugin's
// Config means the same whether it came from a job file (Decode) or from
// JSON (schema.Coerce).

// ParseDuration reads a duration as written in a job file
// (schema.ParseDuration): "50ms", "1.5s", "1m30s" or "0".
func ParseDuration(s string) (time.Duration, error) { return schema.ParseDuration(s) }

// ParseSize reads a size as written in a job file (schema.ParseSize):
// "512MiB", "1G" (binary), "100MB" (decimal), "4096".
func ParseSize(s string) (uint64, error) { return schema.ParseSize(s) }

// ParseAddress reads an address as written in a job file
// (schema.ParseAddress): "0x1000000", or a size like "16M".
func ParseAddress(s string) (uint64, error) { return schema.ParseAddress(s) }

// ParseBandwidth reads a rate in bytes per second
// (schema.ParseBandwidth): "1GiB/s", "100MB/s", or "0" for unlimited.
func ParseBandwidth(s string) (uint64, error) { return schema.ParseBandwidth(s) }
