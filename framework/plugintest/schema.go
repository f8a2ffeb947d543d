package plugintest

import (
	"time"

	"github.com/ferryvm/ferry/framework/schema"
)

// SampleSchema is a schema for conversion tests: an attribute of every
// type, defaults of every Go type Config holds, a required one with a
// doc, and one of an invalid type, which must pass through the plugin
// boundary unchanged for Validate to catch.
func SampleSchema() schema.Schema {
	return schema.Schema{
		{Name: "addr", Type: schema.TypeString, Required: true, Doc: "where"},
		{Name: "streams", Type: schema.TypeNumber, Default: int64(4)},
		{Name: "tls", Type: schema.TypeBool, Default: true},
		{Name: "timeout", Type: schema.TypeDuration, Default: int64(time.Second)},
		{Name: "window", Type: schema.TypeSize},
		{Name: "future", Type: schema.AttrType(9)},
	}
}
