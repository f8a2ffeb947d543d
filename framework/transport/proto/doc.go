// Package proto is the transport plugin protocol, ferry.transport.v1:
// transport.proto and the Go code protoc-gen-go and protoc-gen-go-grpc
// generate from it (committed; `make proto` regenerates it). Only
// framework/transport's gRPC client and server use it.
package proto
