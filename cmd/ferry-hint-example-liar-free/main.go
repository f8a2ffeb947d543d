// Command ferry-hint-example-liar-free is an example hint provider that
// calls pages holding data free (plugins/example/liar, NewFree), served
// over go-plugin, for tests of the strict page check. VMMs start it; it
// is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/example/liar"
)

func main() {
	hint.Serve(liar.NewFree(hint.Logger(liar.NameFree)))
}
