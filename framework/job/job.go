package job

import (
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/transport"
)

// Defaults and bounds of the limits block.
const (
	DefaultMaxDowntime = 300 * time.Millisecond // QEMU's default downtime-limit
	MaxMaxDowntime     = time.Hour              // max_downtime must stay below this
	DefaultMaxPasses   = 30
	MaxMaxPasses       = 1000
)

// Plugin kinds, as the block types that configure them.
const (
	KindTransport = "transport"
	KindHint      = "hint"
)

// Job is a parsed job file.
type Job struct {
	File string // the file name given to Parse; diagnostics refer to it

	// PluginDir is the plugin_dir attribute as written, "" when absent:
	// the caller resolves relative paths and the default (plugins/ beside
	// the migrate binary).
	PluginDir string

	Source      Endpoint // the VMM the guest leaves
	Destination Endpoint // the VMM the guest moves to
	Transport   Plugin   // the transport "<name>" block
	Hints       []Plugin // the hint "<name>" blocks, in file order, names unique
	Limits      Limits
	Security    Security // the security block; default: minted keys, encryption on
}

// Endpoint is one VMM taking part in the migration.
type Endpoint struct {
	Control string // path of the VMM's control socket, never empty
}

// Plugin is a transport or hint block. Parse keeps its body; Decode
// checks it against the plugin's schema and fills Config.
type Plugin struct {
	Kind   string           // KindTransport or KindHint
	Name   string           // the block label: which plugin
	Body   hcl.Body         // the block's body, for Decode; nil if Parse found no block
	Config transport.Config // the decoded body, set by Decode

	Range      hcl.Range // the block header: transport "tcp"
	LabelRange hcl.Range // the label: "tcp"
}

// Limits bound the migration.
type Limits struct {
	MaxDowntime time.Duration // longest pause of the guest at switch-over; 0 < MaxDowntime < 1h
	Bandwidth   uint64        // bytes per second on the wire; 0 is unlimited
	MaxPasses   int           // pre-copy passes over guest RAM before stop-and-copy is forced; 1..1000
}
