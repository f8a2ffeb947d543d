// Package session runs one migration for a VMM that embeds Ferry: it
// starts the plugins a job names, checks their blocks against their
// schemas, configures them, runs the engine and tears everything down,
// on every path.
//
//	Send(ctx, src, host, spec)                     Receive(ctx, dst, spec)
//	  │                                              │
//	  ├─ Open: Check(spec); engine.RAMFiles(RAM) ────┤  dup the VMM's memfds
//	  │        transport.Launch(files); Schema;      │  error: Report failed,
//	  │        schema.Coerce(Transport.Config)       │  nothing left running
//	  │                                              │
//	  ├─ for each Hint, under HintStartTimeout:      │
//	  │    hint.Launch(files); Info; Schema;         │
//	  │    Coerce; Configure(VM, host)               │
//	  │    error: Report.Hints "failed: ..." or      │
//	  │    "not-supported: ...", migration goes on   │
//	  │                                              │
//	  ├─ engine.Send(src, transport, options)        ├─ engine.Receive(dst, transport, options)
//	  │                                              │
//	  └─ kill hint processes; close transport ───────┴─ (its process); close RAM files
//
// A VMM that must answer "did the transport start" before the migration
// runs (a control command, say) calls Open itself and then
// Session.Send or Session.Receive on a goroutine of its own; Send and
// Receive are Open plus that call.
//
// Concurrency: Send and Receive block until the migration is over and
// the plugins are gone. The Source's or Target's methods run as the
// engine calls them (framework.Source: one goroutine, except Memory);
// Spec.Progress is engine.Options.Progress, called by the engine while
// Send or Receive runs, never after; the
// hint.Host's methods run on go-plugin's broker goroutines, concurrently
// with the engine, while a provider's hint window is open — never after
// Send returned. Plugin logs go to Spec.Log from go-plugin's goroutines,
// one slog record per plugin message with the plugin's level and the
// attribute plugin=<binary name>.
//
// Failure: a transport that cannot start, or rejects its block, fails
// the migration before anything is sent (Send and Receive return a
// failed Report, cancelled if ctx was, and the error; the VM was never
// touched). A hint provider
// that cannot start costs its hints only. Once the engine runs, its
// Report and error are returned unchanged (see engine.Send for who
// resumes the VM). Cancelling ctx ends the engine (engine.Send,
// engine.Receive) and any start in progress; Send and Receive still
// return only after every plugin process has been killed and waited for
// and every RAM file they opened is closed. Nothing is restarted.
package session
