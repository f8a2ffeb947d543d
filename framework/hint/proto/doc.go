// Package proto is the hint provider plugin protocol, ferry.hint.v1:
// hint.proto and the Go code protoc-gen-go and protoc-gen-go-grpc generate
// from it (committed; `make proto` regenerates it). Only framework/hint's
// gRPC clients and servers use it.
package proto
