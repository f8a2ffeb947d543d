// Command ferry-hint-balloon is the virtio-balloon hint provider
// (plugins/balloon) served over go-plugin. VMMs start it; it is not meant
// to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/balloon"
)

func main() { hint.Serve(balloon.New()) }
