// Command ferry-transport-tcp is the TCP transport plugin: transports/tcp
// served over go-plugin. VMMs start it; it is not meant to be run by hand.
package main

import (
	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "tcp", Level: hclog.Info, JSONFormat: true})
	transport.Serve(tcp.New(log))
}
