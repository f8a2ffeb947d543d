// Package errclass carries errors across the plugin boundary by class,
// for both plugin kinds: a plugin's error becomes a gRPC status whose code
// is its class, and the host turns the status back into an error of that
// class with the plugin's text, so callers can tell a dead plugin from a
// failed operation with errors.Is (STYLE.md habit 2).
//
//	plugin process                          host process
//	impl error ─ Table.ToStatus ─► status(code, text) ─► Process.Fail / Table.FromStatus ─► *Error{class, text}
//	  wraps hint.ErrNotSupported    Unimplemented                                          errors.Is(err, hint.ErrNotSupported)
//	                                 Unavailable + process exited ─────────────────────────► the kind's ErrPluginGone
//	                                 Canceled/DeadlineExceeded of the caller's ctx ──────────► ctx.Err()
//
// Each kind keeps its own public sentinels (hint.ErrNotSupported,
// transport.ErrClosed, ...) and lists them in its own Table; this package
// holds the mapping, the liveness of a plugin process (Process) and the
// protocol-violation class the transport kind and the wire format share
// (ErrProtocol).
package errclass
