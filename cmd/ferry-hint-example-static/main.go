// Command ferry-hint-example-static is the example hint provider of
// docs/PLUGINS.md (plugins/example/static) served over go-plugin. VMMs
// start it; it is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/example/static"
)

func main() {
	hint.Serve(static.New(hint.Logger(static.Name)))
}
