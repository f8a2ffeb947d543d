// Command ferry-hint-example-hang is an example hint provider that never
// answers (plugins/example/hang) served over go-plugin. VMMs start it; it
// is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/example/hang"
)

func main() {
	hint.Serve(hang.New(hint.Logger(hang.Name)))
}
