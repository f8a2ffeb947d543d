// Command ferry-transport-rdma is the RDMA transport plugin: transports/rdma
// served over go-plugin. VMMs start it; it is not meant to be run by hand.
// It needs cgo and libfabric (libfabric-dev) to build; without them
// `make` skips it and says why.
package main

import (
	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "rdma", Level: hclog.Info, JSONFormat: true})
	transport.Serve(rdma.New(log))
}
