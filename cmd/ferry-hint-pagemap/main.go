// Command ferry-hint-pagemap is the host-only zero-page hint provider
// (plugins/pagemap) served over go-plugin. VMMs start it; it is not meant
// to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/pagemap"
)

func main() { hint.Serve(pagemap.New(hint.Logger(hint.PluginName))) }
