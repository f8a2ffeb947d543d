// Command ferry-hint-example-liar is an example hint provider that
// reports malformed and false ranges (plugins/example/liar), served over
// go-plugin. VMMs start it; it is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/example/liar"
)

func main() {
	hint.Serve(liar.New(hint.Logger(liar.Name)))
}
