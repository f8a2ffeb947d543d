// Package static is the example hint provider of docs/PLUGINS.md: its
// configuration block names guest physical ranges, and it reports them as
// free pages in every generation.
//
//	hint "example-static" {
//	  deadline = "300ms"                            # the engine's
//	  ranges   = "0x100000-0x200000,0x300000-0x380000"
//	}
//
// It is a plain Go package: cmd/ferry-hint-example-static serves it as a
// plugin, and its tests run it in process and as a plugin process.
package static
