// Package control is the VMM's control socket: newline-delimited JSON over a
// unix stream socket, one response line for each request line.
//
//	client                                   server (ferry-vmm)
//	  │ connect(path)                           │ socket mode 0600
//	  │ {"cmd":"status"}\n ───────────────────► │ DecodeRequest, look up handler,
//	  │                                         │ call it with a 30 s deadline
//	  │ ◄─────── {"ok":true,"result":{...}}\n   │
//	  │ {"cmd":"pause","args":{...}}\n ───────► │
//	  │ ◄─────── {"ok":false,"error":"..."}\n   │
//	  │ close                                   │
//
// A connection may carry any number of requests, answered in order. A line
// that is not a valid request gets an error response and the connection
// stays usable; a line longer than [MaxLine] gets an error response and the
// connection is closed. Blank lines are ignored.
//
// [Server] serves registered [HandlerFunc]s; [Call] is the one-shot client
// used by tests and the migrate CLI.
//
// What it cannot do: authenticate (access is by file permission only: the
// socket is bound in a private 0700 directory next to the path, made 0600
// there and only then renamed into place, so no umask opens a window; the
// path may have at most 98 bytes because of that detour; the other way
// round, [Call] talks only to a server run by its own user, root, or the
// owner of the socket's directory: peer.go), push events to clients, or
// interrupt a handler that ignores its context (Serve waits for it).
package control
