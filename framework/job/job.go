package job

import (
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
)

// Defaults and bounds of the limits block.
const (
	DefaultMaxDowntime = 300 * time.Millisecond // QEMU's default downtime-limit
	MaxMaxDowntime     = time.Hour              // max_downtime must stay below this
	DefaultMaxPasses   = 30
	MaxMaxPasses       = 1000

	// DefaultSwitchoverTimeout bounds the switch-over (pause, final pass,
	// state, LOADED) unless the job says otherwise; engine.Options has
	// the same default.
	DefaultSwitchoverTimeout = 5 * time.Second
	MaxSwitchoverTimeout     = time.Hour
	// DefaultIncomingTimeout bounds how long the destination waits for
	// its source to connect.
	DefaultIncomingTimeout = 2 * time.Minute
	MaxIncomingTimeout     = 24 * time.Hour
	// DefaultReconnectTimeout bounds how long a post-copy whose
	// connection broke tries to reconnect; engine.Options has the same
	// default.
	DefaultReconnectTimeout = engine.DefaultReconnectTimeout
	MaxReconnectTimeout     = 24 * time.Hour
	// DefaultStallTimeout bounds how long a session may move nothing
	// before it is taken for stalled; engine.Options has the same
	// default.
	DefaultStallTimeout = engine.DefaultStallTimeout
	MaxStallTimeout     = time.Hour
	// MinStallTimeout: a source is quiet on the wire between two passes
	// (a dirty sync) and its destination hears nothing meanwhile; under a
	// second every hiccup of a loaded host would fail a migration.
	MinStallTimeout = time.Second
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
	// PluginPath is the plugin_path attribute as written: directories
	// searched for plugins in order, before PluginDir (or its default),
	// so a job can add a third party's plugins to Ferry's own. Never
	// holds "". PluginPathRanges[i] is where PluginPath[i] is written.
	PluginPath       []string
	PluginPathRanges []hcl.Range

	Source      Endpoint // the VMM the guest leaves
	Destination Endpoint // the VMM the guest moves to
	Transport   Plugin   // the transport "<name>" block
	Hints       []Plugin // the hint "<name>" blocks, in file order, names unique
	Limits      Limits
	Security    Security // the security block; default: minted keys, encryption on

	// duplicates are plugin blocks Parse reported as a second transport
	// block or a second block for one hint provider: Blocks lists them
	// so that their bodies are checked too.
	duplicates []Plugin
}

// Blocks returns every transport and hint block of the job that names a
// plugin, in file order: Transport, Hints, and the duplicates Parse
// already reported, whose mistakes Decode reports as well (their Config
// is never used). Decode each block whose plugin exists to report every
// error of a job in one run.
func (j *Job) Blocks() []*Plugin {
	var out []*Plugin
	if j.Transport.Body != nil {
		out = append(out, &j.Transport)
	}
	for i := range j.Hints {
		out = append(out, &j.Hints[i])
	}
	for i := range j.duplicates {
		out = append(out, &j.duplicates[i])
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Range.Start.Byte < out[b].Range.Start.Byte })
	return out
}

// Endpoint is one VMM taking part in the migration.
type Endpoint struct {
	Control      string    // path of the VMM's control socket, never empty
	ControlRange hcl.Range // where control is given, for diagnostics
}

// Plugin is a transport or hint block. Parse keeps its body; Decode
// checks it against the plugin's schema and fills Config.
type Plugin struct {
	Kind   string        // KindTransport or KindHint
	Name   string        // the block label: which plugin
	Body   hcl.Body      // the block's body, for Decode; nil if Parse found no block
	Config schema.Config // the decoded body, set by Decode

	Range      hcl.Range // the block header: transport "tcp"
	LabelRange hcl.Range // the label: "tcp"
}

// Limits bound the migration.
type Limits struct {
	MaxDowntime time.Duration // longest pause of the guest at switch-over; 0 < MaxDowntime < 1h
	Bandwidth   uint64        // bytes per second on the wire; 0 is unlimited
	// MaxPasses is the pre-copy passes over guest RAM before
	// stop-and-copy is forced, or refused where the engine measures that
	// it could not finish within SwitchoverTimeout: the migration then
	// fails with the guest never paused (engine.ErrNotConverged). 1..1000.
	MaxPasses int
	// SwitchoverTimeout bounds the switch-over: from the pause through the
	// final pass, the state and the destination's LOADED; then the source
	// aborts and runs again. It also bounds the wait for RUNNING after
	// COMMIT (then the handover is unknown). 0 < SwitchoverTimeout < 1h.
	SwitchoverTimeout time.Duration
	// IncomingTimeout bounds how long the destination waits for its
	// source to connect; it then stops listening and exits. 0 < it < 24h.
	IncomingTimeout time.Duration
	// Postcopy says when the source switches to post-copy: off (the
	// default), auto or always (engine.Options.Postcopy). Never "".
	Postcopy engine.PostcopyMode
	// ReconnectTimeout bounds how long both sides try to open the
	// transport again after the connection broke during post-copy
	// (engine.Options.ReconnectTimeout). 0 < it < 24h.
	ReconnectTimeout time.Duration
	// StallTimeout bounds a session in which nothing moves
	// (engine.Options.StallTimeout): before COMMIT the migration fails
	// and the guest runs on at the source; in post-copy the session is
	// reconnected. Both sides get the same value. 0 < it < 1h; the
	// engine raises it to four Flush intervals at a low Bandwidth.
	StallTimeout time.Duration
}

// defaultLimits are the limits of a job without a limits block.
func defaultLimits() Limits {
	return Limits{MaxDowntime: DefaultMaxDowntime, MaxPasses: DefaultMaxPasses,
		SwitchoverTimeout: DefaultSwitchoverTimeout, IncomingTimeout: DefaultIncomingTimeout,
		Postcopy: engine.PostcopyOff, ReconnectTimeout: DefaultReconnectTimeout, StallTimeout: DefaultStallTimeout}
}
