// Package proto is the protobuf form of framework/schema, ferry.schema.v1:
// schema.proto and the Go code protoc-gen-go generates from it
// (committed; `make proto` regenerates it). Both plugin protocols,
// framework/transport/proto and framework/hint/proto, import it for
// their Schema and Validate RPCs and configuration values; framework/internal/schemaconv
// converts between it and framework/schema. It is public so that plugins
// written against the protocols alone can name these messages.
package proto
