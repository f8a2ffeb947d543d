// Package session runs one migration for a VMM that embeds Ferry: it
// starts the plugins a job names, all at once, checks their blocks
// against their schemas, configures them, runs the engine, returns the
// report, and tears everything down on every path, after the report.
//
//	Open(ctx, RAM, spec)                               │
//	  ├─ Check(spec); RAM.Check() (a layout it refuses starts no plugin);
//	  │    engine.RAMFiles(RAM, spec.Role): the VMM's memfds,
//	  │    read-only to send; to receive, duplicates, sealed against shrinking
//	  ├─ sending: each Hint, on its own goroutine, under HintStartTimeout:
//	  │    hint.Launch(files); Info; Schema; Coerce; then waits for Send
//	  └─ at the same time: transport.Launch(files); Schema;
//	     schema.Coerce(Transport.Config); error: nothing left running
//	Session.Send(ctx, src, host)                      Session.Receive(ctx, dst)
//	  ├─ src.RAM() must be Open's RAM, or failed and     ├─ dst.RAM() likewise
//	  │  nothing runs (checkRAM: regions, GPA, Size,     │
//	  │  Offset, file by fstat device and inode)         │
//	  ├─ each provider: Configure(VM, host) as soon      │
//	  │  as it runs; error: Report.Hints "failed: ..."   │
//	  │  or "not-supported: ...", migration goes on      │
//	  ├─ engine.Send(src, transport, options)            ├─ engine.Receive(dst, transport, options)
//	  └─ report returned (SetupMS: Open + the wait) ─────┴─ report returned
//	     background: close transport, kill every plugin process (at once), close RAM files
//	Session.Close(): waits for that teardown
//
// Send and Receive (the functions) are Open, Session.Send or
// Session.Receive, then Close: they return once the plugins are gone.
// A VMM that must answer "did the transport start" before the migration
// runs (a control command, say) calls Open itself and then Session.Send
// or Session.Receive on a goroutine of its own, publishes the report as
// soon as it has it, and then calls Close.
//
// Time: Report.SetupMS is the session's share before the engine ran
// (Open, and Send's wait for the providers' Configure); the engine's
// TotalMS follows it, and plugin processes exit after the report, in
// neither. docs/JOBS.md defines every time field.
//
// Concurrency: Session.Send and Session.Receive block until the
// migration is over, not until the plugins are gone; Close blocks until
// they are, and may be called from any goroutine, any number of times.
// The Source's or Target's methods run as the engine calls them
// (framework.Source: one goroutine, except Memory); Spec.Progress is
// engine.Options.Progress, called by the engine while Send or Receive
// runs, never after; the hint.Host's methods run on go-plugin's broker
// goroutines, concurrently with the engine, while a provider's hint
// window is open — never after Send returned. Plugin logs go to
// Spec.Log from go-plugin's goroutines, one slog record per plugin
// message with the plugin's level and the attribute plugin=<binary
// name>.
//
// Failure: a transport that cannot start, or rejects its block, fails
// the migration before anything is sent (Send and Receive return a
// failed Report, cancelled if ctx was, and the error; the VM was never
// touched); so does a VM given to Session.Send or Session.Receive whose
// RAM is not the layout given to Open (another region, GPA, size or
// offset, or another file than Open's, by device and inode): the
// plugins hold Open's files, and the engine would walk the VM's. Not
// checked: that the VM's Memory(i) maps those files. A hint provider
// that cannot start costs its hints only.
// Once the engine runs, its Report and error are returned unchanged
// (see engine.Send for who resumes the VM). Cancelling ctx ends the
// engine (engine.Send, engine.Receive) and any start in progress; a ctx
// from engine.NewCancel reaches the engine as it is, so its Cancel says
// whether a cancel took. When
// Close returns (and so when the functions Send and Receive return),
// every plugin process has been killed and waited for, every RAM file
// the session opened is closed and every goroutine it started has
// ended. Nothing is restarted.
package session
