// Command ferry-hint-cmma is the s390 CMMA hint provider (plugins/cmma)
// served over go-plugin. VMMs start it; it is not meant to be run by
// hand. On x86 it runs and says CMMA is not supported, once.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/cmma"
)

func main() { hint.Serve(cmma.New(hint.Logger(hint.PluginName))) }
