package session

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
)

// Plugin is one plugin of a migration: the absolute path of its binary
// and its job block, checked against the schema the plugin reports.
type Plugin struct {
	Path   string
	Config map[string]any
}

// Hint is one hint provider of a migration (Send only).
type Hint struct {
	// Name labels the provider in logs and in Report.Hints: its job
	// block's label. The provider's Info.Name must be the same, or it is
	// not used (failed at stage start; hint.Info.CheckName).
	Name     string
	Plugin   Plugin
	Deadline time.Duration // per request; 0: the engine's default
	// StartTimeout bounds the provider's start: process, Info, Schema
	// and Configure; 0: HintStartTimeout. One that runs past it is
	// reported hung (stage start or configure) and not used.
	StartTimeout time.Duration
}

func (h Hint) startTimeout() time.Duration {
	if h.StartTimeout > 0 {
		return h.StartTimeout
	}
	return HintStartTimeout
}

// Spec is everything a migration needs besides the VM.
type Spec struct {
	// Role is the side this session migrates: transport.RoleSend or
	// transport.RoleReceive (Send and Receive, the functions, set it).
	// Open needs it because it decides what the plugins may do to guest
	// RAM (engine.RAMFiles): on the sending side every plugin gets
	// read-only files; on the receiving side the transport gets writable
	// ones and the RAM is sealed against shrinking.
	Role transport.Role
	// Transport is the transport plugin, with its block (Config); the
	// session starts Path as its own process.
	Transport Plugin
	// TransportInProcess, if set, is a transport linked into the VMM
	// (transports/tcp.New(nil), say) that the session uses instead of
	// starting Transport.Path; Transport.Config is its block, checked
	// against its Schema all the same, and the session closes it at the
	// end. No process boundary lies on its path: a post-copy page request
	// crosses none, which takes a network fault from about 250 us through
	// the plugin to about 60 us here (docs/EMBEDDING.md, docs/BENCHMARKS.md
	// "Where a network fault's time goes"). What it gives up: a transport that
	// crashes or leaks takes the VMM with it, and it runs with the VMM's
	// privileges. A wrapper around one (for metrics, say) must forward
	// CloseHoldingListeners (transport.ListenerHolder) and Answer
	// (transport.Answerer) when the wrapped transport has them: without
	// the first, a post-copy reconnect lets the listening port go and
	// anyone on the host may take it; without the second, requested
	// pages take the slower path.
	TransportInProcess transport.Transport
	// Hints are the hint providers of a sending session (Open starts
	// them; a receiving session starts none). A provider that fails
	// costs its hints, never the migration.
	Hints []Hint
	// Engine holds limits, credentials and test modes; the session fills
	// its Transport, Hints, Log and Progress.
	Engine engine.Options
	// Log receives the session's and the plugins' logs; nil: slog.Default().
	Log *slog.Logger
	// Progress receives the engine's events (engine.Options.Progress);
	// keep it quick. nil: none.
	Progress func(engine.Progress)
	// Name names the VM to hint providers (hint.VM.ID, for their logs);
	// "": "ferry[PID]".
	Name string
}

// HintStartTimeout bounds the start of one hint provider (its process,
// Info, Schema, its block) and, again, its Configure once Send gave it
// the VM, unless Hint.StartTimeout says otherwise.
const HintStartTimeout = 30 * time.Second

// Check validates what Open checks of a job before starting anything:
// the transport plugin's path must be absolute. (Open also wants
// Spec.Role.) Hint providers are checked when they start: one that
// cannot costs its hints, not the migration.
func Check(spec Spec) error {
	if spec.TransportInProcess != nil {
		return nil
	}
	return checkPath(spec.Transport.Path)
}

func checkRole(r transport.Role) error {
	if r != transport.RoleSend && r != transport.RoleReceive {
		return fmt.Errorf("session: Spec.Role must be transport.RoleSend or transport.RoleReceive, got %v", r)
	}
	return nil
}

func checkPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("plugin must be an absolute path, got %q", path)
	}
	return nil
}
