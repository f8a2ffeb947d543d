// Command ferry-hint-zeroscan serves the zeroscan hint provider over
// go-plugin. VMMs start it; it is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"

	"example.com/zeroscan"
)

func main() {
	hint.Serve(zeroscan.New(hint.Logger(zeroscan.Name)))
}
