// Command ferry-hint-example-crash is an example hint provider whose
// process dies in Configure or in Hints (plugins/example/crash), served
// over go-plugin. VMMs start it; it is not meant to be run by hand.
package main

import (
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/plugins/example/crash"
)

func main() {
	hint.Serve(crash.New(hint.Logger(crash.Name)))
}
